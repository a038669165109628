"""Evaluation: one code path (Segmenter -> backend) for checkpoints, ONNX models and TensorRT engines, so
mIoU numbers are comparable across the whole train -> export -> build chain.

Every prediction is made at the dataset image's own size (the Segmenter maps the class map back through
the preprocessing geometry) and accumulated into one confusion matrix.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from edgeseg.errors import EdgesegError
from edgeseg.metrics import ConfusionMatrix, SegMetrics
from edgeseg.progress import Progress

if TYPE_CHECKING:
    from edgeseg.runtime.backends import BackendOptions


def open_segmenter(artifact: Any, options: BackendOptions | None = None):
    """A Segmenter for a path (opened with `options`) / Backend, or the Segmenter itself."""
    from edgeseg.runtime.segmenter import Segmenter

    if isinstance(artifact, Segmenter):
        if options is not None:
            raise EdgesegError("backend options go to the Segmenter itself when passing one")
        return artifact
    return Segmenter(artifact, options)


def class_mismatch(model_classes: Sequence[str], data_classes: Sequence[str]) -> str | None:
    """Why a dataset's labels cannot score the model (another class count), or None when they can."""
    if len(model_classes) == len(data_classes):
        return None
    return (
        f"the model predicts {len(model_classes)} classes ({', '.join(model_classes[:6])}"
        f"{', ...' if len(model_classes) > 6 else ''}) but the dataset has {len(data_classes)}"
    )


def check_classes(model_classes: Sequence[str], data_classes: Sequence[str]) -> None:
    """Refuse a dataset whose label space differs from the model's: the mIoU would be meaningless."""
    problem = class_mismatch(model_classes, data_classes)
    if problem is not None:
        raise EdgesegError(f"{problem}; evaluate on data with the model's label set")
    if list(model_classes) != list(data_classes):
        from edgeseg.console import warn

        warn("class names differ between model and dataset; comparing by class index")


def confusion(
    artifact: Any,
    dataset: Any,
    *,
    indices: Iterable[int] | None = None,
    progress: Progress | None = None,
    description: str = "evaluating",
    crf: Any = None,
    options: BackendOptions | None = None,
) -> ConfusionMatrix:
    """Accumulate the confusion matrix of `artifact` (path, Backend or Segmenter; a path is opened
    with `options`) over `dataset`; with `crf` (an `edgeseg.crf.CRFParams`) every prediction is
    refined by the dense CRF first."""
    if crf is not None:
        from edgeseg import crf as dense_crf

        dense_crf.require_crf()  # before the model loads and the first image runs
    seg = open_segmenter(artifact, options)
    check_classes(seg.classes, list(getattr(dataset, "classes", seg.classes)))
    cm = ConfusionMatrix(seg.card.num_classes)
    order = list(range(len(dataset))) if indices is None else list(indices)
    if not order and indices is None:
        raise EdgesegError("the evaluation dataset is empty")
    for k, i in enumerate(order):
        rgb, mask = dataset[i]
        if rgb.shape[:2] != mask.shape[:2]:
            raise EdgesegError(f"image {i} is {rgb.shape[:2]} but its mask is {mask.shape[:2]}")
        frame = np.ascontiguousarray(rgb[:, :, ::-1])  # dataset gives RGB, frames are BGR
        labels = seg.infer(frame) if crf is None else dense_crf.segment(seg, frame, crf)
        cm.update(labels, mask)
        if progress:
            progress(description, k + 1, len(order))
    return cm


def evaluate(
    artifact: Any,
    dataset: Any,
    *,
    progress: Progress | None = None,
    limit: int | None = None,
    crf: Any = None,
    options: BackendOptions | None = None,
) -> SegMetrics:
    """mIoU, pixel accuracy, mean class accuracy and per-class IoU of `artifact` on `dataset` (refined by
    the dense CRF with `crf`, an `edgeseg.crf.CRFParams`)."""
    indices = range(min(limit, len(dataset))) if limit else None
    cm = confusion(artifact, dataset, indices=indices, progress=progress, crf=crf, options=options)
    return cm.compute()


def summary_rows(metrics: SegMetrics, classes: Sequence[str]) -> list[list[Any]]:
    """Per-class rows (name, IoU, accuracy) for tables; absent classes show as n/a."""
    return [
        [name, metrics.iou[i], metrics.class_accuracy[i]]
        for i, name in enumerate(classes[: len(metrics.iou)])
    ]
