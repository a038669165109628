"""Parity between the PyTorch net and its ONNX export, measured the way the runtime will see it.

Inputs are generated scenes (never zeros: a zero image hides broken normalisation, resize and
padding paths) pushed through `edgeseg.preprocess.Preprocessor`, the exact code the runtime uses.
The verdict is argmax agreement, because the class map is what users consume; max |diff| of the
logits is reported as evidence.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from edgeseg.card import ModelCard
from edgeseg.errors import EdgesegError
from edgeseg.lazy import require
from edgeseg.preprocess import Geometry, Preprocessor

PARITY_THRESHOLD = 0.999


@dataclass
class ParityResult:
    scenes: int
    pixels: int
    agreement: float  # fraction of pixels whose class equals PyTorch's argmax
    min_scene_agreement: float
    max_abs_diff: float | None  # logits only; None when the graph outputs labels
    mean_abs_diff: float | None
    threshold: float
    output_dtype: str

    @property
    def passed(self) -> bool:
        return self.agreement >= self.threshold

    def max_abs_diff_text(self) -> str:
        return "n/a (labels output)" if self.max_abs_diff is None else f"{self.max_abs_diff:.3g}"

    def to_dict(self) -> dict[str, Any]:
        return {
            "scenes": self.scenes,
            "pixels": self.pixels,
            "agreement": self.agreement,
            "min_scene_agreement": self.min_scene_agreement,
            "max_abs_diff": self.max_abs_diff,
            "mean_abs_diff": self.mean_abs_diff,
            "threshold": self.threshold,
            "output_dtype": self.output_dtype,
            "passed": self.passed,
        }


def scene_frames(card: ModelCard, num_scenes: int = 3, seed: int = 1234) -> Iterator[np.ndarray]:
    """BGR uint8 frames from the scene generator at the card's input size.

    A dynamic export also gets frames at a second, non-stride-aligned size so the padded path and
    the symbolic H/W both run.
    """
    import cv2

    from edgeseg.data.synth import SceneGenerator

    h, w = card.input_size
    sizes = [(h, w)]
    if card.dynamic:
        sizes.append((max(8, (h * 3) // 4 + 5), max(8, (w * 3) // 4 + 3)))
    gens = [SceneGenerator(sh, sw, seed=seed) for sh, sw in sizes]
    for i in range(num_scenes):
        rgb, _mask = gens[i % len(gens)].scene(i)
        yield cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR)


def _parity_preprocess(card: ModelCard) -> Callable[[np.ndarray], tuple[np.ndarray, Geometry]]:
    """The runtime's preprocessing; a net with dynamic height and width runs a frame of its stated
    inference size at that size and any other frame at its own size (`scene_frames`' second size, not
    a multiple of the stride), so its symbolic H and W run as well as the size the runtime uses."""
    stated = Preprocessor(card)
    if not card.dynamic:
        return stated
    native = Preprocessor(card.replace(native_size=True))
    return lambda frame: (stated if frame.shape[:2] == card.input_size else native)(frame)


def _tally(
    outputs: Iterable[tuple[np.ndarray, np.ndarray]], card: ModelCard, threshold: float, what: str
) -> ParityResult:
    """Argmax agreement (and logit differences when both sides are logits) over (reference, candidate)
    raw outputs; a side may be logits (N x C x H x W) or labels (N x H x W)."""
    agree = total = 0
    per_scene: list[float] = []
    max_diff, diff_sum, diff_count = 0.0, 0.0, 0
    dtype = "?"
    for ref, got in outputs:
        dtype = str(got.dtype)
        ref_labels = ref.argmax(axis=1) if ref.ndim == 4 else ref.astype(np.int64)
        got_labels = got.argmax(axis=1) if got.ndim == 4 else got.astype(np.int64)
        if got_labels.shape != ref_labels.shape or (ref.ndim == got.ndim == 4 and ref.shape != got.shape):
            raise EdgesegError(f"{what}: output shape {list(got.shape)} != reference {list(ref.shape)}")
        if ref.ndim == got.ndim == 4:
            diff = np.abs(got.astype(np.float32) - ref.astype(np.float32))
            max_diff = max(max_diff, float(diff.max()))
            diff_sum += float(diff.sum(dtype=np.float64))
            diff_count += diff.size
        same = int((got_labels == ref_labels).sum())
        agree += same
        total += ref_labels.size
        per_scene.append(same / ref_labels.size)
    if not total:
        raise EdgesegError(f"{what} got no frames to compare")
    logits = card.output != "labels"
    return ParityResult(
        scenes=len(per_scene),
        pixels=total,
        agreement=agree / total,
        min_scene_agreement=min(per_scene),
        max_abs_diff=max_diff if logits else None,
        mean_abs_diff=(diff_sum / diff_count) if logits and diff_count else None,
        threshold=threshold,
        output_dtype=dtype,
    )


def parity_check(
    net: Any,
    onnx_path: str | Path,
    card: ModelCard,
    *,
    frames: Iterable[np.ndarray] | None = None,
    num_scenes: int = 3,
    threshold: float = PARITY_THRESHOLD,
    threads: int | None = 2,
) -> ParityResult:
    """Compare `net` (torch, eval mode) with the ONNX at `onnx_path` on preprocessed frames."""
    torch = require("torch")
    from edgeseg.models.outputs import logits_of
    from edgeseg.runtime.backends import BackendOptions
    from edgeseg.runtime.backends.onnxruntime import OnnxRuntimeBackend

    backend = OnnxRuntimeBackend(
        onnx_path, BackendOptions(providers="cpu", threads=threads or None, card=card)
    )
    pre = _parity_preprocess(card)
    frames = scene_frames(card, num_scenes) if frames is None else frames

    def outputs() -> Iterator[tuple[np.ndarray, np.ndarray]]:
        for frame in frames:
            batch, _geom = pre(frame)
            with torch.no_grad():
                ref = logits_of(net, torch.from_numpy(batch)).float().numpy()
            yield ref, backend.run(batch)

    try:
        return _tally(outputs(), card, threshold, "parity check")
    finally:
        backend.close()


def compare_onnx(
    reference: str | Path,
    candidate: str | Path,
    card: ModelCard,
    *,
    frames: Iterable[np.ndarray] | None = None,
    num_scenes: int = 3,
    threshold: float,
    threads: int | None = 2,
) -> ParityResult:
    """Argmax agreement of two ONNX files of the same net (e.g. FP32 vs FP16) on preprocessed frames."""
    from edgeseg.runtime.backends import BackendOptions
    from edgeseg.runtime.backends.onnxruntime import OnnxRuntimeBackend

    options = BackendOptions(providers="cpu", threads=threads or None, card=card)
    ref = OnnxRuntimeBackend(reference, options)
    cand = OnnxRuntimeBackend(candidate, options)
    pre = _parity_preprocess(card)
    frames = scene_frames(card, num_scenes) if frames is None else frames

    def outputs() -> Iterator[tuple[np.ndarray, np.ndarray]]:
        for frame in frames:
            batch, _geom = pre(frame)
            yield ref.run(batch), cand.run(batch)

    try:
        return _tally(outputs(), card, threshold, "comparison")
    finally:
        ref.close()
        cand.close()
