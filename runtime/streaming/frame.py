"""One frame on its way through a stream, and its per-frame JSONL record (`edgeseg run --jsonl`)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from edgeseg.metrics import metrics_from_confusion
from edgeseg.preprocess import Geometry


@dataclass
class FrameResult:
    """One processed frame. `class_map` is the prediction: class ids at the frame's own size (ground
    truth is `gt`); it is made only when something reads it (a `stream()` consumer, a sink, ground
    truth), so headless runs skip it."""

    index: int  # capture sequence number, 0-based (gaps = dropped frames)
    name: str
    frame: np.ndarray
    wall_time: float  # time.time() at capture, or the recorded capture time (stamp_ns) when known
    t_capture: float  # time.perf_counter() at capture
    gt: np.ndarray | None = None
    stamp_ns: int | None = None  # recorded capture time (ROS header stamp), when the source has one
    frame_id: str = ""  # the source's coordinate frame (ROS header), for the outputs' headers
    class_map: np.ndarray | None = None  # the predicted class ids, H x W
    logits: np.ndarray | None = None  # C x H x W at net resolution, only with keep_logits=True
    rendered: np.ndarray | None = None  # annotated frame, when a visual sink asked for it
    histogram: np.ndarray | None = None
    confusion: np.ndarray | None = None  # this frame's confusion matrix, when GT is known
    timings: dict[str, float] = field(default_factory=dict)  # ms per stage, written once each
    t_done: float | None = None
    dropped_before: int = 0
    running_miou: float | None = None
    stream: str = ""  # the stream's name when several run through one model (runtime/multistream.py)
    # hand-offs between stages
    batch: np.ndarray | None = field(default=None, repr=False)  # the net's input (preprocess -> inference)
    geom: Geometry | None = field(default=None, repr=False)  # how the frame was fitted to the net
    raw: np.ndarray | None = field(default=None, repr=False)  # the net's output (inference -> postprocess)
    seq: int = field(default=-1, repr=False)  # order taken by the inference step (no gaps)

    @property
    def latency_ms(self) -> float | None:
        """Capture-to-result latency."""
        return None if self.t_done is None else (self.t_done - self.t_capture) * 1000.0

    @property
    def frame_miou(self) -> float | None:
        if self.confusion is None:
            return None
        m = metrics_from_confusion(self.confusion).miou
        return None if np.isnan(m) else m

    def to_record(self, classes: Sequence[str]) -> dict[str, Any]:
        """The per-frame JSONL record."""
        rec: dict[str, Any] = {
            "index": self.index,
            "name": self.name,
            "captured_at": round(self.wall_time, 6),
            "latency_ms": None if self.latency_ms is None else round(self.latency_ms, 3),
            "stages_ms": {k: round(v, 3) for k, v in self.timings.items()},
            "dropped_before": self.dropped_before,
            "size": [int(self.frame.shape[0]), int(self.frame.shape[1])],
        }
        if self.stamp_ns is not None:
            rec["stamp_ns"] = self.stamp_ns
        if self.frame_id:
            rec["frame_id"] = self.frame_id
        if self.stream:
            rec["stream"] = self.stream
        if self.histogram is not None:
            rec["class_pixels"] = {
                (classes[i] if i < len(classes) else str(i)): int(n)
                for i, n in enumerate(self.histogram)
                if n
            }
        if self.confusion is not None:
            rec["miou"] = self.frame_miou
            rec["running_miou"] = self.running_miou
        return rec
