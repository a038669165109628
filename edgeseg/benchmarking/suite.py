"""What `make bench` (`benchmarks/run_all.py`) runs: one `benchmarks/chain.py` command per model.

The shipped default model runs at its own input size with many frames (trained weights: mIoU and the
INT8 gate mean something); the paper models run at 512x1024 in random init with few frames.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

# a plan entry: (title, chain.py arguments), or (title, why the run is skipped)
Run = tuple[str, list[str] | str]


@dataclass(frozen=True)
class SuiteOptions:
    """run_all.py's options that shape the chain.py commands (its defaults are these)."""

    threads: int = 2
    workdir: Path | None = None
    reuse: bool = False
    skip_default: bool = False
    skip_paper: bool = False
    default_iterations: int = 50
    default_frames: int = 32
    default_pipeline_frames: int = 100
    default_pipeline_rounds: int = 6
    paper_models: str = "fcn8s,deeplabv3plus"
    paper_size: tuple[int, int] = (512, 1024)
    paper_iterations: int = 3
    paper_calib_images: int = 4
    paper_pipeline_frames: int = 3
    runtime_rounds: int = 3  # benchmarks/cpu_runtimes.py per model: interleaved rounds (0 skips it)


def cpu_runtimes_argv(onnx: Path, opts: SuiteOptions, paper: bool) -> list[str]:
    """benchmarks/cpu_runtimes.py on one model's export: ONNX Runtime and OpenVINO on each of its files,
    in interleaved rounds (chain.py's `edgeseg bench` measures the artifacts one after another, each in
    its own process; this gives the "best CPU runtime" ratio from one run). Few runs for the paper
    models, whose frames take seconds."""
    runs = opts.paper_iterations if paper else 10
    return [
        "--onnx",
        str(onnx),
        "--rounds",
        str(opts.runtime_rounds),
        "--runs",
        str(runs),
        "--warmup",
        "1" if paper else "2",
        "--threads",
        str(opts.threads),
    ]


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


def chain_commands(
    opts: SuiteOptions, default_size: Callable[[], tuple[int, int] | str] = default_model_size
) -> list[Run]:
    """(title, chain.py arguments) per run; a string instead of arguments says why a run is skipped."""
    common = ["--threads", str(opts.threads)]
    if opts.workdir:
        common += ["--workdir", str(opts.workdir)]
    if opts.reuse:
        common.append("--reuse")
    runs: list[Run] = []
    if not opts.skip_default:
        size = default_size()
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
                        str(opts.default_iterations),
                        "--frames",
                        str(opts.default_frames),
                        "--pipeline-frames",
                        str(opts.default_pipeline_frames),
                        "--pipeline-rounds",
                        str(opts.default_pipeline_rounds),
                        *common,
                    ],
                )
            )
    if not opts.skip_paper:
        h, w = opts.paper_size
        for model in opts.paper_models.split(","):
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
                        str(opts.paper_iterations),
                        "--frames",
                        str(opts.paper_iterations),
                        "--calib-images",
                        str(opts.paper_calib_images),
                        "--calib-method",
                        "minmax",
                        "--eval-images",
                        "1",
                        "--pipeline-frames",
                        str(opts.paper_pipeline_frames),
                        "--pipeline-rounds",
                        "2",
                        *common,
                    ],
                )
            )
    return runs
