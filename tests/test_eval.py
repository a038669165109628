"""Evaluation through the Segmenter path: hand-checked metrics, class-set checks, plots, artifact lookup."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from edgeseg.card import ModelCard, default_palette
from edgeseg.errors import EdgesegError
from edgeseg.evaluate import confusion, evaluate
from edgeseg.runtime.backends import Backend
from edgeseg.runtime.segmenter import Segmenter
from edgeseg.workspace import find_artifact


class ListData:
    """The `edgeseg.data` dataset contract over in-memory arrays."""

    def __init__(self, items, classes):
        self.items = items
        self.classes = classes
        self.palette = default_palette(len(classes))

    def __len__(self):
        return len(self.items)

    def __getitem__(self, i):
        return self.items[i]


class ColourBackend(Backend):
    """A 'net' whose logits are the input's R, G, B channels: pixel class = its brightest channel."""

    name = "colour"

    def __init__(self, size=(8, 8)):
        self.path = "colour"
        self.card = ModelCard(
            model="colour", classes=["r", "g", "b"], palette=default_palette(3), input_size=size
        )
        self.card.mean, self.card.std = (0.0, 0.0, 0.0), (1.0, 1.0, 1.0)

    def run_impl(self, batch):
        return batch.astype(np.float32)


def _rgb_for(labels):
    rgb = np.zeros((*labels.shape, 3), np.uint8)
    for c in range(3):
        rgb[..., c][labels == c] = 200
    return rgb


def test_metrics_match_hand_computed_confusion():
    # truth: left half class 0, right half class 1; the net predicts class 0 on column 4 (a 1-column error)
    truth = np.zeros((8, 8), np.uint8)
    truth[:, 4:] = 1
    pred = truth.copy()
    pred[:, 4] = 0
    truth_ignored = truth.copy()
    truth_ignored[0, :] = 255  # an ignored row must not count
    data = ListData([(_rgb_for(pred), truth_ignored)], ["r", "g", "b"])
    cm = confusion(Segmenter(ColourBackend()), data, progress=False)
    # 7 valid rows x 8 columns: class0 tp=28, class1 tp=21, 7 pixels of class 1 predicted 0
    np.testing.assert_array_equal(cm.matrix, [[28, 0, 0], [7, 21, 0], [0, 0, 0]])
    m = cm.compute()
    assert m.iou[0] == pytest.approx(28 / 35) and m.iou[1] == pytest.approx(21 / 28)
    assert np.isnan(m.iou[2]) and m.absent == [2]
    assert m.miou == pytest.approx((28 / 35 + 21 / 28) / 2)
    assert m.pixel_accuracy == pytest.approx(49 / 56)
    assert m.mean_class_accuracy == pytest.approx((1.0 + 0.75) / 2)


def test_predictions_are_scored_at_the_image_size():
    # image 16x24 evaluated by an 8x8 net: labels are mapped back to 16x24 before scoring
    truth = np.zeros((16, 24), np.uint8)
    truth[:, 12:] = 2
    data = ListData([(_rgb_for(truth), truth)], ["r", "g", "b"])
    m = evaluate(Segmenter(ColourBackend()), data, progress=False)
    assert m.pixels == 16 * 24
    assert m.miou == pytest.approx(1.0)


def test_class_mismatch_is_one_line_error():
    data = ListData([(np.zeros((8, 8, 3), np.uint8), np.zeros((8, 8), np.uint8))], ["a", "b"])
    with pytest.raises(EdgesegError, match="predicts 3 classes .* dataset has 2"):
        evaluate(Segmenter(ColourBackend()), data, progress=False)


def test_onnx_artifact_goes_through_the_same_path(tiny_onnx):
    path = tiny_onnx(num_classes=3, size=(16, 16))
    rng = np.random.default_rng(1)
    items = [
        (rng.integers(0, 255, (20, 30, 3), dtype=np.uint8), rng.integers(0, 3, (20, 30), dtype=np.uint8))
    ]
    data = ListData(items, ["c0", "c1", "c2"])
    seg = Segmenter(path)
    expected = np.zeros((3, 3), np.int64)
    for rgb, mask in items:
        pred = seg.infer(rgb[:, :, ::-1].copy())
        np.add.at(expected, (mask.ravel(), pred.ravel()), 1)
    np.testing.assert_array_equal(confusion(path, data, progress=False).matrix, expected)


def test_plots_are_written(tmp_path):
    pytest.importorskip("matplotlib")
    from edgeseg import plots
    from edgeseg.metrics import metrics_from_confusion

    matrix = np.array([[50, 5, 0], [10, 30, 0], [0, 0, 0]])
    m = metrics_from_confusion(matrix)
    a = plots.iou_bars(m, ["a", "b", "c"], tmp_path / "p" / "iou.png", default_palette(3))
    b = plots.confusion_matrix(matrix, ["a", "b", "c"], tmp_path / "p" / "cm.png")
    for p in (a, b):
        assert p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_find_artifact_for_eval_prefers_the_training_run(tmp_path):
    wd = tmp_path / "wd"
    run = wd / "train" / "netx" / "20250101-000000"
    run.mkdir(parents=True)
    (run / "last.pt").write_bytes(b"x")
    (run / "best.pt").write_bytes(b"x")
    (wd / "netx").mkdir()
    (wd / "netx" / "netx.onnx").write_bytes(b"x")
    assert find_artifact("netx", wd, checkpoint_first=True) == run / "best.pt"
    assert find_artifact("netx", wd) == wd / "netx" / "netx.onnx"  # run: the export first
    (wd / "onlyexp").mkdir()
    (wd / "onlyexp" / "onlyexp.onnx").write_bytes(b"x")
    assert find_artifact("onlyexp", wd, checkpoint_first=True) == wd / "onlyexp" / "onlyexp.onnx"
    with pytest.raises(EdgesegError, match="no file 'nothing'"):
        find_artifact("nothing", wd)
    with pytest.raises(EdgesegError, match="artifact not found"):
        find_artifact(str(tmp_path / "missing.onnx"), wd)


def test_no_model_means_the_newest_export_else_the_shipped_one(tmp_path):
    from edgeseg.defaults import default_model_path

    wd = tmp_path / "wd"
    assert find_artifact(None, wd) == default_model_path("onnx")
    for name in ("older", "newer"):
        (wd / name).mkdir(parents=True)
        (wd / name / f"{name}.onnx").write_bytes(b"x")
    import os

    os.utime(wd / "older" / "older.onnx", (1, 1))
    assert find_artifact(None, wd) == wd / "newer" / "newer.onnx"
    assert find_artifact("default", wd) == default_model_path("onnx")


def test_torch_backend_module_imports_no_torch():
    code = (
        "import sys, edgeseg.runtime.backends.torch, edgeseg.evaluate, edgeseg.plots, edgeseg.defaults\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('torch', 'matplotlib')))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
