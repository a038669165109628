"""benchmarks/cpu_runtimes.py run as a user runs it, on a tiny model (seconds): every file kind on both
CPU runtimes side by side, the QOperator file refused by OpenVINO as a result (not a crash), and the
fastest pair named (the "best CPU runtime" of docs/benchmarks.md)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "cpu_runtimes.py"


def test_script_puts_both_runtimes_side_by_side_and_names_the_fastest(tiny_onnx, tmp_path):
    pytest.importorskip("openvino")
    model = tiny_onnx(num_classes=4, size=(32, 64), hidden=8)
    out = tmp_path / "rt.json"
    cmd = [sys.executable, str(SCRIPT), "--onnx", str(model), "--calib", "2", "--rounds", "2",
           "--runs", "1", "--warmup", "1", "--threads", "1", "--json", str(out)]  # fmt: skip
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stderr
    summary = json.loads(out.read_text())
    rows = {(r["file"], r["runtime"]): r for r in summary["rows"]}
    assert set(rows) == {
        (k, rt) for k in ("fp32", "fp16", "int8-qdq", "int8-cpu") for rt in ("onnxruntime", "openvino")
    }
    assert "error" in rows["int8-cpu", "openvino"]  # OpenVINO cannot read the QOperator form
    assert rows["fp32", "onnxruntime"]["vs_ort_fp32"] == pytest.approx(1.0)
    measured = [r for r in summary["rows"] if "ms" in r]
    assert len(measured) == 7 and all(len(r["rounds_ms"]) == 2 for r in measured)
    best = summary["best"]
    assert best["ms"] == min(r["ms"] for r in measured)
    assert f"best CPU runtime: {best['runtime']} on the {best['file']} file" in res.stdout
    assert summary["rounds"] == 2 and summary["input_size"] == [32, 64]
