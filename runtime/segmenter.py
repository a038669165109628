"""`Segmenter`: the object robotics code embeds. Load an artifact, feed frames, get class maps.

    seg = Segmenter("edgeseg-work/fcn8s/fcn8s.onnx")   # or Segmenter(path, BackendOptions(threads=2))
    labels = seg.infer(frame_bgr)            # H x W uint8 class ids at the frame's own size
    overlay = seg.colorize(labels)           # or seg.overlay(frame_bgr, labels)

Preprocessing, classes and palette come from the artifact's model card.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from edgeseg.card import ModelCard
from edgeseg.errors import EdgesegError
from edgeseg.preprocess import Geometry, Preprocessor, labels_to_frame, runs_native
from edgeseg.runtime.backends import Backend, BackendLoader, BackendOptions, load_backend
from edgeseg.runtime.draw import fast_argmax


class Segmenter:
    """`artifact`: a file path (opened with `options`, a BackendOptions: which runtime, threads, device,
    ...), a BackendLoader, or an open Backend (both carry their own options)."""

    def __init__(
        self, artifact: str | Path | Backend | BackendLoader, options: BackendOptions | None = None
    ) -> None:
        if isinstance(artifact, Backend):
            if options is not None:
                raise EdgesegError("backend options go to the backend itself when passing a Backend object")
            self.backend = artifact
        elif isinstance(artifact, BackendLoader):
            if options is not None:
                raise EdgesegError("backend options go into the BackendLoader when passing one")
            self.backend = artifact()
        else:
            self.backend = load_backend(artifact, options)
        self.card: ModelCard = self.backend.card
        self.preprocess = Preprocessor(self.card)
        if self.card.dynamic and not runs_native(self.card):
            # the size frames will run at (stated, or a run's --input-size): refused now, in one line,
            # when the model cannot take it (a TensorRT profile's range), not at the first frame
            self.backend.check_shape((self.backend.batch_limits[0], 3, *self.card.input_size))

    @property
    def classes(self) -> list[str]:
        return self.card.classes

    @property
    def palette(self) -> list[tuple[int, int, int]]:
        return self.card.palette

    def spawn_backend(self) -> Backend:
        """Another backend for the same model, for a second inference thread (a backend is driven by
        one thread at a time; see `Pipeline(workers=...)`)."""
        return self.backend.spawn()

    def net_labels(self, output: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        """Raw backend output (batch of one) -> (class map at net resolution, logits or None)."""
        if output.ndim not in (3, 4):
            raise EdgesegError(
                f"model output shape {list(output.shape)} is not a segmentation output (N x C x H x W "
                "logits or N x H x W labels): is it a classifier?"
            )
        if self.card.output == "labels":
            labels = output[0] if output.ndim == 3 else output.reshape(output.shape[-2:])
            return labels.astype(np.uint8 if self.card.num_classes <= 256 else np.uint16, copy=False), None
        if output.ndim != 4 or output.shape[1] != self.card.num_classes:
            raise EdgesegError(
                f"model output shape {list(output.shape)} does not match {self.card.num_classes} classes"
            )
        return fast_argmax(output), output[0]  # == argmax over classes, several times faster

    def infer(self, frame: np.ndarray, *, return_logits: bool = False) -> Any:
        """Class map (H x W, at the frame's size) for one BGR uint8 frame; with logits if asked."""
        batch, geom = self.preprocess(frame)
        labels, logits = self.net_labels(self.backend.run(batch))
        labels = self.to_frame(labels, geom)
        if return_logits:
            if logits is None:
                raise EdgesegError("this model outputs labels (exported with --output labels); no logits")
            return labels, logits
        return labels

    @staticmethod
    def to_frame(labels: np.ndarray, geom: Geometry) -> np.ndarray:
        return labels_to_frame(labels, geom)

    def colorize(self, labels: np.ndarray) -> np.ndarray:
        from edgeseg.visual import colorize

        return colorize(labels, self.palette)

    def overlay(self, frame: np.ndarray, labels: np.ndarray, alpha: float = 0.5) -> np.ndarray:
        from edgeseg.visual import overlay

        return overlay(frame, labels, self.palette, alpha=alpha)

    def close(self) -> None:
        self.backend.close()

    def __enter__(self) -> Segmenter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
