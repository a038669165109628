"""`make bench`: the chain benchmark for the shipped default model and the paper models, as Markdown.

Runs benchmarks/chain.py once per model, each in its own process (a crash or an out-of-memory kill
loses one model's figures, not all; memory of the 0.5 GB VGG-16 export is returned between models):

- the shipped default model at its own input size (trained weights: mIoU and the INT8 gate mean
  something), many frames;
- FCN-8s VGG16 and DeepLabV3+ ResNet-50 at 512x1024 in random init (no trained weights offline), few
  frames: FCN-8s costs ~445 GFLOPs per frame, several seconds each on 2 CPU cores.

It writes docs/benchmarks-results.md with the machine description, the load average (the figures
are only as good as the machine was quiet) and the exact commands. The plan and the Markdown are
library code (`edgeseg.benchmarking.suite`, `.report`).

    .venv/bin/python benchmarks/run_all.py                    # everything (about half an hour on 2 cores)
    .venv/bin/python benchmarks/run_all.py --skip-paper       # the default model only
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, fields
from pathlib import Path
from typing import Any

from edgeseg.benchmarking.report import not_measured, results_markdown
from edgeseg.benchmarking.suite import SuiteOptions, chain_commands, cpu_runtimes_argv

HERE = Path(__file__).resolve().parent
REPO = HERE.parent


def _size(text: str) -> tuple[int, int]:
    try:
        h, w = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"size must look like 512x1024, got {text!r}") from None
    return h, w


def run_chain(argv: list[str]) -> dict[str, Any]:
    """chain.py in a child process; its progress streams to our terminal, its report comes back as JSON."""
    with tempfile.TemporaryDirectory(prefix="edgeseg-bench-") as tmp:
        out = Path(tmp) / "chain.json"
        cmd = [sys.executable, str(HERE / "chain.py"), *argv, "--json-out", str(out)]
        proc = subprocess.run(cmd)
        if not out.is_file():
            return not_measured(" ".join(argv), f"chain.py exited {proc.returncode}")
        return json.loads(out.read_text())


def run_cpu_runtimes(report: dict[str, Any], suite: SuiteOptions, paper: bool) -> list[dict[str, Any]]:
    """cpu_runtimes.py on each measured model's export (the files chain.py made), each in a child
    process; its table comes back as JSON, or why it is missing."""
    from edgeseg import workspace

    out: list[dict[str, Any]] = []
    for model in report.get("models", []):
        if "results" not in model:
            continue
        onnx = workspace.workdir(suite.workdir) / model["name"] / f"{model['name']}.onnx"
        argv = cpu_runtimes_argv(onnx, suite, paper)
        print(f"== {model['name']}: python benchmarks/cpu_runtimes.py {shlex.join(argv)}", flush=True)
        with tempfile.TemporaryDirectory(prefix="edgeseg-rt-") as tmp:
            result = Path(tmp) / "rt.json"
            proc = subprocess.run(
                [sys.executable, str(HERE / "cpu_runtimes.py"), *argv, "--json", str(result)]
            )
            entry: dict[str, Any] = {"name": model["name"], "argv": argv}
            if result.is_file():
                entry["result"] = json.loads(result.read_text())
            else:
                entry["error"] = f"cpu_runtimes.py exited {proc.returncode}"
        out.append(entry)
    return out


def load_runs(paths: list[Path]) -> list[dict]:
    """Runs saved by earlier invocations (their .json), e.g. paper models measured in a quiet window."""
    runs = []
    for path in paths:
        raw = json.loads(path.read_text())
        for run in raw["runs"]:
            run.setdefault("started", raw.get("started"))
            run.setdefault("loadavg", raw.get("loadavg"))
            runs.append(run)
    return runs


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument(
        "--out",
        type=Path,
        default=REPO / "docs" / "benchmarks-results.md",
        help="Markdown results; the raw reports go beside it as .json",
    )
    ap.add_argument("--threads", type=int)
    ap.add_argument("--workdir", type=Path, help="workspace for the artifacts (default: ./edgeseg-work)")
    ap.add_argument("--reuse", action="store_true", help="keep existing exports and their variants")
    ap.add_argument("--skip-default", action="store_true")
    ap.add_argument("--skip-paper", action="store_true")
    ap.add_argument("--default-iterations", type=int)
    ap.add_argument("--default-frames", type=int)
    ap.add_argument("--default-pipeline-frames", type=int)
    ap.add_argument(
        "--default-pipeline-rounds",
        type=int,
        help="interleaved rounds (single rounds swing by a few percent; the ratio target is 0.95)",
    )
    ap.add_argument("--paper-models")
    ap.add_argument("--paper-size", type=_size, help="HxW")
    ap.add_argument("--paper-iterations", type=int, help="timed frames per artifact")
    ap.add_argument("--paper-calib-images", type=int)
    ap.add_argument("--paper-pipeline-frames", type=int, help="per round (2 rounds); 0 skips")
    ap.add_argument(
        "--runtime-rounds",
        type=int,
        help="benchmarks/cpu_runtimes.py rounds per model, ONNX Runtime and OpenVINO interleaved (0 skips)",
    )
    ap.add_argument(
        "--include",
        type=Path,
        nargs="*",
        default=[],
        help="raw .json of earlier runs to put before this run's (with --skip-* to combine)",
    )
    ap.set_defaults(**asdict(SuiteOptions()))  # the plan's defaults, kept in one place
    return ap


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)

    from edgeseg import machine
    from edgeseg.atomic import atomic_open, write_json

    for path in args.include:
        if not path.is_file():
            print(f"error: --include {path}: no such file", file=sys.stderr)
            return 2
    runs = load_runs(args.include)
    suite = SuiteOptions(**{f.name: getattr(args, f.name) for f in fields(SuiteOptions)})
    for title, chain_argv in chain_commands(suite):
        run: dict[str, Any] = {"title": title, "argv": [], "started": time.strftime("%Y-%m-%d %H:%M %Z")}
        run["loadavg"] = {"before": list(os.getloadavg())}
        if isinstance(chain_argv, str):
            print(f"{title}: not measured: {chain_argv}", flush=True)
            run["report"] = not_measured(title, chain_argv)
        else:
            print(f"== {title}: python benchmarks/chain.py {shlex.join(chain_argv)}", flush=True)
            run["argv"] = chain_argv
            run["report"] = run_chain(chain_argv)
            if suite.runtime_rounds > 0:
                run["cpu_runtimes"] = run_cpu_runtimes(run["report"], suite, paper=title != "default")
        run["loadavg"]["after"] = list(os.getloadavg())
        runs.append(run)
    with atomic_open(args.out, "w") as fh:
        fh.write(results_markdown(runs, machine.describe()))
    write_json(args.out.with_suffix(".json"), {"runs": runs})
    print(f"wrote {args.out} and {args.out.with_suffix('.json').name}")
    return 1 if any(run["report"].get("failures") for run in runs) else 0


if __name__ == "__main__":
    sys.exit(main())
