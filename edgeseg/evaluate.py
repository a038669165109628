"""Evaluation: one code path (Segmenter -> backend) for checkpoints, ONNX models and TensorRT engines, so
mIoU numbers are comparable across the whole train -> export -> build chain.

Every prediction is made at the dataset image's own size (the Segmenter maps the class map back through
the preprocessing geometry) and accumulated into one confusion matrix.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from edgeseg.errors import EdgesegError
from edgeseg.metrics import ConfusionMatrix, SegMetrics


def resolve_artifact(spec: str | Path | None, workdir: str | Path | None = None) -> Path:
    """A file path, a model name (-> its newest training checkpoint, else its export), or the shipped
    default model when `spec` is None or 'default'."""
    from edgeseg import workspace

    if spec is None or str(spec) == "default":
        from edgeseg.defaults import default_model_path

        return default_model_path("onnx")
    path = Path(spec)
    if path.exists():
        return path
    root = workspace.workdir(workdir)
    name = str(spec)
    if path.suffix.lower() in {".pt", ".pth", ".onnx", ".engine", ".plan", ".trt"} or "/" in name:
        raise EdgesegError(f"artifact not found: {path}")
    ckpt = workspace.newest_checkpoint(root, name)
    if ckpt is not None:
        return ckpt
    exported = workspace.export_path(root, name)
    if exported.is_file():
        return exported
    raise EdgesegError(
        f"no file {name!r} and no training run or export named {name!r} in {root}; "
        f"pass a .pt/.onnx/.engine path or run `edgeseg train {name} --data ...` first"
    )


def open_segmenter(artifact: Any, **backend_options: Any):
    """A Segmenter for a path / Backend, or the Segmenter itself (then options must be empty)."""
    from edgeseg.runtime.segmenter import Segmenter

    if isinstance(artifact, Segmenter):
        return artifact
    return Segmenter(artifact, **backend_options)


def check_classes(model_classes: Sequence[str], data_classes: Sequence[str]) -> None:
    """Refuse a dataset whose label space differs from the model's: the mIoU would be meaningless."""
    if len(model_classes) != len(data_classes):
        raise EdgesegError(
            f"the model predicts {len(model_classes)} classes ({', '.join(model_classes[:6])}"
            f"{', ...' if len(model_classes) > 6 else ''}) but the dataset has {len(data_classes)}; "
            "evaluate on data with the model's label set"
        )
    if list(model_classes) != list(data_classes):
        from edgeseg.console import warn

        warn("class names differ between model and dataset; comparing by class index")


def confusion(
    artifact: Any,
    dataset: Any,
    *,
    indices: Iterable[int] | None = None,
    progress: bool = True,
    description: str = "evaluating",
    **backend_options: Any,
) -> ConfusionMatrix:
    """Accumulate the confusion matrix of `artifact` (path, Backend or Segmenter) over `dataset`."""
    seg = open_segmenter(artifact, **backend_options)
    check_classes(seg.classes, list(getattr(dataset, "classes", seg.classes)))
    cm = ConfusionMatrix(seg.card.num_classes)
    order = list(range(len(dataset))) if indices is None else list(indices)
    if not order and indices is None:
        raise EdgesegError("the evaluation dataset is empty")
    for i in _track(order, progress, description):
        rgb, mask = dataset[i]
        if rgb.shape[:2] != mask.shape[:2]:
            raise EdgesegError(f"image {i} is {rgb.shape[:2]} but its mask is {mask.shape[:2]}")
        labels = seg.infer(np.ascontiguousarray(rgb[:, :, ::-1]))  # dataset gives RGB, frames are BGR
        cm.update(labels, mask)
    return cm


def evaluate(
    artifact: Any,
    dataset: Any,
    *,
    progress: bool = True,
    limit: int | None = None,
    **backend_options: Any,
) -> SegMetrics:
    """mIoU, pixel accuracy, mean class accuracy and per-class IoU of `artifact` on `dataset`."""
    indices = range(min(limit, len(dataset))) if limit else None
    return confusion(artifact, dataset, indices=indices, progress=progress, **backend_options).compute()


def _track(items: list[int], enabled: bool, description: str) -> Iterable[int]:
    if not enabled:
        return items
    from rich.progress import track

    from edgeseg.console import err_console

    return track(items, description=description, console=err_console, transient=True)


def summary_rows(metrics: SegMetrics, classes: Sequence[str]) -> list[list[Any]]:
    """Per-class rows (name, IoU, accuracy) for tables; absent classes show as n/a."""
    return [
        [name, metrics.iou[i], metrics.class_accuracy[i]]
        for i, name in enumerate(classes[: len(metrics.iou)])
    ]
