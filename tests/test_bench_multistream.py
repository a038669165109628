"""benchmarks/multistream.py: the overlap window both sides are measured over, the table, and the
script run as a user runs it (on a tiny dynamic-batch model, so it takes seconds)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from edgeseg.benchmarking.streams import comparison_rows, cpu_ms_per_frame, overlap_fps, result_times
from edgeseg.runtime.workers import available_cores

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "multistream.py"


def test_total_fps_counts_only_while_every_stream_ran():
    early = [float(t) for t in range(0, 11)]  # results at 0..10 s
    late = [float(t) for t in range(5, 16)]  # 5..15 s: started 5 s later
    got = overlap_fps([early, late])
    assert got["window_s"] == 5.0 and got["frames"] == 10  # 6..10 of each
    assert got["fps"] == pytest.approx(2.0)
    assert got["whole_run_fps"] == pytest.approx(21 / 15)
    assert overlap_fps([early, [20.0, 21.0]])["fps"] is None  # never ran together
    assert overlap_fps([early, []])["fps"] is None
    records = [{"captured_at": 100.0, "latency_ms": 250.0}, {"captured_at": 101.0, "latency_ms": None}]
    assert result_times(records) == [100.25]


def test_rows_put_both_sides_and_the_ratio_side_by_side():
    rows = comparison_rows(
        [
            {
                "streams": 2,
                "batched": {"fps": 30.0, "threads": 2, "mean_batch": 1.9},
                "separate": {"fps": 25.0, "threads": 1},
            },
            {
                "streams": 4,
                "batched": {"fps": 31.0, "threads": 2, "mean_batch": None},
                "separate": {"fps": None, "threads": 1},
            },
        ]
    )
    assert rows[0] == ["2", "30.00", "25.00", "1.200", "-", "-", "- / -", "2, 1.90", "2 x 1"]
    assert rows[1][3] == "-" and rows[1][7] == "2, -"
    reports = [
        {"frames": {"processed": 10}, "cpu": {"process_ms_per_frame": 50.0}},
        {"frames": {"processed": 30}, "cpu": {"process_ms_per_frame": 70.0}},
    ]
    assert cpu_ms_per_frame(reports) == pytest.approx(65.0)  # weighted by frames
    assert cpu_ms_per_frame([{"frames": {"processed": 0}, "cpu": None}]) is None


def test_script_compares_batched_and_separate_runs(tiny_onnx):
    model = tiny_onnx(num_classes=8, size=(32, 64), batch="N")
    cmd = [sys.executable, str(SCRIPT), "--model", str(model), "--streams", "2", "--frames", "40", "--json"]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    summary = json.loads(out.stdout)
    (result,) = summary["results"]
    cores = available_cores()
    assert result["streams"] == 2 and summary["cores"] == cores
    assert result["batched"]["threads"] == cores and result["separate"]["threads"] == max(1, cores // 2)
    assert result["batched"]["processed"] == result["separate"]["processed"] == 80
    assert result["batched"]["fps"] > 0 and result["batched"]["mean_batch"] >= 1.0
    assert result["batched"]["note"] is None  # a dynamic batch: no fall-back
    assert result["batched"]["cpu_ms_per_frame"] > 0 and result["separate"]["cpu_ms_per_frame"] > 0
    assert result["batched"]["peak_rss_mb"] > 10 and result["separate"]["peak_rss_mb"] > 10


def test_script_measures_a_video_source_on_a_named_runtime(tiny_onnx):
    """--source video decodes a generated clip (no rendering per frame); --backend reaches every run."""
    model = tiny_onnx(num_classes=8, size=(32, 64), batch="N")
    cmd = [sys.executable, str(SCRIPT), "--model", str(model), "--streams", "2", "--frames", "20", "--json",
           "--source", "video", "--backend", "onnxruntime"]  # fmt: skip
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    summary = json.loads(out.stdout)
    (result,) = summary["results"]
    assert summary["source"] == "video" and result["batched"]["backend"]["backend"] == "onnxruntime"
    assert result["batched"]["processed"] == result["separate"]["processed"] == 40
