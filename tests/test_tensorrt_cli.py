"""`edgeseg build --target tensorrt` end to end through the CLI: hand-off without TensorRT (exit code 3)
and a real build + run against the fake TensorRT."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from fake_tensorrt.install import hide_trt, install_trt
from typer.testing import CliRunner

from edgeseg.cli import app
from edgeseg.errors import ExitCode

EXIT_NEEDS_DEVICE = ExitCode.NEEDS_DEVICE

runner = CliRunner()


def test_handoff_exit_code_and_commands(monkeypatch, tiny_onnx):
    hide_trt(monkeypatch)
    onnx_path = tiny_onnx()
    result = runner.invoke(
        app, ["build", str(onnx_path), "--target", "tensorrt", "--dla-core", "0", "--json"]
    )
    assert result.exit_code == EXIT_NEEDS_DEVICE, result.output
    report = json.loads(result.stdout)
    assert report["status"] == "handoff" and report["precision"] == "fp32"
    assert "--useDLACore=0 --allowGPUFallback" in report["commands"]["trtexec_10"]
    assert report["commands"]["edgeseg"].startswith(f"edgeseg build {onnx_path.name} --target tensorrt")
    assert report["folder"] == str(onnx_path.parent)


def test_handoff_printout_names_each_version(monkeypatch, tiny_onnx):
    hide_trt(monkeypatch)
    onnx_path = tiny_onnx()
    result = runner.invoke(
        app, ["build", str(onnx_path), "--target", "tensorrt", "--fp16", "--eval-data", "synth:2"]
    )
    assert result.exit_code == EXIT_NEEDS_DEVICE, result.output
    out = " ".join(result.output.split())
    assert f"Copy {onnx_path.parent}" in out and "in that folder run one of" in out
    for label in ("TensorRT 8.5 / 8.6", "TensorRT 10.x", "TensorRT 11.x"):
        assert label in out, label
    assert str(onnx_path.parent) + "/" not in out  # commands use names relative to the copied folder


def test_build_then_run_engine(monkeypatch, tiny_onnx, tmp_path):
    install_trt(monkeypatch, "10.3.0")
    onnx_path = tiny_onnx(size=(16, 24))
    cache = tmp_path / "trt.cache"
    args = [
        "build",
        str(onnx_path),
        "--target",
        "tensorrt",
        "--timing-cache",
        str(cache),
        "--workspace",
        "64",
    ]
    result = runner.invoke(app, [*args, "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    engine = Path(report["engine"])
    assert engine.name == "tiny.fp32.engine" and cache.is_file() and not report["timing_cache_reused"]
    again = json.loads(runner.invoke(app, [*args, "--json"]).stdout)
    assert again["timing_cache_reused"]

    from edgeseg.runtime.segmenter import Segmenter

    frame = (np.random.default_rng(0).random((32, 48, 3)) * 255).astype(np.uint8)
    with Segmenter(engine) as seg, Segmenter(onnx_path) as ref:
        np.testing.assert_array_equal(seg.infer(frame), ref.infer(frame))


def test_bad_option_is_one_line_error(monkeypatch, tiny_onnx):
    install_trt(monkeypatch, "10.3.0")
    result = runner.invoke(app, ["build", str(tiny_onnx()), "--target", "tensorrt", "--min-shape", "1x3x8"])
    assert result.exit_code == 2
    assert "bad shape" in result.output and "Traceback" not in result.output


@pytest.mark.parametrize("binding", ["cuda-python", "pycuda"])
def test_edgeseg_run_streams_through_an_engine(monkeypatch, tiny_onnx, binding):
    """`edgeseg run --model X.engine` (the runtime team's threaded pipeline) on the fake TensorRT; with
    pycuda this needs the backend's activate() on the inference thread (contexts are thread-bound)."""
    from edgeseg.data.synth import SYNTH_CLASSES

    install_trt(monkeypatch, "10.3.0", binding=binding)
    onnx_path = tiny_onnx(num_classes=len(SYNTH_CLASSES), size=(32, 48))
    built = runner.invoke(app, ["build", str(onnx_path), "--target", "tensorrt", "--json"])
    assert built.exit_code == 0, built.output
    engine = json.loads(built.stdout)["engine"]
    result = runner.invoke(
        app, ["run", "--model", engine, "--synthetic", "--frames", "3", "--threads", "1", "--json"]
    )
    assert result.exit_code == 0, result.output
    assert "tensorrt" in result.stdout


def test_legacy_calibrator_through_the_cli(monkeypatch, tiny_onnx, tmp_path):
    """--int8 --legacy-calibrator on TensorRT 8.6: calibration images from calib's selection, cache written."""
    from edgeseg.data.synth import SYNTH_CLASSES

    trt = install_trt(monkeypatch, "8.6.1")
    onnx_path = tiny_onnx(num_classes=len(SYNTH_CLASSES), size=(32, 48))
    args = [
        "build",
        str(onnx_path),
        "--target",
        "tensorrt",
        "--int8",
        "--legacy-calibrator",
        "--calib-data",
        "synth",  # the tiny model's classes are not the street classes
        "--calib-images",
        "3",
    ]
    result = runner.invoke(app, [*args, "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["legacy_calibrator"] and report["calibration_batches"] == 3
    assert (
        report["builder_flags"] == ["INT8", "FP16"]
        and Path(report["engine"]).name == "tiny.int8-legacy.engine"
    )
    assert (onnx_path.parent / "tiny.int8-legacy.calib").is_file()
    assert trt.last_build["calibration"] == {"from_cache": False, "batches": 3}
    install_trt(monkeypatch, "11.4.0.106")
    refused = runner.invoke(app, args)
    assert refused.exit_code == 2 and "removed implicit INT8 calibration" in refused.output


def test_run_refuses_another_orin_module_unless_allowed(monkeypatch, tiny_onnx):
    from fake_tensorrt.cuda import FakeGpu

    from edgeseg.data.synth import SYNTH_CLASSES

    install_trt(monkeypatch, "10.3.0", FakeGpu(name="Orin", sm_count=16, total_memory=64 << 30))
    onnx_path = tiny_onnx(num_classes=len(SYNTH_CLASSES), size=(32, 48))
    built = runner.invoke(app, ["build", str(onnx_path), "--target", "tensorrt", "--json"])
    engine = json.loads(built.stdout)["engine"]
    install_trt(monkeypatch, "10.3.0", FakeGpu(name="Orin", sm_count=8, total_memory=16 << 30))
    args = ["run", "--model", engine, "--synthetic", "--frames", "2", "--json"]
    refused = runner.invoke(app, args)
    assert (
        refused.exit_code == 2 and "--allow-other-gpu" in refused.output and "Traceback" not in refused.output
    )
    allowed = runner.invoke(app, [*args, "--allow-other-gpu"])
    assert allowed.exit_code == 0, allowed.output
