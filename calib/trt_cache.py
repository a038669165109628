"""Activation ranges as a TensorRT calibration cache (the text format `trtexec --calib` and ModelOpt read).

    TRT-8601-EntropyCalibration2
    <tensor name>: <scale as big-endian float32, hex>

The scale is TensorRT's symmetric INT8 scale, amax / 127. We write it from our cached statistics so
that ModelOpt's placement (`calibration_cache_path`) uses exactly the ranges both ONNX INT8 forms use.
TensorRT's own implicit calibrators compare the header with their version and algorithm, so this file
is not meant for them.
"""

from __future__ import annotations

import struct
from pathlib import Path

from edgeseg.atomic import write_bytes
from edgeseg.errors import EdgesegError

DEFAULT_HEADER = "TRT-8601-EntropyCalibration2"


def scale_of(low: float, high: float) -> float:
    return max(abs(float(low)), abs(float(high)), 1e-12) / 127.0


def write_trt_cache(
    ranges: dict[str, tuple[float, float]], path: str | Path, header: str = DEFAULT_HEADER
) -> Path:
    lines = [header]
    for name, (lo, hi) in sorted(ranges.items()):
        if ":" in name or "\n" in name:
            continue  # the format has no escaping; such tensors stay uncalibrated
        lines.append(f"{name}: {struct.pack('!f', scale_of(lo, hi)).hex()}")
    path = Path(path)
    write_bytes(path, ("\n".join(lines) + "\n").encode())
    return path


def read_trt_cache(path: str | Path) -> dict[str, float]:
    """{tensor: scale} from a TensorRT calibration cache."""
    scales: dict[str, float] = {}
    text = Path(path).read_text().splitlines()
    for line in text[1:]:
        if not line.strip():
            continue
        name, _, value = line.rpartition(": ")
        try:
            scales[name] = struct.unpack("!f", bytes.fromhex(value.strip()))[0]
        except (ValueError, struct.error):
            raise EdgesegError(f"{path}: bad calibration cache line {line[:80]!r}") from None
    return scales
