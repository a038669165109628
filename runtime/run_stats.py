"""Streaming statistics: end-to-end FPS, per-stage latency percentiles, capture-to-result latency,
dropped frames, source gaps and (with ground truth) a running mIoU.

Memory stays flat on endless streams: latencies go into fixed-size reservoirs (uniform samples of
the whole run), the ground-truth score into one confusion matrix.
"""

from __future__ import annotations

import math
import os
import threading
import time
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from edgeseg.errors import ExitCode, exit_code_of, first_line
from edgeseg.metrics import ConfusionMatrix, SegMetrics
from edgeseg.signals import exit_code_for

STAGES = ("capture", "preprocess", "inference", "postprocess", "output")
RESERVOIR = 20_000  # samples kept per series; percentiles of a uniform sample of the whole run


class Reservoir:
    """Uniform random sample of an unbounded series (Vitter's algorithm R) plus exact count/mean/max."""

    def __init__(self, capacity: int = RESERVOIR, seed: int = 0) -> None:
        self.capacity = capacity
        self.values = np.empty(capacity, dtype=np.float64)
        self.count = 0
        self.total = 0.0
        self.peak = -math.inf
        self._rng = np.random.default_rng(seed)

    def add(self, value: float) -> None:
        if self.count < self.capacity:
            self.values[self.count] = value
        else:
            j = int(self._rng.integers(0, self.count + 1))
            if j < self.capacity:
                self.values[j] = value
        self.count += 1
        self.total += value
        self.peak = max(self.peak, value)

    def summary(self) -> dict[str, float | None]:
        """p50/p95/p99/mean/max in the series' own unit (milliseconds here)."""
        if self.count == 0:
            return {"p50": None, "p95": None, "p99": None, "mean": None, "max": None}
        sample = self.values[: min(self.count, self.capacity)]
        p50, p95, p99 = np.percentile(sample, [50, 95, 99])
        return {
            "p50": float(p50),
            "p95": float(p95),
            "p99": float(p99),
            "mean": self.total / self.count,
            "max": float(self.peak),
        }


@dataclass
class Gap:
    """A stretch of time in which a live source delivered nothing."""

    start: float  # seconds since the run started
    end: float | None = None
    attempts: int = 0
    recovered: bool = False
    reason: str = ""  # why the source went quiet
    last_error: str = ""  # why the last reopen attempt failed

    @property
    def start_s(self) -> float:
        return round(self.start, 3)

    @property
    def duration_s(self) -> float | None:
        """How long the source was quiet (None while it still is)."""
        return None if self.end is None else round(self.end - self.start, 3)

    def to_dict(self) -> dict[str, Any]:
        return {
            "start_s": self.start_s,
            "end_s": None if self.end is None else round(self.end, 3),
            "duration_s": self.duration_s,
            "reconnect_attempts": self.attempts,
            "recovered": self.recovered,
            "reason": self.reason,
            "last_error": self.last_error,
        }


@dataclass(frozen=True)
class CpuUse:
    """CPU milliseconds per processed frame (the process, and each stage thread's own), and how many
    cores the run kept busy on average."""

    process_ms_per_frame: float
    cores_busy: float
    cores: int | None
    stage_ms_per_frame: dict[str, float]  # "other threads": library pools and the main thread

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)  # its fields are the JSON form, in order


@dataclass
class RunStats:
    """Everything a run measures; written by the output stage, read by the status line."""

    classes: list[str] = field(default_factory=list)
    started: float = field(default_factory=time.perf_counter)
    first_done: float | None = None
    last_done: float | None = None
    processed: int = 0
    captured: int = 0
    dropped: int = 0
    unlabeled: int = 0  # frames with no ground truth while other frames had some
    interrupted: bool = False
    signal: str | None = None  # SIGINT or SIGTERM, when one stopped the run
    source_lost: str | None = None  # why a live source was given up (no --reconnect, timeout ran out)
    input_problem: str | None = None  # what was wrong with a file source (e.g. a truncated video)
    error: BaseException | None = None  # what failed (an output, a stage); the run stopped there
    live: bool = False  # latest-frame semantics; otherwise latency includes read-ahead queueing
    stages: dict[str, Reservoir] = field(default_factory=lambda: {s: Reservoir() for s in STAGES})
    latency: Reservoir = field(default_factory=Reservoir)  # capture -> result, ms
    gaps: list[Gap] = field(default_factory=list)
    confusion: ConfusionMatrix | None = None
    class_pixels: np.ndarray | None = None
    # CPU accounting: process CPU time (all threads, library pools included) from the start to the
    # last result, and each stage thread's own CPU time (inference workers summed) when it ended
    cpu_started: float | None = None
    cpu_last: float | None = None
    thread_cpu: dict[str, float] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def __post_init__(self) -> None:
        n = len(self.classes)
        if n:
            self.class_pixels = np.zeros(n, dtype=np.int64)

    def record(self, timings: dict[str, float], latency_ms: float, done: float) -> None:
        with self._lock:
            for stage, ms in timings.items():
                if stage in self.stages:
                    self.stages[stage].add(ms)
            self.latency.add(latency_ms)
            self.cpu_last = time.process_time()
            self.processed += 1
            if self.first_done is None:
                self.first_done = done
            self.last_done = done

    def add_thread_cpu(self, stage: str, seconds: float) -> None:
        with self._lock:
            self.thread_cpu[stage] = self.thread_cpu.get(stage, 0.0) + seconds

    def add_histogram(self, hist: np.ndarray) -> None:
        with self._lock:
            if self.class_pixels is None or len(self.class_pixels) < len(hist):
                grown = np.zeros(len(hist), dtype=np.int64)
                if self.class_pixels is not None:
                    grown[: len(self.class_pixels)] = self.class_pixels
                self.class_pixels = grown
            self.class_pixels[: len(hist)] += hist

    def add_confusion(self, matrix: np.ndarray) -> float:
        """Count one frame's confusion matrix into the run's; the running mIoU (NaN while undefined)."""
        with self._lock:
            if self.confusion is None:
                self.confusion = ConfusionMatrix(len(self.classes))
            self.confusion.matrix += matrix
            return self.confusion.compute().miou

    def confusion_matrix(self) -> np.ndarray | None:
        """A copy of the run's confusion matrix so far (None before the first frame with ground truth)."""
        with self._lock:
            return None if self.confusion is None else self.confusion.matrix.copy()

    def set_confusion(self, matrix: np.ndarray | None) -> None:
        """Replace the run's confusion matrix (a total made of several streams' matrices)."""
        with self._lock:
            if matrix is None:
                self.confusion = None
            else:
                self.confusion = ConfusionMatrix(len(self.classes))
                self.confusion.matrix = matrix

    # --- derived numbers ---------------------------------------------------------------------------
    @property
    def elapsed(self) -> float:
        end = self.last_done if self.last_done is not None else time.perf_counter()
        return max(end - self.started, 1e-9)

    @property
    def fps(self) -> float:
        """End-to-end throughput: results delivered per second of wall time since the run started."""
        return self.processed / self.elapsed if self.processed else 0.0

    @property
    def steady_fps(self) -> float:
        """Throughput after the first result (excludes start-up: model warm-up, first decode)."""
        if self.processed < 2 or self.first_done is None or self.last_done is None:
            return self.fps
        return (self.processed - 1) / max(self.last_done - self.first_done, 1e-9)

    def cpu(self) -> CpuUse | None:
        """CPU milliseconds per processed frame, and how many cores the run kept busy on average.

        Why: on a CPU backend every millisecond the pipeline spends decoding, preprocessing or drawing
        is taken from inference once the cores are saturated, so these numbers bound the FPS."""
        if not self.processed or self.cpu_started is None or self.cpu_last is None:
            return None
        process_ms = (self.cpu_last - self.cpu_started) * 1000.0 / self.processed
        with self._lock:
            stages = {s: v * 1000.0 / self.processed for s, v in self.thread_cpu.items()}
        if stages:
            stages["other threads"] = max(0.0, process_ms - sum(stages.values()))
        return CpuUse(
            process_ms_per_frame=process_ms,
            cores_busy=(self.cpu_last - self.cpu_started) / self.elapsed,
            cores=len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
            stage_ms_per_frame=stages,
        )

    def metrics(self) -> SegMetrics | None:
        with self._lock:
            return None if self.confusion is None else self.confusion.compute()

    def status_line(self) -> str:
        """One short line for the live display."""
        lat = self.latency.summary()
        parts = [f"{self.processed} frames", f"{self.fps:.1f} FPS"]
        if lat["p50"] is not None:
            parts.append(f"latency p50 {lat['p50']:.1f} ms")
        if self.dropped:
            parts.append(f"dropped {self.dropped}")
        if self.gaps:
            parts.append(f"gaps {len(self.gaps)}")
        m = self.metrics()
        if m is not None and not math.isnan(m.miou):
            parts.append(f"mIoU {m.miou:.3f}")
        return " | ".join(parts)

    @property
    def exit_code(self) -> int:
        """What the run's exit status says (`edgeseg.errors.ExitCode`): the first failure wins, then a
        stop signal, a lost live source, a damaged input."""
        if self.error is not None:
            return exit_code_of(self.error)
        if self.signal is not None:
            return exit_code_for(self.signal)
        if self.source_lost is not None:
            return ExitCode.SOURCE_LOST
        if self.input_problem is not None:
            return ExitCode.BAD_INPUT
        return ExitCode.INTERRUPTED if self.interrupted else ExitCode.OK

    def ended(self) -> dict[str, Any]:
        """Why the run ended, in words and as the exit status (for a supervisor reading the report)."""
        if self.error is not None:
            reason = first_line(self.error)
        elif self.signal is not None:
            reason = f"stopped by {self.signal}"
        elif self.source_lost is not None:
            reason = f"live source lost: {self.source_lost}"
        elif self.input_problem is not None:
            reason = self.input_problem
        elif self.interrupted:
            reason = "stopped by the user"
        else:
            reason = "completed"
        return {"reason": reason, "exit_code": int(self.exit_code)}

    def to_dict(self) -> dict[str, Any]:
        m, cpu = self.metrics(), self.cpu()
        report: dict[str, Any] = {
            "frames": {
                "captured": self.captured,
                "processed": self.processed,
                "dropped": self.dropped,
                "unlabeled": self.unlabeled,
            },
            "interrupted": self.interrupted,
            "ended": self.ended(),
            "live": self.live,
            "duration_s": round(self.elapsed, 3),
            "fps": self.fps,
            "steady_fps": self.steady_fps,
            "latency_ms": {
                "capture_to_result": self.latency.summary(),
                "stages": {s: r.summary() for s, r in self.stages.items()},
            },
            "cpu": None if cpu is None else cpu.to_dict(),
            "gaps": [g.to_dict() for g in self.gaps],
            "metrics": None if m is None else m.to_dict(self.classes),
        }
        if self.class_pixels is not None and self.class_pixels.sum():
            names = self.classes or [str(i) for i in range(len(self.class_pixels))]
            total = float(self.class_pixels.sum())
            report["class_share"] = {
                (names[i] if i < len(names) else str(i)): float(v / total)
                for i, v in enumerate(self.class_pixels)
            }
        return report
