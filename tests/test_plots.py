"""The plots people read: labels that never overlap (measured with the renderer's own text extents),
an mIoU axis that does not turn noise into a difference, fractions 0..1 as in the tables, and a
labelled mIoU line. Every figure is also written as a PNG from realistic numbers."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

pytest.importorskip("matplotlib")

from edgeseg import plots  # noqa: E402
from edgeseg.card import default_palette  # noqa: E402
from edgeseg.metrics import SegMetrics, metrics_from_confusion  # noqa: E402

# the README's demo table (edgeseg demo --quick): FP32 and FP16 share a point, mIoU within 0.001
DEMO = [
    ("ONNX Runtime FP32", 25.2, 0.898),
    ("ONNX Runtime FP16", 25.0, 0.898),
    ("ONNX Runtime INT8 (CPU form)", 48.6, 0.897),
    ("INT8 Q/DQ (TensorRT form)", 20.8, 0.897),
]
# a bench with an eager row and an INT8 that lost accuracy: a wide spread
BENCH = [
    ("eager (PyTorch)", 3.1, 0.629),
    ("fcn8s.onnx", 21.9, 0.629),
    ("fcn8s.fp16.onnx", 21.4, 0.628),
    ("fcn8s.int8.cpu.onnx", 44.0, 0.301),
    ("fcn8s.int8.qdq.onnx", 18.7, 0.612),
    ("fcn8s.engine", None, None),  # not measurable here: skipped, not plotted at 0
]
# six artifacts crowded on one spot
CROWD = [(f"artifact {i}", 30.0 + 0.1 * i, 0.75) for i in range(6)]
STREET = ["sky", "building", "vegetation", "road", "sidewalk", "lane_marking", "vehicle", "pedestrian"]


def label_boxes(fig):
    from edgeseg.plots import text_box

    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    ax = fig.axes[0]
    labels = [t for t in ax.texts if "FPS, mIoU" in t.get_text()]
    return ax, renderer, labels, [text_box(t, renderer) for t in labels]


def overlaps(a, b) -> bool:
    return min(a.x1, b.x1) > max(a.x0, b.x0) and min(a.y1, b.y1) > max(a.y0, b.y0)


@pytest.mark.parametrize("points", [DEMO, BENCH, CROWD], ids=["demo", "bench", "crowd"])
def test_fps_vs_miou_labels_never_overlap(points, tmp_path):
    fig = plots.fps_vs_miou_figure(points)
    ax, renderer, labels, boxes = label_boxes(fig)
    kept = [p for p in points if p[1] is not None]
    assert len(labels) == len(kept)
    for (i, a), (j, b) in itertools.combinations(enumerate(boxes), 2):
        assert not overlaps(a, b), f"{labels[i].get_text()!r} overlaps {labels[j].get_text()!r}"
    frame = ax.get_window_extent(renderer)
    markers = ax.transData.transform([(f, m) for _, f, m in kept])
    for i, box in enumerate(boxes):
        assert frame.x0 <= box.x0 and box.x1 <= frame.x1 and frame.y0 <= box.y0 and box.y1 <= frame.y1
        for j, (x, y) in enumerate(markers):
            if j != i:
                assert not box.contains(x, y), f"{labels[i].get_text()!r} covers point {j}"
    plots._pyplot().close(fig)


def test_fps_vs_miou_axis_keeps_noise_small_and_states_the_spread():
    fig = plots.fps_vs_miou_figure(DEMO)
    ax = fig.axes[0]
    lo, hi = ax.get_ylim()
    assert hi - lo >= plots.MIN_MIOU_SPAN  # 0.001 apart must not fill the plot
    assert lo <= 0.897 and hi >= 0.898 and lo >= 0 and hi <= 1  # fractions, like the tables
    assert ax.get_xlim()[0] == 0  # FPS from zero: distances show ratios
    assert "%" not in ax.get_ylabel() and ax.get_ylabel() == "mIoU (0-1)"
    notes = [t.get_text() for t in ax.texts if "spread" in t.get_text()]
    assert notes == [
        "mIoU spread across 4 artifact(s): 0.0010 (0.8970 to 0.8980); the axis spans at least 0.10"
    ]
    assert "ONNX Runtime FP16\n25.0 FPS, mIoU 0.898" in [t.get_text() for t in ax.texts]
    plots._pyplot().close(fig)


def test_a_wide_spread_gets_its_own_range():
    fig = plots.fps_vs_miou_figure(BENCH)
    lo, hi = fig.axes[0].get_ylim()
    assert lo <= 0.301 and hi >= 0.629 and hi - lo < 0.5
    note = "mIoU spread across 5 artifact(s): 0.328 (0.301 to 0.629)"
    assert any(t.get_text().startswith(note) for t in fig.axes[0].texts)
    plots._pyplot().close(fig)


@pytest.mark.parametrize(
    "values, expected",
    [([0.897, 0.898], (0.8375, 0.9575)), ([0.99, 1.0], (0.88, 1.0)), ([0.0, 0.02], (0.0, 0.12))],
)
def test_miou_axis_range_has_a_minimum_span_inside_0_1(values, expected):
    assert plots.miou_axis_range(values) == pytest.approx(expected)


def realistic_metrics() -> SegMetrics:
    """Per-class IoU of the shipped model on the synthetic stream (docs/runtime.md)."""
    iou = [0.98, 0.97, 0.95, 0.99, 0.96, 0.72, 0.85, 0.72]
    return SegMetrics(
        miou=float(np.mean(iou)), pixel_accuracy=0.981, mean_class_accuracy=0.95, iou=iou, class_accuracy=iou
    )


def test_iou_bars_label_the_miou_line_and_use_fractions():
    m = realistic_metrics()
    fig = plots.iou_bars_figure(m, STREET, default_palette(8), title="ONNX Runtime FP32")
    ax = fig.axes[0]
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["mIoU 0.892"]
    line = [ln for ln in ax.get_lines() if ln.get_linestyle() == "--"]
    assert len(line) == 1 and line[0].get_xdata()[0] == pytest.approx(m.miou)
    assert max(ax.get_xticks()) == 1.0 and ax.get_xlabel() == "IoU (0-1)"
    values = [t for t in ax.texts if t.get_text()[:2] == "0."]
    assert [t.get_text() for t in values] == [f"{v:.3f}" for v in m.iou]
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    frame = ax.get_window_extent(renderer)
    for t in values:  # every value is drawn inside the plot, beside its bar
        box = t.get_window_extent(renderer)
        assert frame.x0 <= box.x0 and box.x1 <= frame.x1
    plots._pyplot().close(fig)


def test_iou_bars_mark_absent_classes():
    iou = [0.98, float("nan"), 0.15, 0.99, 0.06, 0.0, 0.85, 0.72]
    m = SegMetrics(
        miou=float(np.nanmean(iou)), pixel_accuracy=0.9, mean_class_accuracy=0.9, iou=iou, class_accuracy=iou
    )
    fig = plots.iou_bars_figure(m, STREET, default_palette(8))
    texts = [t.get_text() for t in fig.axes[0].texts]
    assert texts[1] == "absent" and texts[5] == "0.000"
    plots._pyplot().close(fig)


def test_every_plot_writes_a_png(tmp_path):
    """The files the demo, `bench --plot` and `eval --plots` write, from realistic numbers."""
    rng = np.random.default_rng(0)
    confusion = np.diag(rng.integers(5_000, 50_000, 8)) + rng.integers(0, 800, (8, 8))
    written = [
        plots.fps_vs_miou(DEMO, tmp_path / "fps_vs_miou.png"),
        plots.fps_vs_miou(BENCH, tmp_path / "bench.png"),
        plots.iou_bars(realistic_metrics(), STREET, tmp_path / "iou_fp32.png", default_palette(8), "FP32"),
        plots.iou_bars(metrics_from_confusion(confusion), STREET, tmp_path / "per_class_iou.png"),
        plots.confusion_matrix(confusion, STREET, tmp_path / "confusion_matrix.png"),
    ]
    for path in written:
        assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert not list(tmp_path.glob(".*"))  # no partial files left
