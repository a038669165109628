"""`make gpu-check` (tools/gpu_check.py): its no-GPU path here, the whole check list against the fake
TensorRT (so the script's own code is exercised), and, marked `gpu`, the real thing: on a machine with
TensorRT and a GPU, `pytest -m gpu tests/test_tensorrt_gpu.py` runs every check and asserts it passed."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "tools" / "gpu_check.py"


def _gpu_check():
    spec = importlib.util.spec_from_file_location("gpu_check", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_gpu_check_without_a_gpu_says_so_in_one_line_and_exits_0(tmp_path):
    """This machine has neither TensorRT nor a GPU: the real script, run as `make gpu-check` runs it."""
    out = tmp_path / "report.json"
    done = subprocess.run(
        [sys.executable, str(SCRIPT), "--out", str(out)], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    lines = done.stdout.strip().splitlines()
    assert len(lines) == 1 and "no GPU" in lines[0] and "TensorRT is not installed" in lines[0]
    assert not out.exists()


def test_makefile_has_the_gpu_check_target():
    text = (ROOT / "Makefile").read_text()
    assert "gpu-check:" in text and "tools/gpu_check.py" in text


def test_gpu_check_writes_its_report_when_the_set_up_fails(monkeypatch, tmp_path):
    """A failure before the first check (here: no shipped model to copy) is recorded in the JSON report
    and the exit status, never a traceback without a report."""
    from fake_tensorrt.install import install_trt

    import edgeseg.defaults
    from edgeseg.errors import EdgesegError

    install_trt(monkeypatch, "10.3.0")

    def missing(kind: str):
        raise EdgesegError("the shipped model is missing from this install")

    monkeypatch.setattr(edgeseg.defaults, "default_model_path", missing)
    gpu_check = _gpu_check()
    out = tmp_path / "report.json"
    code = gpu_check.main(["--out", str(out), "--workdir", str(tmp_path / "w")])
    report = json.loads(out.read_text())
    assert code == 1 and report["ok"] is False
    assert report["checks"]["environment"]["ok"] and report["checks"]["environment"]["tensorrt"] == "10.3.0"
    assert report["checks"]["setup"]["error"] == "the shipped model is missing from this install"


@pytest.mark.slow  # about a minute on 2 cores (INT8 calibration and gate of the default model); make test-all
def test_gpu_check_runs_every_check_against_the_fake(monkeypatch, tmp_path):
    """Not a GPU measurement: the fake runs the ONNX with ONNX Runtime. It proves the script's checks run
    end to end and write the report the way they will on a real device."""
    from fake_tensorrt.install import install_trt

    install_trt(monkeypatch, "10.3.0")
    gpu_check = _gpu_check()
    out = tmp_path / "report.json"
    args = ["--out", str(out), "--frames", "2", "--calib-images", "4", "--workdir", str(tmp_path / "w")]
    code = gpu_check.main(args)
    report = json.loads(out.read_text())
    failed = {k: v.get("error") for k, v in report["checks"].items() if not v["ok"]}
    assert code == 0 and report["ok"], failed
    checks = report["checks"]
    assert {"fp32_engine", "fp16_engine", "int8_qdq_engine", "version_compatible_engine",
            "timing_cache_round_trip", "legacy_calibrator_dynamic_onnx", "cuda_bindings",
            "pipeline_two_workers_one_engine", "dynamic_engine_two_workers", "labels_output",
            "fcn_int8_convtranspose", "trtexec_engine"} <= set(checks)  # fmt: skip
    assert checks["dynamic_engine_two_workers"]["max_abs_diff"] < 1e-4
    assert checks["labels_output"]["uint8"]["pixels_differing"] == 0.0
    assert "agreement_with_fp32_onnxruntime" in checks["fcn_int8_convtranspose"]
    assert checks["trtexec_engine"]["skipped"].startswith("no trtexec")  # none here
    assert checks["fp32_engine"]["agreement_with_fp32_onnxruntime"] == 1.0  # the fake runs the same ONNX
    assert checks["fp32_engine"]["fps_backend_batch1"] > 0


@pytest.mark.gpu
def test_real_gpu_check_passes(tmp_path):
    gpu_check = _gpu_check()
    reason = gpu_check.unavailable()
    if reason is not None:
        pytest.skip(reason)
    out = tmp_path / "gpu-check.json"
    code = gpu_check.main(["--out", str(out)])
    report = json.loads(out.read_text())
    failed = {k: v.get("error") for k, v in report["checks"].items() if not v["ok"]}
    assert code == 0, failed
    checks = report["checks"]
    assert checks["fp32_engine"]["agreement_with_fp32_onnxruntime"] >= 0.999
    assert checks["fp16_engine"]["agreement_with_fp32_onnxruntime"] >= 0.995
