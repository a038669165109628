"""PNG plots for evaluation reports (matplotlib, headless Agg backend, imported lazily).

Accuracy is a fraction 0..1 everywhere, as in the tables. Each plot has a `*_figure` builder (for
tests and callers that want the figure) and a writer that saves it atomically.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from edgeseg.atomic import atomic_path
from edgeseg.lazy import require
from edgeseg.metrics import SegMetrics


def _pyplot():
    matplotlib = require("matplotlib")
    matplotlib.use("Agg", force=True)  # never needs a display (robots, CI)
    return require("matplotlib.pyplot")


def _write(fig, path: str | Path) -> Path:
    """Save atomically and release the figure (pyplot keeps every open figure otherwise)."""
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with atomic_path(path) as tmp:
            fig.savefig(tmp, format="png", dpi=120, bbox_inches="tight")
        return path
    finally:
        _pyplot().close(fig)


def iou_bars(
    metrics: SegMetrics,
    classes: Sequence[str],
    path: str | Path,
    palette: Sequence[tuple[int, int, int]] | None = None,
    title: str | None = None,
) -> Path:
    """Per-class IoU bars as a PNG (see `iou_bars_figure`)."""
    return _write(iou_bars_figure(metrics, classes, palette, title), path)


def iou_bars_figure(
    metrics: SegMetrics,
    classes: Sequence[str],
    palette: Sequence[tuple[int, int, int]] | None = None,
    title: str | None = None,
) -> Any:
    """Horizontal bars of per-class IoU in the class colours, each value beside its bar, the mIoU as
    a labelled dashed line; absent classes are marked, not drawn as 0."""
    plt = _pyplot()
    n = len(metrics.iou)
    names = list(classes[:n])
    values = np.nan_to_num(np.asarray(metrics.iou, dtype=float), nan=0.0)
    rgb = [tuple(c / 255 for c in palette[i]) for i in range(n)] if palette else None
    fig, ax = plt.subplots(figsize=(7, 0.35 * n + 1.4))
    ax.barh(range(n), values, color=rgb, edgecolor="black", linewidth=0.5)
    ax.set_yticks(range(n), names)
    ax.invert_yaxis()
    ax.set_xlim(0, 1.1)  # room for the value beside a full bar
    ax.set_xticks(np.linspace(0, 1, 6))
    ax.set_xlabel("IoU (0-1)")
    for i, v in enumerate(metrics.iou):
        ax.text(
            values[i] + 0.01,
            i,
            "absent" if np.isnan(v) else f"{v:.3f}",
            va="center",
            ha="left",
            zorder=4,
            bbox={"boxstyle": "square,pad=0.1", "facecolor": "white", "edgecolor": "none", "alpha": 0.85},
        )  # fmt: skip; the box keeps the value readable where the mIoU line crosses it
    if not np.isnan(metrics.miou):
        ax.axvline(metrics.miou, color="red", linestyle="--", linewidth=1.2, label=f"mIoU {metrics.miou:.3f}")
        ax.legend(loc="lower right", bbox_to_anchor=(1.0, 1.0), frameon=False, borderaxespad=0.2)
    ax.set_title(title or "per-class IoU", loc="left")
    return fig


def confusion_matrix(
    matrix: np.ndarray, classes: Sequence[str], path: str | Path, title: str | None = None
) -> Path:
    """The row-normalised confusion matrix as a PNG (see `confusion_matrix_figure`)."""
    return _write(confusion_matrix_figure(matrix, classes, title), path)


def confusion_matrix_figure(matrix: np.ndarray, classes: Sequence[str], title: str | None = None) -> Any:
    """Row-normalised confusion matrix (rows: ground truth, columns: prediction), as fractions."""
    plt = _pyplot()
    m = np.asarray(matrix, dtype=float)
    with np.errstate(invalid="ignore", divide="ignore"):
        norm = np.where(m.sum(1, keepdims=True) > 0, m / m.sum(1, keepdims=True), 0.0)
    n = m.shape[0]
    size = max(4.0, 0.55 * n + 2)
    fig, ax = plt.subplots(figsize=(size, size))
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
    fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04, label="fraction of the row (0-1)")
    ax.set_title(title or "confusion matrix (row-normalised)")
    return fig


MIN_MIOU_SPAN = 0.10  # the y axis never spans less: a 0.001 difference must look like the noise it is
MARKERS = ("o", "s", "^", "D", "v", "P", "X", "<", ">", "h")  # distinct, so coincident points both show


def fps_vs_miou(points: Sequence[tuple[str, float | None, float | None]], path: str | Path) -> Path:
    """Speed against accuracy as a PNG (see `fps_vs_miou_figure`); used by bench and demo."""
    return _write(fps_vs_miou_figure(points), path)


def fps_vs_miou_figure(points: Sequence[tuple[str, float | None, float | None]]) -> Any:
    """One point per artifact (label, FPS, mIoU 0..1), each labelled with its name and values.

    FPS starts at 0 (so distances show ratios); the mIoU axis spans at least MIN_MIOU_SPAN around
    the points and the spread between them is written under the plot, so that FP32 and FP16 a
    thousandth apart do not look different. Labels are placed where they overlap neither each
    other nor a point (`_place_labels`)."""
    plt = _pyplot()
    kept = [(label, float(fps), float(miou)) for label, fps, miou in points if _finite(fps) and _finite(miou)]
    fig, ax = plt.subplots(figsize=(7.5, 4.8))
    colors = plt.get_cmap("tab10").colors
    for i, (_, fps, miou) in enumerate(kept):
        ax.scatter(
            fps, miou, s=70, marker=MARKERS[i % len(MARKERS)], facecolors="none",
            edgecolors=[colors[i % len(colors)]], linewidths=1.8, zorder=3,
        )  # fmt: skip
    ax.set_xlabel("throughput (FPS)")
    ax.set_ylabel("mIoU (0-1)")
    ax.set_title("speed vs accuracy")
    ax.grid(alpha=0.3)
    if kept:
        fps_max = max(f for _, f, _ in kept)
        ax.set_xlim(0, fps_max * 1.15 if fps_max > 0 else 1.0)
        ax.set_ylim(*miou_axis_range([m for _, _, m in kept]))
        lo, hi = min(m for _, _, m in kept), max(m for _, _, m in kept)
        d = 4 if hi - lo < 0.01 else 3  # a spread below 0.01 needs a fourth digit to be seen at all
        ax.annotate(
            f"mIoU spread across {len(kept)} artifact(s): {hi - lo:.{d}f} ({lo:.{d}f} to {hi:.{d}f}); "
            f"the axis spans at least {MIN_MIOU_SPAN:.2f}",
            xy=(0, 0), xycoords="axes fraction", xytext=(0, -32), textcoords="offset points",
            va="top", fontsize=8, color="0.3",
        )  # fmt: skip
        labels = [f"{label}\n{fps:.1f} FPS, mIoU {miou:.3f}" for label, fps, miou in kept]
        _place_labels(ax, [(fps, miou) for _, fps, miou in kept], labels)
    else:
        ax.text(0.5, 0.5, "no artifact had both FPS and mIoU", ha="center", transform=ax.transAxes)
    return fig


def miou_axis_range(values: Sequence[float], min_span: float = MIN_MIOU_SPAN) -> tuple[float, float]:
    """Limits around `values` spanning at least `min_span` (plus a margin), kept inside 0..1."""
    lo, hi = min(values), max(values)
    span = max(hi - lo, min_span) * 1.2
    mid = (lo + hi) / 2
    bottom, top = mid - span / 2, mid + span / 2
    if bottom < 0:
        bottom, top = 0.0, min(1.0, span)
    if top > 1:
        bottom, top = max(0.0, 1.0 - span), 1.0
    return bottom, top


def _finite(v: float | None) -> bool:
    return v is not None and np.isfinite(v)


# where a label's near corner goes, in points from its marker (right/left, above/below), tried first
_SIDES = (
    (9, 5, "left", "bottom"),
    (9, -5, "left", "top"),
    (-9, 5, "right", "bottom"),
    (-9, -5, "right", "top"),
)


def _spots() -> Any:
    """Label positions, nearest first: the four sides, then stepping away from the point."""
    for step in range(12):
        for dx, dy, ha, va in _SIDES:
            yield (dx * (1 + step // 4), dy + (14 * step if dy > 0 else -14 * step), ha, va)


def text_box(text: Any, renderer: Any) -> Any:
    """The display box of a text or annotation's text alone (not its leader line), as drawn."""
    from matplotlib.text import Annotation, Text

    if isinstance(text, Annotation):
        text.update_positions(renderer)
    return Text.get_window_extent(text, renderer)


def _place_labels(ax: Any, xy: Sequence[tuple[float, float]], texts: Sequence[str]) -> list[Any]:
    """Annotate each point with its text where the text's box, as the renderer draws it, overlaps no
    other label and no other point's marker, inside the axes. Greedy, in order, nearest spot first;
    a label moved away from its point gets a thin leader line; if no spot is free, the least
    crowded one (never needed for a handful of artifacts)."""
    fig = ax.figure
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    frame = ax.get_window_extent(renderer)
    radius = 6 * fig.dpi / 72  # the markers' half size in pixels (s=70: about 8.4 points across)
    markers = [
        _box(x - radius, y - radius, x + radius, y + radius)
        for x, y in ax.transData.transform(np.asarray(xy, dtype=float))
    ]
    placed: list[Any] = []
    annotations = []
    for i, (point, text) in enumerate(zip(xy, texts)):
        obstacles = placed + [m for j, m in enumerate(markers) if j != i]
        probe = ax.annotate(text, point, xytext=(0, 0), textcoords="offset points", fontsize=8)

        def crowding(spot: tuple[float, float, str, str], probe: Any = probe, obstacles=obstacles) -> float:
            probe.xyann = spot[:2]
            probe.set(horizontalalignment=spot[2], verticalalignment=spot[3])
            box = text_box(probe, renderer).padded(2)
            return sum(_overlap(box, other) for other in obstacles) + _outside(box, frame)

        spots = list(_spots())
        spot = next((c for c in spots if crowding(c) == 0), None) or min(spots, key=crowding)
        probe.remove()
        far = abs(spot[0]) > 9 or abs(spot[1]) > 5
        ann = ax.annotate(
            text, point, xytext=spot[:2], textcoords="offset points", ha=spot[2], va=spot[3],
            fontsize=8, zorder=4, arrowprops={"arrowstyle": "-", "color": "0.5", "lw": 0.6} if far else None,
        )  # fmt: skip
        placed.append(text_box(ann, renderer).padded(2))
        annotations.append(ann)
    return annotations


def _box(x0: float, y0: float, x1: float, y1: float) -> Any:
    from matplotlib.transforms import Bbox

    return Bbox([[x0, y0], [x1, y1]])


def _overlap(a: Any, b: Any) -> float:
    w = min(a.x1, b.x1) - max(a.x0, b.x0)
    h = min(a.y1, b.y1) - max(a.y0, b.y0)
    return w * h if w > 0 and h > 0 else 0.0


def _outside(box: Any, frame: Any) -> float:
    """Area of `box` beyond the axes' frame."""
    return box.width * box.height - _overlap(box, frame)
