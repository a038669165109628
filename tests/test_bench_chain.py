"""The chain benchmark: spec parsing, the target verdicts and the tables (`edgeseg.benchmarking`), and
the scripts benchmarks/chain.py and benchmarks/run_all.py run as a user runs them, on a real tiny model."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest

from edgeseg import machine
from edgeseg.benchmarking.report import not_measured, results_markdown
from edgeseg.benchmarking.specs import parse_spec
from edgeseg.benchmarking.suite import SuiteOptions, chain_commands, cpu_runtimes_argv
from edgeseg.benchmarking.targets import RANDOM_NOTE, ratios
from edgeseg.errors import EdgesegError

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"
TINY = "fcn8s_lite:width=0.25"


def _script(name: str, *argv: str, timeout: float = 600) -> subprocess.CompletedProcess:
    """benchmarks/NAME.py ARGV in its own interpreter (the workspace comes from $EDGESEG_WORKDIR)."""
    cmd = [sys.executable, str(BENCHMARKS / f"{name}.py"), *argv]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)


def test_benchmark_scripts_load_no_module_by_path():
    """benchmarks/ is a folder of scripts: what one shares with another (or with the tests) is library
    code in edgeseg.benchmarking, not a sibling imported through sys.path or importlib."""
    scripts = {p.stem for p in BENCHMARKS.glob("*.py")}
    assert {"chain", "run_all"} <= scripts
    for path in BENCHMARKS.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                roots = {alias.name.split(".")[0] for alias in node.names}
            elif isinstance(node, ast.ImportFrom):
                roots = {(node.module or "").split(".")[0]} if node.level == 0 else {"."}
            else:
                continue
            assert not roots & (scripts | {"."}), f"{path.name}:{node.lineno} imports a sibling script"
            assert "importlib" not in roots, f"{path.name}:{node.lineno}"
        assert "sys.path" not in path.read_text(), path.name


def test_parse_spec_paper_models_and_options(tmp_path):
    s = parse_spec("fcn8s")
    assert (s.model, s.kwargs, s.trained) == ("fcn8s", {"backbone": "vgg16"}, False)
    assert parse_spec("deeplabv3plus").kwargs == {"backbone": "resnet50"}
    s = parse_spec("deeplabv3plus:backbone=mobilenet_v3_large")
    assert s.kwargs == {"backbone": "mobilenet_v3_large"} and s.key == "deeplabv3plus-mobilenet_v3_large"
    assert parse_spec(TINY).key == "fcn8s_lite-0_25"
    with pytest.raises(EdgesegError, match="unknown model 'nope'"):
        parse_spec("nope")
    with pytest.raises(EdgesegError, match="key=value"):
        parse_spec("fcn8s:vgg16")
    with pytest.raises(EdgesegError, match="checkpoint not found"):
        parse_spec(str(tmp_path / "missing.pt"))


def _result(label: str, kind: str, precision: str, fps: float, miou: float | None = 0.5) -> dict:
    return {
        "label": label,
        "kind": kind,
        "precision": precision,
        "fps": fps,
        "latency_ms": {"p50": 1000.0 / fps},
        "miou": miou,
    }


def test_ratios_verdicts_follow_the_measured_numbers():
    results = [
        _result("PyTorch eager", "torch", "fp32", 2.0, 0.60),
        _result("ONNX Runtime fp32", "onnxruntime", "fp32", 7.0, 0.60),
        _result("ONNX Runtime int8 (CPU form)", "onnxruntime", "int8", 10.0, 0.585),
    ]
    pipeline = {"ratio": 0.9, "ratio_median_of_rounds": 0.92, "pipeline_fps": 6.3, "bare_backend_fps": 7.0}
    by_name = {q["name"]: q for q in ratios(results, pipeline, trained=True)}
    eager = by_name["ONNX Runtime FP32 vs PyTorch eager"]
    assert eager["value"] == pytest.approx(3.5) and eager["verdict"] == "PASS"
    int8 = by_name["CPU INT8 vs ONNX Runtime FP32"]
    assert int8["value"] == pytest.approx(10 / 7) and int8["verdict"] == "MISS"
    drop = by_name["CPU INT8 mIoU drop (points)"]
    assert drop["value"] == pytest.approx(1.5) and drop["verdict"] == "MISS"
    assert by_name["pipeline vs bare backend (ORT FP32)"]["verdict"] == "MISS"
    # random weights: no accuracy verdict at all; a missing artifact is a MISS, never a made-up number
    random = {q["name"]: q for q in ratios(results[:2], None, trained=False)}
    assert random["CPU INT8 mIoU drop (points)"]["verdict"] == RANDOM_NOTE
    assert random["CPU INT8 vs ONNX Runtime FP32"]["verdict"] == "MISS (not measured)"
    assert random["CPU INT8 vs ONNX Runtime FP32"]["value"] is None
    assert "pipeline vs bare backend (ORT FP32)" not in random


def test_bad_options_exit_2_with_one_line():
    res = _script("chain", "--models", "nope", "--height", "32", "--width", "64")
    assert res.returncode == 2
    assert res.stderr.strip() == "error: unknown model 'nope' in --models; see `edgeseg models`"
    assert res.stdout == ""


def _run_tiny(tmp_path: Path, *extra: str) -> dict:
    out = tmp_path / "chain.json"
    md = tmp_path / "chain.md"
    res = _script(
        "chain",
        *["--models", TINY, "--height", "32", "--width", "64", "--threads", "1", "--warmup", "0"],
        *["--iterations", "2", "--frames", "2", "--calib-images", "2", "--eval-images", "1"],
        *["--json-out", str(out), "--markdown-out", str(md), *extra],
    )
    assert res.returncode == 0, res.stderr
    report = json.loads(out.read_text())
    report["_markdown"] = md.read_text()
    report["_stdout"] = res.stdout
    return report


def test_chain_tiny_model_end_to_end(tmp_path, _isolated_workdir):
    """Random-init checkpoint -> export -> FP16 + CPU INT8 -> benchmark, in one call (no pipeline)."""
    report = _run_tiny(tmp_path, "--forms", "cpu", "--pipeline-frames", "0")
    (model,) = report["models"]
    name = "fcn8s_lite-0_25-32x64"
    assert f"chain: {name}" in report["_stdout"] and f"targets: {name}" in report["_stdout"]
    folder = _isolated_workdir / name
    for suffix in (".onnx", ".fp16.onnx", ".int8.cpu.onnx"):
        assert (folder / f"{name}{suffix}").is_file()
    assert Path(model["checkpoint"]).is_file() and model["trained"] is False
    labels = [r["label"] for r in model["results"]]
    assert labels == [
        "PyTorch eager",
        "ONNX Runtime fp32",
        "OpenVINO fp32",
        "ONNX Runtime fp16",
        "OpenVINO fp16",
        "ONNX Runtime int8 (CPU form)",
    ]
    for r in model["results"]:
        assert r["error"] is None and r["fps"] > 0
        assert r["miou"] is None and r["miou_note"] == RANDOM_NOTE
    assert model["build"]["gate"] == "disabled (random weights)"
    names = [q["name"] for q in model["ratios"]]
    assert names == [
        "ONNX Runtime FP32 vs PyTorch eager",
        "CPU INT8 vs ONNX Runtime FP32",
        "CPU INT8 mIoU drop (points)",
        "best CPU runtime vs ONNX Runtime FP32",
    ]
    best = model["ratios"][3]
    assert best["value"] > 0 and best["detail"].startswith("fastest row on the CPU: ")
    assert best["detail"].split(": ", 1)[1].split(",")[0] in labels
    for q in model["ratios"][:2]:
        assert q["value"] > 0 and q["verdict"] in ("PASS", "MISS")
    md = report["_markdown"]
    assert f"### {name}" in md and "| ONNX Runtime FP32 vs PyTorch eager |" in md
    assert md.count(RANDOM_NOTE) == 8  # 6 rows + the mIoU-drop verdict + the best CPU row's mIoU
    assert report["machine"]["cores"] >= 1


@pytest.mark.slow
def test_chain_tiny_qdq_pipeline_trained_path_and_reuse(tmp_path, _isolated_workdir):
    """Both INT8 forms, the pipeline ratio from pipeline_vs_backend.py, a checkpoint path treated as trained
    (mIoU numbers, gate on), and --reuse keeping the artifacts."""
    report = _run_tiny(tmp_path, "--pipeline-frames", "4", "--pipeline-rounds", "1")
    (model,) = report["models"]
    labels = [r["label"] for r in model["results"]]
    assert "ONNX Runtime int8 (TensorRT Q/DQ form)" in labels, labels
    # OpenVINO (installed by the test extras) reads the Q/DQ file too, and its row sits beside ONNX Runtime's
    assert "OpenVINO int8 (Q/DQ form)" in labels, labels
    by_name = {q["name"]: q for q in model["ratios"]}
    pipe = by_name["pipeline vs bare backend (ORT FP32)"]
    assert pipe["value"] > 0 and pipe["verdict"] in ("PASS", "MISS"), model["pipeline"]
    # where the CPU went: both sides per frame, the pipeline's stage threads, the stages alone
    measured = model["pipeline"]
    assert "CPU per frame" in pipe["detail"]
    assert all(v > 0 for v in measured["cpu_ms_per_frame"].values())
    assert {"capture", "inference", "other threads"} <= set(measured["pipeline_stage_cpu_ms"])
    assert all(v > 0 for v in measured["stage_floor_ms"].values())
    assert 0 < measured["zero_overhead_estimate"] < 1
    overlay = by_name["pipeline with overlay rendering vs bare backend"]
    assert overlay["value"] > 0 and overlay["verdict"] == "-", model["pipeline"]

    # the same weights given as a checkpoint path count as trained: mIoU is reported, the drop is judged
    ckpt = model["checkpoint"]
    report = _run_tiny(
        tmp_path, "--models", ckpt, "--forms", "cpu", "--pipeline-frames", "0", "--max-miou-drop", "100"
    )
    (trained,) = report["models"]
    assert trained["trained"] is True and trained["build"]["gate"] == "on"
    fp32, int8 = trained["results"][1], trained["results"][-1]
    assert 0.0 <= fp32["miou"] <= 1.0 and 0.0 <= int8["miou"] <= 1.0
    drop = trained["ratios"][2]
    assert drop["value"] == pytest.approx(100 * (fp32["miou"] - int8["miou"]))
    assert drop["verdict"] == ("PASS" if drop["value"] <= 1.0 else "MISS")
    assert "build gate passed" in drop["detail"]

    onnx = _isolated_workdir / model["name"] / f"{model['name']}.onnx"
    before = onnx.stat().st_mtime_ns
    again = _run_tiny(tmp_path, "--reuse", "--prepare-only")
    assert onnx.stat().st_mtime_ns == before and "reused" in again["models"][0]["build"]
    assert "results" not in again["models"][0]


def test_run_all_plans_default_at_its_own_size_and_paper_models_at_512x1024():
    runs = dict(chain_commands(SuiteOptions(), default_size=lambda: (96, 192)))
    assert list(runs) == ["default", "fcn8s", "deeplabv3plus"]
    d = runs["default"]
    assert d[d.index("--models") + 1] == "default"
    assert (d[d.index("--height") + 1], d[d.index("--width") + 1]) == ("96", "192")
    for paper in ("fcn8s", "deeplabv3plus"):
        argv = runs[paper]
        assert (argv[argv.index("--height") + 1], argv[argv.index("--width") + 1]) == ("512", "1024")
        assert argv[argv.index("--iterations") + 1] == "3"
    # a missing default model is reported, not silently dropped
    missing = dict(chain_commands(SuiteOptions(), default_size=lambda: "the default model is not installed"))
    assert missing["default"] == "the default model is not installed"
    # the default model's size is only looked up when it runs
    skipped = chain_commands(SuiteOptions(skip_default=True), default_size=lambda: pytest.fail("looked up"))
    assert [title for title, _ in skipped] == ["fcn8s", "deeplabv3plus"]


def test_results_file_says_what_was_not_measured_and_how_loaded_the_machine_was():
    runs = [
        {
            "title": "default",
            "argv": [],
            "started": "2026-12-01 10:00 UTC",
            "loadavg": {"before": [0.5, 0.25, 0.1], "after": [1.0, 0.5, 0.2]},
            "report": not_measured("default", "the default model is not installed"),
        },
        {"title": TINY, "argv": ["--models", TINY], "report": {"models": [], "failures": []}},
    ]
    md = results_markdown(runs, machine.describe())
    assert "load average (1/5/15 min) before 0.50 / 0.25 / 0.10, after 1.00 / 0.50 / 0.20." in md
    assert "cores; GPU:" in md
    assert "not measured (`default`): the default model is not installed" in md
    assert f"```\n.venv/bin/python benchmarks/chain.py --models {TINY}\n```" in md
    assert md.index("## default") < md.index(f"## {TINY}")


def test_both_cpu_runtimes_are_measured_per_model_and_shown_with_the_fastest(tmp_path):
    """make bench runs cpu_runtimes.py on each model's export: few runs for the paper models, every
    file on both runtimes in its table, a file OpenVINO cannot read said so, and the fastest pair."""
    paper = cpu_runtimes_argv(tmp_path / "m.onnx", SuiteOptions(), paper=True)
    assert paper[paper.index("--runs") + 1] == "3" and paper[paper.index("--rounds") + 1] == "3"
    assert cpu_runtimes_argv(tmp_path / "m.onnx", SuiteOptions(runtime_rounds=5), paper=False)[3] == "5"
    result = {
        "threads": 2, "rounds": 3, "runs": 3, "loadavg_before": [0.5, 0.4, 0.3], "loadavg_after": [0.6, 0.5, 0.4],
        "rows": [
            {"file": "fp32", "runtime": "onnxruntime", "ms": 2000.0, "vs_ort_fp32": 1.0, "agree": 1.0},
            {"file": "int8-qdq", "runtime": "openvino", "ms": 500.0, "vs_ort_fp32": 4.0, "agree": 0.98},
            {"file": "int8-cpu", "runtime": "openvino", "error": "cannot read it"},
        ],
        "best": {"file": "int8-qdq", "runtime": "openvino", "ms": 500.0, "vs_ort_fp32": 4.0},
    }  # fmt: skip
    runs = [
        {
            "title": "fcn8s",
            "argv": ["--models", "fcn8s"],
            "report": {"models": [], "failures": []},
            "cpu_runtimes": [
                {"name": "fcn8s-vgg16-512x1024", "argv": paper, "result": result},
                {"name": "other", "argv": paper, "error": "cpu_runtimes.py exited 1"},
            ],
        }
    ]
    md = results_markdown(runs, machine.describe())
    assert "### fcn8s-vgg16-512x1024: ONNX Runtime and OpenVINO side by side" in md
    assert "benchmarks/cpu_runtimes.py --onnx" in md and "median of 3 interleaved rounds" in md
    assert "| int8-qdq | openvino | 500.0 | 4.00x | 0.9800 |" in md
    assert "| int8-cpu | openvino | cannot run: cannot read it |" in md
    assert "Best CPU runtime: openvino on the int8-qdq file, 4.00x ONNX Runtime FP32." in md
    assert "before 0.50 / 0.40 / 0.30, after 0.60 / 0.50 / 0.40" in md
    assert "not measured: cpu_runtimes.py exited 1" in md


def test_run_all_missing_include_is_exit_2_with_one_line(tmp_path):
    res = _script("run_all", "--out", str(tmp_path / "r.md"), "--include", str(tmp_path / "nope.json"))
    assert res.returncode == 2
    assert res.stderr.strip() == f"error: --include {tmp_path / 'nope.json'}: no such file"
    assert not (tmp_path / "r.md").exists()


@pytest.mark.slow
def test_run_all_writes_markdown_with_machine_and_commands(tmp_path):
    out = tmp_path / "results.md"
    res = _script(
        "run_all",
        *["--out", str(out), "--skip-default", "--paper-models", TINY, "--paper-size", "32x64"],
        *["--paper-iterations", "1", "--paper-calib-images", "2", "--paper-pipeline-frames", "0"],
        *["--threads", "1"],
    )
    assert res.returncode == 0, res.stderr
    assert f"wrote {out} and results.json" in res.stdout
    md = out.read_text()
    assert "load average (1/5/15 min) before" in md and "cores; GPU:" in md
    assert f"benchmarks/chain.py --models {TINY} --height 32 --width 64" in md
    assert "| PyTorch eager |" in md and "| CPU INT8 vs ONNX Runtime FP32 |" in md
    raw = json.loads(out.with_suffix(".json").read_text())
    assert [run["title"] for run in raw["runs"]] == [TINY]
    assert raw["runs"][0]["report"]["models"][0]["results"][0]["fps"] > 0
    (rt,) = raw["runs"][0]["cpu_runtimes"]  # both CPU runtimes on the export, interleaved
    assert rt["result"]["best"]["ms"] > 0 and "Best CPU runtime:" in md
    # saved runs combined, in the order given, nothing re-measured; a saved failure keeps exit 1
    earlier = tmp_path / "earlier.json"
    earlier.write_text(
        json.dumps(
            {
                "runs": [
                    {
                        "title": "default",
                        "argv": [],
                        "started": "2026-11-30 09:00 UTC",
                        "loadavg": {"before": [0.1, 0.1, 0.1], "after": [0.2, 0.1, 0.1]},
                        "report": not_measured("default", "it crashed"),
                    }
                ],
            }
        )
    )
    combined = tmp_path / "combined.md"
    args = ["--out", str(combined), "--skip-default", "--skip-paper"]
    res = _script("run_all", *args, "--include", str(earlier), str(out.with_suffix(".json")))
    assert res.returncode == 1, res.stderr
    text = combined.read_text()
    assert text.count("## default") == 1 and text.count(f"## {TINY}") == 1
    assert text.index("## default") < text.index(f"## {TINY}")
    assert "Run started 2026-11-30 09:00 UTC" in text and "not measured (`default`): it crashed" in text
