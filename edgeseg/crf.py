"""Fully connected CRF refinement (Krähenbühl & Koltun, NIPS 2011) of a net's class scores, as DeepLab uses it
(Chen et al. 2016, Sec. 3.3): offline and evaluation post-processing on the CPU, never part of an exported
graph (mean-field inference with a permutohedral lattice is no ONNX op and cannot run in a TensorRT engine).

The energy is the net's unary -log p(x_i) plus, for every pair of pixels, a Potts penalty weighted by two
Gaussian kernels: the bilateral one, w1 exp(-|p_i-p_j|^2 / 2 sa^2 - |I_i-I_j|^2 / 2 sb^2) (nearby pixels of
similar colour take the same label), and the smoothness one, w2 exp(-|p_i-p_j|^2 / 2 sg^2). Inference is
`pydensecrf2`'s wrapper of Krähenbühl's own code (`pip install 'edgeseg[crf]'`). Colour distance is the same
in RGB and BGR order, so OpenCV frames are passed as they are.

    from edgeseg.crf import CRFParams, refine_labels
    labels = refine_labels(image, logits)              # H x W x 3 uint8, C x H x W scores -> H x W labels
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields
from typing import Any

import cv2
import numpy as np

from edgeseg.errors import EdgesegError
from edgeseg.lazy import require

PURPOSE = "the dense CRF (--crf)"


@dataclass(frozen=True)
class CRFParams:
    """DeepLab's CRF settings. The paper fixes w2 = 3, sg = 3 and 10 mean-field iterations and
    cross-validates w1, sa, sb; 4 / 49 / 5 are the values of DeepLab's released `run_densecrf.sh`.
    Widths are in pixels of the image the CRF runs on and in 0..255 intensity levels."""

    iterations: int = 10
    bilateral_weight: float = 4.0  # w1
    bilateral_xy: float = 49.0  # sigma_alpha
    bilateral_rgb: float = 5.0  # sigma_beta
    gaussian_weight: float = 3.0  # w2
    gaussian_xy: float = 3.0  # sigma_gamma

    def __post_init__(self) -> None:
        """Every field at once, in one line: pydensecrf would take a float or zero iteration count, or a
        NaN width, and return unrefined or meaningless marginals without a word."""
        problems = []
        for f in fields(self):
            value = getattr(self, f.name)
            if f.name == "iterations":
                if not _is_int(value) or value < 1:
                    problems.append(f"iterations must be an integer >= 1, not {value!r}")
            elif not (_is_real(value) and math.isfinite(value) and value > 0):
                problems.append(f"{f.name} must be a finite number > 0, not {value!r}")
        if problems:
            raise EdgesegError(f"CRF parameters: {'; '.join(problems)}")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _is_int(value: Any) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, bool)


def _is_real(value: Any) -> bool:
    return isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool)


def require_crf() -> Any:
    """The pydensecrf module, or one line naming the extra (exit 2)."""
    return require("pydensecrf.densecrf", purpose=PURPOSE)


def softmax(logits: np.ndarray) -> np.ndarray:
    """C x H x W logits -> probabilities over C (float32, numerically stable)."""
    z = logits.astype(np.float32, copy=True)
    z -= z.max(axis=0, keepdims=True)
    np.exp(z, out=z)
    z /= z.sum(axis=0, keepdims=True)
    return z


def refine(
    image: np.ndarray,
    scores: np.ndarray,
    params: CRFParams | None = None,
    *,
    probabilities: bool = False,
) -> np.ndarray:
    """CRF marginals (C x H x W float32) for `scores` (C x H x W logits, or probabilities if
    `probabilities`) on `image` (H x W x 3 uint8, the same H x W)."""
    dcrf = require_crf()
    params = params or CRFParams()
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise EdgesegError(f"the CRF needs an H x W x 3 uint8 image, got {image.dtype} {image.shape}")
    if scores.ndim != 3 or scores.shape[1:] != image.shape[:2]:
        raise EdgesegError(
            f"CRF scores {tuple(scores.shape)} do not match the image {image.shape[:2]} (want C x H x W)"
        )
    c, h, w = scores.shape
    prob = scores.astype(np.float32) if probabilities else softmax(scores)
    unary = -np.log(np.clip(prob, 1e-8, 1.0)).reshape(c, h * w)
    crf = dcrf.DenseCRF2D(w, h, c)
    crf.setUnaryEnergy(np.ascontiguousarray(unary, dtype=np.float32))
    crf.addPairwiseGaussian(sxy=params.gaussian_xy, compat=params.gaussian_weight)
    crf.addPairwiseBilateral(
        sxy=params.bilateral_xy,
        srgb=params.bilateral_rgb,
        rgbim=np.ascontiguousarray(image),
        compat=params.bilateral_weight,
    )
    return np.asarray(crf.inference(params.iterations), dtype=np.float32).reshape(c, h, w)


def refine_labels(
    image: np.ndarray, scores: np.ndarray, params: CRFParams | None = None, *, probabilities: bool = False
) -> np.ndarray:
    """H x W class map (uint8, uint16 beyond 256 classes) after CRF refinement; see `refine`."""
    q = refine(image, scores, params, probabilities=probabilities)
    return q.argmax(axis=0).astype(np.uint8 if q.shape[0] <= 256 else np.uint16)


def scores_to_frame(logits: np.ndarray, geom: Any) -> np.ndarray:
    """Net-resolution C x H x W logits -> the frame's size through the preprocessing geometry (the
    letterbox/pad border cropped, bilinear resize: DeepLab interpolates scores before its CRF)."""
    top, left = geom.offset
    ch, cw = geom.content_hw
    crop = logits[:, top : top + ch, left : left + cw].astype(np.float32, copy=False)
    fh, fw = geom.frame_hw
    if (ch, cw) == (fh, fw):
        return np.ascontiguousarray(crop)
    return np.stack([cv2.resize(plane, (fw, fh), interpolation=cv2.INTER_LINEAR) for plane in crop])


def segment(segmenter: Any, frame: np.ndarray, params: CRFParams | None = None) -> np.ndarray:
    """A Segmenter's class map for one BGR uint8 frame, refined by the CRF at the frame's own size."""
    if segmenter.card.output != "logits":
        raise EdgesegError(
            "the CRF needs class scores, but this model outputs labels (exported with --output labels)"
        )
    batch, geom = segmenter.preprocess(frame)
    _, logits = segmenter.net_labels(segmenter.backend.run(batch))
    image = cv2.cvtColor(frame, cv2.COLOR_GRAY2BGR) if frame.ndim == 2 else frame[:, :, :3]
    return refine_labels(image, scores_to_frame(logits, geom), params)
