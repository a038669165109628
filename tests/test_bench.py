"""`edgeseg bench`: discovery of a model's artifacts and a real side-by-side measurement."""

from __future__ import annotations

import json
import shutil

import pytest
from typer.testing import CliRunner

from edgeseg import bench
from edgeseg.cli import app
from edgeseg.data.synth import SYNTH_CLASSES


@pytest.fixture
def exported(tiny_onnx, _isolated_workdir):
    """A torch-free 'export' in the workspace layout, with an FP16 variant beside it."""
    from edgeseg.export.fp16 import write_fp16

    src = tiny_onnx(num_classes=len(SYNTH_CLASSES), size=(32, 64), name="tiny")
    folder = _isolated_workdir / "tiny"
    folder.mkdir(parents=True)
    base = folder / "tiny.onnx"
    shutil.copy(src, base)
    write_fp16(base)
    return base


def test_discover_labels_variants(exported):
    arts = bench.discover(exported, None)
    labels = [a.label for a in arts]
    # OpenVINO (in `all`, so installed for the suite) runs the same files: its rows sit beside ORT's
    assert labels == ["ONNX Runtime fp32", "OpenVINO fp32", "ONNX Runtime fp16", "OpenVINO fp16"]
    assert [a.kind for a in arts] == ["onnxruntime", "openvino"] * 2
    assert [a.precision for a in arts] == ["fp32", "fp32", "fp16", "fp16"]


def test_run_bench_measures_each_artifact(exported, tmp_path):
    cfg = bench.BenchConfig(data="synth:3", height=40, width=70, threads=1, warmup=1, iterations=4)
    results = bench.run_bench(bench.discover(exported, None), cfg)
    assert [r.error for r in results] == [None] * 4
    fp32, ov32, fp16, ov16 = results
    assert ov32.kind == "openvino" and ov32.miou == pytest.approx(fp32.miou, abs=0.02)
    for r in results:
        assert r.fps > 0 and r.latency_ms["p50"] <= r.latency_ms["p99"]
        assert 0.0 <= r.miou <= 1.0 and r.peak_rss_mb > 10
    # same frames, same weights: FP16 sees the same scenes and agrees closely on mIoU
    assert fp16.miou == pytest.approx(fp32.miou, abs=0.05)
    md = bench.to_markdown(results)
    assert md.count("\n") == 6 and "ONNX Runtime fp16" in md and "OpenVINO fp16" in md
    png = bench.plot(results, tmp_path / "plot.png")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_bench_cli_json_and_missing_export(exported):
    runner = CliRunner()
    r = runner.invoke(app, ["bench", "--data", "synth:2", "--iterations", "2", "--warmup", "0", "--json"])
    assert r.exit_code == 0, r.output
    report = json.loads(r.output)
    assert {x["label"] for x in report["results"]} == {
        "ONNX Runtime fp32",
        "ONNX Runtime fp16",
        "OpenVINO fp32",
        "OpenVINO fp16",
    }
    assert report["machine"]["cores"] >= 1 and "onnxruntime" in report["machine"]["libraries"]
    r = runner.invoke(app, ["bench", "nosuchmodel"])
    assert r.exit_code == 2 and "no export named 'nosuchmodel'" in r.output


def test_bench_says_where_its_files_went_and_finds_the_checkpoint_by_the_export(exported, tmp_path):
    """An export named by path, outside ./edgeseg-work: the eager baseline is looked up beside it."""
    runner = CliRunner()
    args = ["bench", str(exported), "--data", "synth:2", "--iterations", "2", "--warmup", "0"]
    args += [
        "--markdown",
        str(tmp_path / "b.md"),
        "--plot",
        str(tmp_path / "b.png"),
        "--workdir",
        str(tmp_path / "elsewhere"),
    ]
    r = runner.invoke(app, args)
    assert r.exit_code == 0, r.output
    flat = "".join(r.output.split())  # rich may wrap long paths
    assert f"wrote{tmp_path / 'b.md'}" in flat and f"wrote{tmp_path / 'b.png'}" in flat
    assert (tmp_path / "b.md").is_file() and (tmp_path / "b.png").is_file()
    assert "noPyTorcheagerrow" in flat  # said, not silently dropped
    run = exported.parent.parent / "train" / "tiny" / "20250101-000000"
    run.mkdir(parents=True)
    (run / "best.pt").write_bytes(b"x")
    assert bench.default_checkpoint(tmp_path / "elsewhere", exported) == run / "best.pt"


@pytest.fixture
def three_class_export(tiny_onnx, _isolated_workdir):
    """A user's own model whose classes are not the street scenes' (3 classes, no card classes match)."""
    src = tiny_onnx(num_classes=3, size=(32, 48), name="theirs")
    folder = _isolated_workdir / "theirs"
    folder.mkdir(parents=True)
    base = folder / "theirs.onnx"
    shutil.copy(src, base)
    return base


def test_bench_of_a_model_with_other_classes_measures_speed_without_miou(three_class_export):
    """The street scenes' ground truth does not fit a 3-class model: every row keeps its FPS,
    latency and size, mIoU is left out, and that is said once up front (not an error per row)."""
    runner = CliRunner()
    args = ["bench", str(three_class_export), "--data", "synth:2", "--iterations", "2", "--warmup", "0"]
    r = runner.invoke(app, [*args, "--json"])
    assert r.exit_code == 0, r.output
    report = json.loads(r.output)
    assert [row["kind"] for row in report["results"]] == ["onnxruntime", "openvino"]  # one file, two runtimes
    for row in report["results"]:
        assert row["error"] is None and row["fps"] > 0 and row["latency_ms"]["p50"] > 0 and row["size_mb"] > 0
        assert row["miou"] is None
    assert "predicts 3 classes" in report["no_miou"] and "synth:2 has 8" in report["no_miou"]
    r = runner.invoke(app, args)
    assert r.exit_code == 0, r.output
    assert r.output.count("no mIoU:") == 1 and "skipped" not in r.output


def test_bench_on_unlabelled_frames_measures_speed(three_class_export, tmp_path):
    """`--data frames/`: a folder of plain images (no masks, no dataset layout) is enough for speed."""
    import cv2
    import numpy as np

    frames = tmp_path / "frames"
    frames.mkdir()
    rng = np.random.default_rng(0)
    for i in range(3):
        cv2.imwrite(str(frames / f"f{i}.png"), rng.integers(0, 255, (40, 60, 3), dtype=np.uint8))
    runner = CliRunner()
    args = ["bench", str(three_class_export), "--data", str(frames), "--iterations", "3", "--warmup", "0"]
    r = runner.invoke(app, [*args, "--json"])
    assert r.exit_code == 0, r.output
    report = json.loads(r.output)
    assert len(report["results"]) == 2  # ONNX Runtime and OpenVINO
    assert all(row["fps"] > 0 and row["miou"] is None for row in report["results"])
    assert "has no ground truth" in report["no_miou"]
    # a wrong folder fails once, before any artifact is measured
    r = runner.invoke(app, ["bench", str(three_class_export), "--data", str(tmp_path / "nothere")])
    assert r.exit_code == 2 and "not found" in r.output and "measuring" not in r.output


def test_bench_keeps_miou_where_the_labels_fit(exported):
    cfg = bench.BenchConfig(data="synth:2", height=32, width=64, threads=1, warmup=0, iterations=2)
    frames = bench.open_frames(cfg, bench.read_card(exported))
    assert frames.masks is not None and frames.no_miou is None and len(frames) == 2


def _segfault() -> None:
    import os
    import signal

    os.kill(os.getpid(), signal.SIGSEGV)


def _refuses(path: str) -> None:
    raise ValueError(f"cannot read {path}\n(a long backend message)")


def _says_why(path: str) -> None:
    from edgeseg.errors import EdgesegError

    raise EdgesegError(f"{path} is not a valid ONNX model")


def test_a_measuring_child_that_raises_or_dies_is_a_reason_not_a_crash():
    """What a backend does in the spawned child comes back as the row's one-line reason: its own
    message, another error's type and first line, or a child killed by a signal (a segfault)."""
    assert bench.in_own_process(divmod, 7, 2) == (3, 1)
    with pytest.raises(bench.ChildFailed, match=r"^x\.onnx is not a valid ONNX model$"):
        bench.in_own_process(_says_why, "x.onnx")
    with pytest.raises(bench.ChildFailed, match=r"^ValueError: cannot read x\.onnx$"):
        bench.in_own_process(_refuses, "x.onnx")
    with pytest.raises(bench.ChildFailed, match=r"^the backend process crashed$"):
        bench.in_own_process(_segfault)


def test_an_artifact_its_backend_refuses_is_a_skipped_row_beside_the_measured_ones(exported):
    artifacts = [a for a in bench.discover(exported, None) if a.kind == "onnxruntime"]
    artifacts[1].path.write_bytes(b"not an ONNX file, damaged after it was found")
    cfg = bench.BenchConfig(data="synth:2", height=32, width=64, threads=1, warmup=0, iterations=2)
    fp32, fp16 = bench.run_bench(artifacts, cfg)
    assert fp32.error is None and fp32.fps > 0
    assert fp16.fps is None and fp16.error and "\n" not in fp16.error and "tiny.fp16.onnx" in fp16.error, (
        fp16.error
    )
