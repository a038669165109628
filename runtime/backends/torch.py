"""PyTorch backend: runs an edgeseg checkpoint (.pt) eagerly, the reference the exported artifacts are
compared against.

torch is imported when a TorchBackend is created, never when this module is imported, so the robot-side
runtime stays torch-free unless someone actually opens a checkpoint.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from edgeseg.card import ModelCard
from edgeseg.errors import EdgesegError
from edgeseg.lazy import require
from edgeseg.runtime.backends.base import Backend, BackendOptions, given_options


def resolve_device(device: str | None) -> str:
    """'auto' (CUDA when present), 'cpu', 'cuda' or 'cuda:N' -> a torch device string."""
    torch = require("torch")
    if device in (None, "auto"):
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise EdgesegError(f"device {device!r} requested but CUDA is not available here; use --device cpu")
    if device != "cpu" and not device.startswith("cuda"):
        raise EdgesegError(f"unknown device {device!r} (cpu, cuda, cuda:N, auto)")
    return device


def _use_threads(threads: int | None) -> None:
    """torch (one clear line when it is not installed) with `threads` intra-op threads, if given."""
    torch = require("torch")
    if threads:
        torch.set_num_threads(int(threads))


class TorchBackend(Backend):
    """Eager PyTorch inference on a checkpoint (or on an in-memory model, see `from_model`)."""

    name = "torch"
    OPTIONS = ("device", "threads", "card")

    def __init__(self, path: str | Path, options: BackendOptions | None = None) -> None:
        from edgeseg.checkpoint import model_from_checkpoint

        self.options = options = given_options(options)
        _use_threads(options.threads)
        self.path = Path(path)
        model, ckpt_card = model_from_checkpoint(self.path)
        self._setup(model, options.card or ckpt_card, options.device)

    @classmethod
    def from_model(cls, model: Any, options: BackendOptions) -> TorchBackend:
        """Wrap a live model (e.g. during training validation) so it runs through the same Segmenter
        path. Its options are read as a checkpoint's, but `options.card` is required (a live module
        carries none) and `device=None` leaves the module on the device it is on (the trainer's GPU)."""
        options = given_options(options)
        if options.card is None:
            raise EdgesegError("an in-memory PyTorch model needs its card: BackendOptions(card=...)")
        self = cls.__new__(cls)
        self.options = options
        _use_threads(options.threads)
        self.path = Path(f"<in-memory {options.card.model}>")
        self._setup(model, options.card, options.device)
        return self

    def spawn(self) -> Backend:
        if not self.path.is_file():
            raise EdgesegError(
                "an in-memory PyTorch model serves one inference worker; save a checkpoint for more"
            )
        return super().spawn()

    def _setup(self, model: Any, card: ModelCard, device: str | None) -> None:
        """`device` None: the model stays where it is."""
        torch = require("torch")
        self._torch = torch
        if device is None:  # keep the model where it is
            try:
                self.device = next(model.parameters()).device
            except StopIteration:
                self.device = torch.device("cpu")
        else:
            self.device = torch.device(resolve_device(device))
            model = model.to(self.device)
        self.model = model
        self.card = card

    def run_impl(self, batch: np.ndarray) -> np.ndarray:
        torch = self._torch
        was_training = self.model.training
        self.model.eval()
        try:
            with torch.inference_mode():
                x = torch.from_numpy(np.ascontiguousarray(batch, dtype=np.float32)).to(self.device)
                out = self.model(x)
        finally:
            if was_training:
                self.model.train()
        if isinstance(out, dict):  # torchvision-style heads return {"out": ...}
            out = out["out"]
        if self.card.output == "labels" and out.ndim == 4:
            out = out.argmax(dim=1)
        return out.float().cpu().numpy() if out.is_floating_point() else out.cpu().numpy()

    def close(self) -> None:
        self.model = None

    @property
    def batch_limits(self) -> tuple[int, int | None]:
        return (1, None)  # an eager module takes any batch

    @property
    def computes_on_cpu(self) -> bool:
        return str(self.device) == "cpu"

    def describe(self) -> dict:
        return {**super().describe(), "device": str(self.device)}
