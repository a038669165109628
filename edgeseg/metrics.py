"""Segmentation metrics from one confusion matrix (torch-free, shared by eval, build gates and the
runtime's live mIoU).

Classes absent from both prediction and ground truth have no defined IoU; they are reported as NaN
and excluded from the means (`SegMetrics.absent` lists them so reports can say so).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from edgeseg.card import IGNORE_INDEX
from edgeseg.errors import EdgesegError

POINTS_PER_UNIT = 100.0  # mIoU is a fraction 0..1 everywhere; only a drop is said in points (0.01 each)


def drop_points(reference: float, other: float) -> float:
    """How much mIoU `other` lost against `reference`, in points (the INT8 gate's `--max-miou-drop`
    and the chain's target are in points; every mIoU itself is a fraction)."""
    return POINTS_PER_UNIT * (reference - other)


def defined(x: float) -> float | None:
    """A metric as reports show it: None (JSON null, "-" in a table) where it is undefined (NaN: a class
    that never appears, an mIoU with no class present)."""
    return None if x != x else float(x)


@dataclass
class SegMetrics:
    miou: float
    pixel_accuracy: float
    mean_class_accuracy: float
    iou: list[float]  # per class, NaN where the class never appears
    class_accuracy: list[float]
    absent: list[int] = field(default_factory=list)
    pixels: int = 0

    def to_dict(self, classes: list[str] | None = None) -> dict:
        names = classes or [str(i) for i in range(len(self.iou))]
        return {
            "miou": defined(self.miou),
            "pixel_accuracy": defined(self.pixel_accuracy),
            "mean_class_accuracy": defined(self.mean_class_accuracy),
            "per_class_iou": {n: defined(v) for n, v in zip(names, self.iou)},
            "per_class_accuracy": {n: defined(v) for n, v in zip(names, self.class_accuracy)},
            "absent_classes": [names[i] for i in self.absent],
            "pixels": self.pixels,
        }


class ConfusionMatrix:
    """Accumulates a num_classes x num_classes matrix: rows are ground truth, columns predictions."""

    def __init__(self, num_classes: int, ignore_index: int = IGNORE_INDEX) -> None:
        self.num_classes = num_classes
        self.ignore_index = ignore_index
        self.matrix = np.zeros((num_classes, num_classes), dtype=np.int64)

    def update(self, pred: np.ndarray, target: np.ndarray) -> None:
        if pred.shape != target.shape:
            raise EdgesegError(f"prediction shape {pred.shape} differs from ground truth {target.shape}")
        t = target.reshape(-1).astype(np.int64, copy=False)
        p = pred.reshape(-1).astype(np.int64, copy=False)
        keep = t != self.ignore_index
        t, p = t[keep], p[keep]
        if t.size and (t.max() >= self.num_classes or t.min() < 0):
            raise EdgesegError(
                f"ground-truth label {int(t.max())} is out of range for {self.num_classes} classes"
            )
        if p.size and (p.max() >= self.num_classes or p.min() < 0):
            raise EdgesegError(
                f"predicted label {int(p.max())} is out of range for {self.num_classes} classes"
            )
        n = self.num_classes
        self.matrix += np.bincount(t * n + p, minlength=n * n).reshape(n, n)

    def merge(self, other: ConfusionMatrix) -> None:
        self.matrix += other.matrix

    def compute(self) -> SegMetrics:
        return metrics_from_confusion(self.matrix)


def metrics_from_confusion(matrix: np.ndarray) -> SegMetrics:
    m = matrix.astype(np.float64)
    tp = np.diag(m)
    gt = m.sum(axis=1)
    pred = m.sum(axis=0)
    union = gt + pred - tp
    with np.errstate(invalid="ignore", divide="ignore"):
        iou = np.where(union > 0, tp / union, np.nan)
        cls_acc = np.where(gt > 0, tp / gt, np.nan)
    total = m.sum()
    absent = [int(i) for i in np.flatnonzero(union == 0)]
    return SegMetrics(
        miou=float(np.nanmean(iou)) if np.any(~np.isnan(iou)) else float("nan"),
        pixel_accuracy=float(tp.sum() / total) if total else float("nan"),
        mean_class_accuracy=float(np.nanmean(cls_acc)) if np.any(~np.isnan(cls_acc)) else float("nan"),
        iou=[float(x) for x in iou],
        class_accuracy=[float(x) for x in cls_acc],
        absent=absent,
        pixels=int(total),
    )
