"""An idle pipeline is idle: fed at camera pace, a run's CPU time is spent on its frames, not on
ONNX Runtime's pool threads spinning while they wait for the next one (issue 17: 1.53 of 2 cores
busy for 10 FPS). CPU time, unlike wall time, barely moves when other jobs share the machine."""

from __future__ import annotations

import json

import cv2
import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper
from test_run_cli import run_cli

from edgeseg.card import ModelCard, default_palette
from edgeseg.errors import EdgesegError
from edgeseg.runtime import Segmenter, stream
from edgeseg.runtime.workers import pacing_options

FPS = 15.0
FRAMES = 30
HW = (128, 256)


def conv_model(path, hw=HW, classes=4):
    """Two convolutions at 128x256: enough work per operator that ONNX Runtime splits it over its
    intra-op threads (a 1x1 conv on a tiny input runs on one thread and never wakes the pool)."""
    rng = np.random.default_rng(0)
    h, w = hw
    x = helper.make_tensor_value_info("input", TensorProto.FLOAT, [1, 3, h, w])
    y = helper.make_tensor_value_info("logits", TensorProto.FLOAT, [1, classes, h, w])
    weights = [
        numpy_helper.from_array(rng.normal(size=(16, 3, 3, 3)).astype(np.float32), "w1"),
        numpy_helper.from_array(rng.normal(size=(classes, 16, 1, 1)).astype(np.float32), "w2"),
    ]
    nodes = [
        helper.make_node("Conv", ["input", "w1"], ["hidden"], pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["hidden"], ["relu"]),
        helper.make_node("Conv", ["relu", "w2"], ["logits"]),
    ]
    model = helper.make_model(
        helper.make_graph(nodes, "conv", [x], [y], weights), opset_imports=[helper.make_opsetid("", 17)]
    )
    card = ModelCard(
        model="conv",
        classes=[f"c{i}" for i in range(classes)],
        palette=default_palette(classes),
        input_size=hw,
    )
    for k, v in card.to_metadata_props().items():
        model.metadata_props.append(onnx.StringStringEntryProto(key=k, value=v))
    onnx.save(model, path)
    return path


@pytest.fixture
def paced_run(tmp_path):
    model = conv_model(tmp_path / "conv.onnx")
    video = tmp_path / "clip.mp4"
    writer = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"mp4v"), FPS, HW[::-1])
    for i in range(FRAMES):
        writer.write(np.full((*HW, 3), i * 8, np.uint8))
    writer.release()
    return model, video


def test_realtime_run_spends_its_cpu_on_frames_not_on_spinning(paced_run):
    """`--realtime` at 15 FPS with a 2-thread session and ~1 ms inferences: the process's CPU time
    is a small fraction of the wall time. With ONNX Runtime's spinning threads it was about half a
    core (measured here: 0.47-0.51 cores busy, 30-33 ms of CPU per frame; 0.04 and 2.5 ms without)."""
    model, video = paced_run
    r = run_cli(
        "--model",
        str(model),
        "--video",
        str(video),
        "--realtime",
        "--workers",
        "1",
        "--threads",
        "2",
        "--json",
    )
    assert r.exit_code == 0, r.output
    report = json.loads(r.stdout)
    assert report["frames"]["processed"] >= FRAMES // 2
    cpu = report["cpu"]
    assert cpu["cores_busy"] < 0.2, cpu
    assert cpu["process_ms_per_frame"] < 0.2 * 1000.0 / FPS, cpu  # a fifth of the frame interval


def test_pacing_turns_spinning_off_for_onnx_runtime_only(tmp_path):
    assert pacing_options("m.onnx", paced=True) == {"spin_wait": False}
    assert pacing_options("m.onnx", paced=False) == {}
    assert pacing_options("m.engine", paced=True) == {}  # TensorRT: no such thread pool
    assert pacing_options("m.pt", paced=True) == {}


def test_stream_with_a_live_source_builds_a_non_spinning_backend(tmp_path, monkeypatch):
    """The one-call API: `stream("m.onnx", camera=...)` passes the pacing to the backend it builds."""
    import edgeseg.runtime.pipeline as pipeline_module

    made: list[dict] = []

    class Recording(Segmenter):
        def __init__(self, artifact, **options):
            made.append(options)
            super().__init__(artifact, **options)

    monkeypatch.setattr(pipeline_module, "Segmenter", Recording)
    model = conv_model(tmp_path / "conv.onnx")
    with pytest.raises(EdgesegError, match="camera 57"):
        next(stream(str(model), camera=57))  # no camera here: the backend is built before opening it
    cv2.imwrite(str(tmp_path / "a.png"), np.zeros((*HW, 3), np.uint8))
    assert len(list(stream(str(model), images=str(tmp_path / "a.png")))) == 1
    assert made == [{"spin_wait": False}, {}]  # a camera paces the backend, a file does not
