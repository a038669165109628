"""What `edgeseg train` says before it starts: the data, the split, how many images, the input size
and where it comes from, the batch, steps per epoch, and (after timing the first steps) how long the
run will take. A 3-hour run must not start silently, and neither may a resize of the data."""

from __future__ import annotations

import time
from typing import Any

from edgeseg.training.config import TrainConfig

DEFAULT_SIZE_ORIGIN = "the training config"


def size_origin(*, explicit: bool, resumed: bool) -> str:
    """Why the input size is what it is, for the header (the CLI knows which options were given)."""
    if explicit:
        return "set by --height/--width"
    if resumed:
        return "the resumed run's"
    return "edgeseg's default; set --height/--width to change it"


def data_size(dataset: Any) -> tuple[int, int] | None:
    """(H, W) of the data: a generated set's size, else the first image's (folders may vary)."""
    if hasattr(dataset, "height") and hasattr(dataset, "width"):
        return int(dataset.height), int(dataset.width)
    try:
        return tuple(int(d) for d in dataset[0][0].shape[:2])  # type: ignore[return-value]
    except Exception:  # noqa: BLE001 - a header line must never stop training
        return None


def header_lines(
    cfg: TrainConfig,
    train_set: Any,
    val_set: Any,
    *,
    batch: int,
    steps_per_epoch: int,
    world_size: int,
    device: str,
    start_epoch: int = 0,
    origin: str = DEFAULT_SIZE_ORIGIN,
) -> list[str]:
    """The header, one fact per line."""
    h, w = cfg.input_size
    fmt = getattr(train_set, "format", None)
    split = getattr(train_set, "split", None)
    where = ", ".join(x for x in (fmt and f"{fmt} data", split and f"split {split}") if x)
    lines = [
        f"train {cfg.model} on {cfg.data}"
        + (f" ({where})" if where else "")
        + f": {len(train_set):,} images, "
        f"{len(train_set.classes)} classes ({', '.join(train_set.classes[:8])}"
        + (", ..." if len(train_set.classes) > 8 else "")
        + ")",
        f"validation each epoch: {_validation(cfg, train_set, val_set)}",
    ]
    size = f"input size {h}x{w} ({origin})"
    native = data_size(train_set)
    if native is not None and native != (h, w):
        varies = "" if hasattr(train_set, "height") else " (the first image; sizes may vary)"
        scale = (
            f"{h / native[0]:.2g}x" if abs(h / native[0] - w / native[1]) < 1e-6 else "a changed aspect ratio"
        )
        size += f": the data is {native[0]}x{native[1]}{varies}, resized to it as the runtime will ({scale})"
    elif native is not None:
        size += ": the data's own size"
    lines.append(size)
    if cfg.augment:
        crop = f"random {cfg.crop[0]}x{cfg.crop[1]} crops" if cfg.crop else "crop back to the input size"
        lines.append(
            f"augmentation: random scale 0.5-1.75x, {crop}, flip, colour jitter (--no-augment: none)"
        )
    procs = f" x {world_size} processes" if world_size > 1 else ""
    epochs = cfg.epochs - start_epoch
    resumed = f" (epochs {start_epoch + 1}-{cfg.epochs})" if start_epoch else ""
    lines.append(
        f"batch {batch}{procs}: {steps_per_epoch:,} steps per epoch, {epochs} epoch{'s' * (epochs != 1)}{resumed} = "
        f"{steps_per_epoch * epochs:,} steps, on {device}"
    )
    return lines


def _validation(cfg: TrainConfig, train_set: Any, val_set: Any) -> str:
    n = len(val_set)
    used = min(n, cfg.val_limit) if cfg.val_limit else n
    count = f"{used:,} of {n:,} images (--val-limit)" if used < n else f"{n:,} images"
    if cfg.val_data:
        return f"{cfg.val_data}, {count}"
    if getattr(val_set, "format", None) == "synth" and getattr(train_set, "format", None) == "synth":
        return f"generated scenes from their own seed ({getattr(val_set, 'seed', '?')}), {count}"
    split = getattr(val_set, "split", None)
    return f"{cfg.data}" + (f" split {split}" if split else "") + f", {count}"


def duration(seconds: float) -> str:
    """`2 h 05 min`, `12 min 30 s`, `45 s`."""
    s = int(round(seconds))
    if s >= 3600:
        return f"{s // 3600} h {s % 3600 // 60:02d} min"
    if s >= 60:
        return f"{s // 60} min {s % 60:02d} s"
    return f"{max(s, 0)} s"


class StepTimer:
    """Times training steps and, once `measure` steps after the first `skip` (warm-up: allocation,
    kernel selection) have run, returns one line estimating the whole run; then stays quiet."""

    def __init__(self, total_steps: int, *, skip: int = 1, measure: int = 5) -> None:
        self.total = total_steps
        self.skip = skip
        self.measure = max(1, min(measure, total_steps - skip - 1))
        self.steps = 0
        self._start: float | None = None
        self.reported = total_steps <= skip + 1  # nothing left to estimate for a run this short

    def step(self) -> str | None:
        """Call after every step; the estimate line once, else None."""
        self.steps += 1
        now = time.perf_counter()
        if self.steps == self.skip:
            self._start = now
        if self.reported or self._start is None or self.steps < self.skip + self.measure:
            return None
        self.reported = True
        per_step = (now - self._start) / (self.steps - self.skip)
        left = self.total - self.steps
        return (
            f"time: {per_step:.3g} s per step (steps {self.skip + 1}-{self.steps}) -> about "
            f"{duration(per_step * self.total)} for the {self.total:,} steps ({duration(per_step * left)} "
            "left), plus validation each epoch"
        )


def time_left(epoch_seconds: list[float], epochs_left: int) -> str:
    """`, about 1 h 20 min left` from the epochs timed so far (validation included)."""
    if not epoch_seconds or epochs_left <= 0:
        return ""
    return f", about {duration(sum(epoch_seconds) / len(epoch_seconds) * epochs_left)} left"
