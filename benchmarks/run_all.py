"""`make bench`: the chain benchmark for the shipped default model and the paper models, as Markdown.

Runs benchmarks/chain.py once per model, each in its own process (a crash or an out-of-memory kill
loses one model's figures, not all; memory of the 0.5 GB VGG-16 export is returned between models):

- the shipped default model at its own input size (trained weights: mIoU and the INT8 gate mean
  something), many frames;
- FCN-8s VGG16 and DeepLabV3+ ResNet-50 at 512x1024 in random init (no trained weights offline), few
  frames: FCN-8s costs ~445 GFLOPs per frame, several seconds each on 2 CPU cores.

It writes docs/benchmarks-results.md with the machine description, the load average (the figures
are only as good as the machine was quiet) and the exact commands.

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
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(HERE))

import chain  # noqa: E402  (benchmarks/ is a folder of scripts, not a package)


def _size(text: str) -> tuple[int, int]:
    try:
        h, w = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"size must look like 512x1024, got {text!r}") from None
    return h, w


def default_model_size() -> tuple[int, int] | str:
    """The shipped default model's own input size, or why it cannot be benchmarked."""
    from edgeseg.checkpoint import load_checkpoint
    from edgeseg.defaults import default_model_path
    from edgeseg.errors import EdgesegError

    try:
        card = load_checkpoint(default_model_path("pt"))["card"]
    except EdgesegError as exc:
        return str(exc)
    return card.input_size


def chain_commands(args: argparse.Namespace) -> list[tuple[str, list[str] | str]]:
    """(title, chain.py arguments) per run; a string instead of arguments says why a run is skipped."""
    common = ["--threads", str(args.threads)]
    if args.workdir:
        common += ["--workdir", str(args.workdir)]
    if args.reuse:
        common.append("--reuse")
    runs: list[tuple[str, list[str] | str]] = []
    if not args.skip_default:
        size = default_model_size()
        if isinstance(size, str):
            runs.append(("default", size))
        else:
            runs.append(
                (
                    "default",
                    [
                        "--models",
                        "default",
                        "--height",
                        str(size[0]),
                        "--width",
                        str(size[1]),
                        "--warmup",
                        "3",
                        "--iterations",
                        str(args.default_iterations),
                        "--frames",
                        str(args.default_frames),
                        "--pipeline-frames",
                        str(args.default_pipeline_frames),
                        "--pipeline-rounds",
                        str(args.default_pipeline_rounds),
                        *common,
                    ],
                )
            )
    if not args.skip_paper:
        h, w = args.paper_size
        for model in args.paper_models.split(","):
            runs.append(
                (
                    model,
                    [
                        "--models",
                        model,
                        "--height",
                        str(h),
                        "--width",
                        str(w),
                        "--warmup",
                        "1",
                        "--iterations",
                        str(args.paper_iterations),
                        "--frames",
                        str(args.paper_iterations),
                        "--calib-images",
                        str(args.paper_calib_images),
                        "--calib-method",
                        "minmax",
                        "--eval-images",
                        "1",
                        "--pipeline-frames",
                        str(args.paper_pipeline_frames),
                        "--pipeline-rounds",
                        "2",
                        *common,
                    ],
                )
            )
    return runs


def run_chain(argv: list[str]) -> dict[str, Any]:
    """chain.py in a child process; its progress streams to our terminal, its report comes back as JSON."""
    with tempfile.TemporaryDirectory(prefix="edgeseg-bench-") as tmp:
        out = Path(tmp) / "chain.json"
        cmd = [sys.executable, str(HERE / "chain.py"), *argv, "--json-out", str(out)]
        proc = subprocess.run(cmd)
        if not out.is_file():
            return {
                "models": [],
                "failures": [{"spec": " ".join(argv), "error": f"chain.py exited {proc.returncode}"}],
            }
        return json.loads(out.read_text())


def render(runs: list[dict], machine: dict) -> str:
    """The results file: machine first, then per run when it ran, how loaded the machine was, the
    exact command and chain.py's tables."""
    libs = ", ".join(f"{k} {v}" for k, v in machine["libraries"].items())
    lines = [
        "# edgeseg benchmark results",
        "",
        "Generated by `benchmarks/run_all.py` (`make bench`); see docs/benchmarks.md for what each figure",
        "means. Every number below was measured on this machine; the load average says how many other",
        "jobs were competing for its 2 cores (it distorts absolute figures; the ratios less so).",
        "",
        f"- CPU: {machine['cpu']}, {machine['cores']} cores; GPU: {machine['gpu'] or 'none'}",
        f"- {machine['platform']}, Python {machine['python']}",
        f"- {libs}",
        "",
    ]
    for run in runs:
        lines += [f"## {run['title']}", ""]
        if run.get("started"):
            load = run.get("loadavg", {})
            lines += [
                f"Run started {run['started']}; load average (1/5/15 min) before "
                f"{_load(load.get('before'))}, after {_load(load.get('after'))}.",
                "",
            ]
        if run["argv"]:
            lines += ["```", ".venv/bin/python benchmarks/chain.py " + shlex.join(run["argv"]), "```", ""]
        lines.append(chain.markdown(run["report"], heading_level=3))
    return "\n".join(lines).rstrip() + "\n"


def _load(values: list[float] | None) -> str:
    return "-" if not values else " / ".join(f"{v:.2f}" for v in values)


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
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--workdir", type=Path, help="workspace for the artifacts (default: ./edgeseg-work)")
    ap.add_argument("--reuse", action="store_true", help="keep existing exports and their variants")
    ap.add_argument("--skip-default", action="store_true")
    ap.add_argument("--skip-paper", action="store_true")
    ap.add_argument("--default-iterations", type=int, default=50)
    ap.add_argument("--default-frames", type=int, default=32)
    ap.add_argument("--default-pipeline-frames", type=int, default=100)
    ap.add_argument(
        "--default-pipeline-rounds",
        type=int,
        default=6,
        help="interleaved rounds (single rounds swing by a few percent; the ratio target is 0.95)",
    )
    ap.add_argument("--paper-models", default="fcn8s,deeplabv3plus")
    ap.add_argument("--paper-size", type=_size, default=(512, 1024), help="HxW")
    ap.add_argument("--paper-iterations", type=int, default=3, help="timed frames per artifact")
    ap.add_argument("--paper-calib-images", type=int, default=4)
    ap.add_argument("--paper-pipeline-frames", type=int, default=3, help="per round (2 rounds); 0 skips")
    ap.add_argument(
        "--include",
        type=Path,
        nargs="*",
        default=[],
        help="raw .json of earlier runs to put before this run's (with --skip-* to combine)",
    )
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
    for title, chain_argv in chain_commands(args):
        run: dict[str, Any] = {"title": title, "argv": [], "started": time.strftime("%Y-%m-%d %H:%M %Z")}
        run["loadavg"] = {"before": list(os.getloadavg())}
        if isinstance(chain_argv, str):
            print(f"{title}: not measured: {chain_argv}", flush=True)
            run["report"] = {"models": [], "failures": [{"spec": title, "error": chain_argv}]}
        else:
            print(f"== {title}: python benchmarks/chain.py {shlex.join(chain_argv)}", flush=True)
            run["argv"] = chain_argv
            run["report"] = run_chain(chain_argv)
        run["loadavg"]["after"] = list(os.getloadavg())
        runs.append(run)
    with atomic_open(args.out, "w") as fh:
        fh.write(render(runs, machine.describe()))
    write_json(args.out.with_suffix(".json"), {"runs": runs})
    print(f"wrote {args.out} and {args.out.with_suffix('.json').name}")
    return 1 if any(run["report"].get("failures") for run in runs) else 0


if __name__ == "__main__":
    sys.exit(main())
