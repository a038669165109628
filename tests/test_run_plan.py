"""RunPlan (runtime/plan.py): the one place a run's options are checked and assembled, and the typed
RunReport whose JSON form `edgeseg run --json` prints."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from edgeseg.errors import EdgesegError
from edgeseg.runtime import Outputs, RunPlan, RunReport, View, stream
from edgeseg.runtime.backends import BackendOptions

SYNTH = {"synthetic": 4}


@pytest.mark.parametrize(
    ("plan", "needle"),
    [
        (dict(sources=(SYNTH,), view=View(tile=True)), "--tile puts several streams side by side"),
        (dict(sources=(SYNTH, SYNTH), workers=2), "share one batched inference worker"),
        (dict(sources=(SYNTH, SYNTH), view=View(tile=True)), "--tile arranges what --show and --save draw"),
        (
            dict(sources=(SYNTH, SYNTH), outputs=Outputs(log=Path("f.jsonl"))),
            r"--log with 2 streams needs \{stream\}",
        ),
        (dict(sources=(SYNTH,), labels=Path("gt")), "--synthetic brings its own ground truth"),
        (dict(sources=(SYNTH,), max_frames=0), "--frames must be at least 1"),
        (dict(sources=()), "at least one source"),
        (dict(sources=(SYNTH, SYNTH), sinks=[object()]), "a function of the stream's name or a"),
        (dict(sources=(SYNTH,), outputs=Outputs(video=Path("out.txt"))), "out.txt"),
    ],
)
def test_a_plan_refuses_options_that_cannot_work_when_it_is_made(plan, needle, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(EdgesegError, match=needle):
        RunPlan(**plan)


def test_an_opened_plan_reports_a_typed_report_whose_json_is_the_runs(tiny_onnx, tmp_path):
    model = tiny_onnx(num_classes=8, size=(32, 64))
    log = tmp_path / "frames.jsonl"
    plan = RunPlan(model=model, sources=(SYNTH,), outputs=Outputs(log=log), workers=1)
    run = plan.open()
    assert run.artifact == model and run.card.num_classes == 8
    run.driver.run()
    report = run.report()
    assert isinstance(report, RunReport) and report.exit_code == 0 and report.ended == "completed"
    data = report.to_dict()
    assert list(data)[:5] == ["model", "backend", "workers", "source", "outputs"]
    assert data["artifact"] == str(model) and data["frames"]["processed"] == 4
    assert data["metrics"] is not None  # the synthetic scenes carry ground truth
    assert data == json.loads(json.dumps(data, default=str))
    assert len(log.read_text().splitlines()) == 4
    # the runtime and why are the report's own field (the CLI once added them to the JSON by key)
    assert report.runtime is not None and report.runtime.backend == report.backend_name
    assert list(data)[-1] == "runtime" and data["runtime"] == {"backend": report.runtime.backend,
                                                               "why": report.runtime.reason}  # fmt: skip
    assert data["model"]["classes"] == 8 and report.card.num_classes == 8
    assert report.stats.processed == 4 and report.stats.metrics() is not None


def test_several_streams_report_each_stream_and_the_batching(tiny_onnx):
    plan = RunPlan(model=tiny_onnx(num_classes=8, size=(32, 64)), sources=(SYNTH, SYNTH))
    run = plan.open()
    run.driver.run()
    report = run.report()
    data = report.to_dict()
    assert [s["stream"] for s in data["streams"]] == ["synthetic-0", "synthetic-1"]
    assert data["batching"]["batches"] >= 4 and data["frames"]["processed"] == 8
    # typed: each stream's stats and the batching are read as fields, the JSON is made from them
    assert report.streams is not None and report.batching is not None
    assert [s.name for s in report.streams] == ["synthetic-0", "synthetic-1"]
    assert sum(s.stats.processed for s in report.streams) == report.stats.processed == 8
    assert report.batching.batches == data["batching"]["batches"]
    assert sum(k * n for k, n in report.batching.sizes.items()) == 8
    assert all("cpu" not in s for s in data["streams"])  # the process's CPU is the run's


def test_stream_takes_backend_options_like_the_plan(tiny_onnx):
    results = list(stream(tiny_onnx(num_classes=8, size=(32, 48)), options=BackendOptions(threads=1), synthetic=3,
                          synthetic_size=(32, 48)))  # fmt: skip
    assert [r.class_map.shape for r in results] == [(32, 48)] * 3


class _Seen:
    """A sink that asks for nothing and records whether each frame arrived drawn."""

    needs_render = False
    needs_class_map = False
    pumps = quit_requested = records = False

    def __init__(self) -> None:
        self.drawn: list[bool] = []

    def start(self, source) -> None: ...
    def attach(self, stats) -> None: ...
    def close(self) -> None: ...
    def describe(self) -> dict:
        return {"sink": "seen"}

    def write(self, result) -> None:
        self.drawn.append(result.rendered is not None)


@pytest.mark.parametrize("streams", [1, 2])
def test_view_draw_draws_every_frame_with_no_output_attached(tiny_onnx, streams):
    """What the benchmarks time (benchmarks/pipeline_vs_backend.py's overlay rounds, soak.py): with
    View(draw=True) each frame is drawn at its own size though no window, video or live view is open;
    without it nothing is drawn."""
    import numpy as np

    model = tiny_onnx(num_classes=8, size=(32, 64))
    for draw in (False, True):
        seen: dict[str, _Seen] = {}
        sinks = (
            [seen.setdefault("one", _Seen())]
            if streams == 1
            else (lambda n, seen=seen: [seen.setdefault(n, _Seen())])
        )
        sources = tuple({"synthetic": 3} for _ in range(streams))
        plan = RunPlan(
            model=model,
            sources=sources,
            sinks=sinks,
            view=View(draw=draw, mode="mask"),
            synthetic_size=(40, 72),
        )
        run = plan.open()
        assert len(seen) == streams
        results = list(run.driver.stream())
        assert len(results) == 3 * streams
        for sink in seen.values():
            assert sink.drawn == [draw] * 3, (draw, streams)
        if draw:
            assert all(r.rendered is not None and r.rendered.shape == (40, 72, 3) for r in results)
            assert all(r.rendered.dtype == np.uint8 for r in results)
        outputs = [o["sink"] for o in run.report().to_dict()["outputs"]] if streams == 1 else []
        assert ("DrawSink" in outputs) == (draw and streams == 1)
