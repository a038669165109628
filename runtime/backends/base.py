"""The interface every inference backend implements (Polygraphy-style runners: one shape, many engines)."""

from __future__ import annotations

import abc
from pathlib import Path

import numpy as np

from edgeseg.card import ModelCard


class Backend(abc.ABC):
    """Runs a preprocessed NCHW float32 batch and returns the raw network output.

    Output is logits (N x C x H x W, float) or labels (N x H x W, integer) according to
    `card.output`; turning it into class maps is the Segmenter's job.
    """

    name: str = "backend"
    path: Path
    card: ModelCard

    @abc.abstractmethod
    def run(self, batch: np.ndarray) -> np.ndarray:
        """Infer one NCHW float32 batch (contiguous)."""

    @property
    def computes_on_cpu(self) -> bool:
        """True when inference itself keeps the CPU cores busy (the pipeline then keeps OpenCV to one
        thread, so decoding and drawing do not fight the backend's threads for the same cores)."""
        return True

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release device memory, sessions, streams."""

    def describe(self) -> dict:
        """What ran: backend, device/provider, precision; recorded in reports and benchmarks."""
        return {"backend": self.name, "artifact": str(self.path), "precision": self.card.precision}

    def __enter__(self) -> Backend:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
