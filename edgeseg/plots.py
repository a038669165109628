"""PNG plots for evaluation reports (matplotlib, headless Agg backend, imported lazily)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from edgeseg.atomic import atomic_path
from edgeseg.lazy import require
from edgeseg.metrics import SegMetrics


def _pyplot():
    matplotlib = require("matplotlib")
    matplotlib.use("Agg", force=True)  # never needs a display (robots, CI)
    return require("matplotlib.pyplot")


def _save(fig, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=120, bbox_inches="tight")
    return path


def iou_bars(
    metrics: SegMetrics,
    classes: Sequence[str],
    path: str | Path,
    palette: Sequence[tuple[int, int, int]] | None = None,
    title: str | None = None,
) -> Path:
    """Horizontal bars of per-class IoU in the class colours; absent classes are marked, not drawn as 0."""
    plt = _pyplot()
    n = len(metrics.iou)
    names = list(classes[:n])
    values = np.nan_to_num(np.asarray(metrics.iou, dtype=float), nan=0.0)
    colors = [tuple(c / 255 for c in palette[i]) for i in range(n)] if palette else None
    fig, ax = plt.subplots(figsize=(7, 0.35 * n + 1.2))
    try:
        ax.barh(range(n), values, color=colors, edgecolor="black", linewidth=0.5)
        ax.set_yticks(range(n), names)
        ax.invert_yaxis()
        ax.set_xlim(0, 1)
        ax.set_xlabel("IoU")
        for i, v in enumerate(metrics.iou):
            ax.text(min(values[i], 0.88) + 0.01, i, "absent" if np.isnan(v) else f"{v:.3f}", va="center")
        if not np.isnan(metrics.miou):
            ax.axvline(metrics.miou, color="red", linestyle="--", linewidth=1)
        ax.set_title(title or f"per-class IoU (mIoU {metrics.miou:.3f})")
        return _save(fig, Path(path))
    finally:
        plt.close(fig)


def confusion_matrix(
    matrix: np.ndarray, classes: Sequence[str], path: str | Path, title: str | None = None
) -> Path:
    """Row-normalised confusion matrix (rows: ground truth, columns: prediction)."""
    plt = _pyplot()
    m = np.asarray(matrix, dtype=float)
    with np.errstate(invalid="ignore", divide="ignore"):
        norm = np.where(m.sum(1, keepdims=True) > 0, m / m.sum(1, keepdims=True), 0.0)
    n = m.shape[0]
    size = max(4.0, 0.55 * n + 2)
    fig, ax = plt.subplots(figsize=(size, size))
    try:
        im = ax.imshow(norm, cmap="Blues", vmin=0, vmax=1)
        ax.set_xticks(range(n), list(classes[:n]), rotation=45, ha="right")
        ax.set_yticks(range(n), list(classes[:n]))
        ax.set_xlabel("predicted")
        ax.set_ylabel("ground truth")
        if n <= 25:
            for r in range(n):
                for c in range(n):
                    if norm[r, c] >= 0.005:
                        color = "white" if norm[r, c] > 0.5 else "black"
                        ax.text(c, r, f"{norm[r, c]:.2f}", ha="center", va="center", fontsize=7, color=color)
        fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04)
        ax.set_title(title or "confusion matrix (row-normalised)")
        return _save(fig, Path(path))
    finally:
        plt.close(fig)


def fps_vs_miou(points: Sequence[tuple[str, float | None, float | None]], path: str | Path) -> Path:
    """Speed against accuracy, one labelled point per artifact (label, FPS, mIoU 0..1); used by bench and demo."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7, 4.5))
    try:
        for label, fps, miou in points:
            if fps is None or miou is None or miou != miou:
                continue
            ax.scatter(fps, miou * 100, s=60)
            ax.annotate(label, (fps, miou * 100), textcoords="offset points", xytext=(6, 4), fontsize=8)
        ax.set_xlabel("throughput (FPS)")
        ax.set_ylabel("mIoU (%)")
        ax.set_title("speed vs accuracy")
        ax.grid(alpha=0.3)
        return _save(fig, Path(path))
    finally:
        plt.close(fig)
