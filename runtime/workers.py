"""How many inference workers a run gets, and how many CPU threads each.

Throughput or latency: a file is processed frame by frame as fast as possible, so two workers with
half the threads each finish more frames per second (each frame takes longer). A live camera wants
the newest frame's result soonest, so it keeps one worker with every thread. Only ONNX Runtime on the
CPU gets two by default: its sessions take per-session thread counts, and that is where it was
measured (docs/runtime.md). GPU backends queue work on the device instead; PyTorch's thread count is
process-wide, so it cannot be split between workers.

Only light models get two: a second session holds a second copy of the weights (FCN-8s VGG16 runs at
2.3 GB RSS in FP32), and heavy models gain nothing from it, because a large convolution already keeps
every thread of one session busy (bare, one 2-thread session and two 1-thread sessions measured the
same FPS on FCN-8s and DeepLabV3+ at 512x1024), while two workers double each frame's latency.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from edgeseg.defaults import MAX_WORKERS
from edgeseg.errors import EdgesegError

AUTO_WORKERS = 2  # more did not add throughput on 2 cores; beyond that, unmeasured
AUTO_MAX_MODEL_BYTES = 64 * 1024 * 1024  # heavier artifacts keep one worker (see above)


@dataclass(frozen=True)
class WorkerPlan:
    workers: int
    threads: int | None  # per worker; None: the backend's own default
    paced: bool = False  # the source sets the pace (live, --realtime): the backend waits between frames

    def describe(self) -> str:
        threads = "default threads" if self.threads is None else f"{self.threads} thread(s)"
        return f"{self.workers} worker(s) x {threads}"


def available_cores() -> int:
    """CPUs this process may run on (respects affinity masks and container CPU sets)."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # not on Linux
        return os.cpu_count() or 1


def plan_workers(
    requested: int | None,
    *,
    threads: int | None,
    live: bool,
    splits_threads: bool,
    model_bytes: int = 0,
    cores: int | None = None,
) -> WorkerPlan:
    """`requested` workers (None: choose), sharing `threads` CPU threads (None: every core).

    `splits_threads`: the backend takes a per-instance CPU thread count (ONNX Runtime on the CPU).
    `model_bytes`: the artifact's size, a stand-in for the memory each extra worker costs.
    """
    if requested is not None and requested < 1:
        raise EdgesegError(f"--workers must be at least 1, got {requested}")
    if requested is not None and requested > MAX_WORKERS:
        raise EdgesegError(f"--workers must be at most {MAX_WORKERS}, got {requested}")
    total = threads or cores or available_cores()
    if requested is None:
        light = model_bytes <= AUTO_MAX_MODEL_BYTES
        requested = AUTO_WORKERS if splits_threads and light and not live and total >= AUTO_WORKERS else 1
    if requested == 1 or not splits_threads:
        return WorkerPlan(requested, threads, paced=live)
    return WorkerPlan(requested, max(1, total // requested), paced=live)
