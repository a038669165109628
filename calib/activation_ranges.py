"""Activation ranges: measured once with onnxruntime's calibrators, cached, reused by every INT8 form.

Both INT8 artifacts (TensorRT Q/DQ and the ONNX Runtime CPU form) and every re-quantization of the
accuracy gate's fallback are made from ONE `CalibrationStats`, so they differ only in placement and
data types, never in the statistics behind them.

The cache (`--calib-cache`, default `<model>.calib.json` beside the model) holds entries keyed by the
sha256 of: the model file's sha256, the calibration source listing hash, method, N and seed. A rebuild
with the same inputs loads the ranges without running the calibrator; a changed model or a changed
data listing misses and recalibrates.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import logging
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from edgeseg.artifacts import calib_cache_path
from edgeseg.atomic import scratch_dir, write_json
from edgeseg.calib.data import CalibrationSet
from edgeseg.card import ModelCard, sha256_file
from edgeseg.errors import EdgesegError, first_line

CACHE_FORMAT = "edgeseg-calib-cache/1"
MAX_CACHE_ENTRIES = 8
METHODS = ("entropy", "minmax", "percentile")
CHUNK = 1  # images per collect_data call: histogram calibrators hold every activation of a chunk


@dataclass
class CalibrationStats:
    """Per-tensor (low, high) activation ranges plus where they came from."""

    method: str
    ranges: dict[str, tuple[float, float]]
    key: dict[str, Any]
    calibration: dict[str, Any] = field(default_factory=dict)
    from_cache: bool = False
    cache_path: Path | None = None

    @property
    def key_hash(self) -> str:
        return cache_key_hash(self.key)

    def ort_method(self):
        from onnxruntime.quantization import CalibrationMethod

        return {
            "entropy": CalibrationMethod.Entropy,
            "minmax": CalibrationMethod.MinMax,
            "percentile": CalibrationMethod.Percentile,
        }[self.method]

    def tensors_data(self):
        """A fresh onnxruntime `TensorsData` (the quantizer mutates the one it is given)."""
        from onnxruntime.quantization.calibrate import TensorData, TensorsData

        data = {
            name: TensorData(lowest=np.float32(lo), highest=np.float32(hi))
            for name, (lo, hi) in self.ranges.items()
        }
        return TensorsData(self.ort_method(), data)

    def describe(self) -> dict[str, Any]:
        return {
            "method": self.method,
            "key": self.key_hash[:16],
            "tensors": len(self.ranges),
            "from_cache": self.from_cache,
            "cache": str(self.cache_path) if self.cache_path else None,
            **{k: v for k, v in self.calibration.items() if k != "listing_hash"},
        }


def cache_key(model_path: Path, calib: CalibrationSet, method: str, n: int, seed: int) -> dict[str, Any]:
    return {
        "model_sha256": sha256_file(model_path),
        "listing_hash": calib.listing_hash,
        "method": method,
        "images": n,
        "seed": seed,
    }


def cache_key_hash(key: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()


def _read_cache(path: Path) -> dict[str, Any]:
    if not path.is_file():
        return {"format": CACHE_FORMAT, "entries": {}}
    try:
        data = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError, UnicodeDecodeError):
        from edgeseg.console import warn

        warn(f"calibration cache {path} is unreadable; recalibrating and rewriting it")
        return {"format": CACHE_FORMAT, "entries": {}}
    if (
        not isinstance(data, dict)
        or data.get("format") != CACHE_FORMAT
        or not isinstance(data.get("entries"), dict)
    ):
        return {"format": CACHE_FORMAT, "entries": {}}
    return data


def load_cached(path: Path, key: dict[str, Any]) -> CalibrationStats | None:
    entry = _read_cache(path)["entries"].get(cache_key_hash(key))
    if not entry or entry.get("key") != key:
        return None
    ranges = {name: (float(lo), float(hi)) for name, (lo, hi) in entry["ranges"].items()}
    return CalibrationStats(
        method=key["method"],
        ranges=ranges,
        key=key,
        calibration=entry.get("calibration", {}),
        from_cache=True,
        cache_path=path,
    )


def save_cached(path: Path, stats: CalibrationStats) -> None:
    data = _read_cache(path)
    entries = data["entries"]
    entries[stats.key_hash] = {
        "key": stats.key,
        "created": time.strftime("%Y-%m-%dT%H:%M:%S"),
        "calibration": stats.calibration,
        "ranges": {name: [lo, hi] for name, (lo, hi) in stats.ranges.items()},
    }
    if len(entries) > MAX_CACHE_ENTRIES:  # keep the newest entries only
        for old in sorted(entries, key=lambda k: entries[k].get("created", ""))[
            : len(entries) - MAX_CACHE_ENTRIES
        ]:
            del entries[old]
    write_json(path, data)


@contextlib.contextmanager
def quiet_ort_logging() -> Iterator[None]:
    """onnxruntime.quantization logs advice at WARNING through the root logger; keep the CLI clean."""
    root = logging.getLogger()
    old = root.level
    root.setLevel(logging.ERROR)
    try:
        yield
    finally:
        root.setLevel(old)


class _Chunk:
    """A CalibrationDataReader over a few preprocessed inputs."""

    def __init__(self, input_name: str, batches: list[np.ndarray]) -> None:
        self._it = iter([{input_name: b} for b in batches])

    def get_next(self) -> dict[str, np.ndarray] | None:
        return next(self._it, None)


def _link_into(model_path: Path, folder: Path, external: set[str]) -> Path:
    """A symlink to `model_path` (and to its external data files) in `folder`."""
    link = folder / model_path.name
    link.symlink_to(model_path.resolve())
    for name in external:
        target = folder / name
        target.parent.mkdir(parents=True, exist_ok=True)
        target.symlink_to((model_path.parent / name).resolve())
    return link


def run_calibrator(
    model_path: Path,
    card: ModelCard,
    calib: CalibrationSet,
    method: str,
    progress: Callable[[str, int, int], Any] | None = None,
) -> dict[str, tuple[float, float]]:
    """Run onnxruntime's calibrator for `method` over the calibration set; return per-tensor ranges."""
    import onnx
    from onnx.external_data_helper import ExternalDataInfo, uses_external_data
    from onnxruntime.quantization import CalibrationMethod, create_calibrator

    ort_method = {
        "entropy": CalibrationMethod.Entropy,
        "minmax": CalibrationMethod.MinMax,
        "percentile": CalibrationMethod.Percentile,
    }[method]
    model = onnx.load(str(model_path), load_external_data=False)
    input_name = model.graph.input[0].name
    external = {ExternalDataInfo(t).location for t in model.graph.initializer if uses_external_data(t)}
    del model
    # onnxruntime's histogram calibrators print progress to stdout; keep stdout clean for --json.
    # (an ExitStack rather than 3.9's parenthesized `with`: this module is imported on Python 3.8 too)
    # the calibrator writes an inferred and an augmented copy of the model
    model_bytes = sum((Path(model_path).parent / name).stat().st_size for name in external)
    model_bytes += Path(model_path).stat().st_size
    with scratch_dir("edgeseg-calib-", room_needed=2 * model_bytes) as tmp, contextlib.ExitStack() as quiet:
        quiet.enter_context(quiet_ort_logging())
        quiet.enter_context(contextlib.redirect_stdout(io.StringIO()))
        # The calibrator writes `<model>-inferred.onnx` beside the model it is given: give it a link
        # in the scratch folder, so nothing (let alone a half file on a full disk) lands beside the export.
        linked = _link_into(Path(model_path), tmp, external)
        try:
            calibrator = create_calibrator(
                linked,
                None,  # every float tensor: both INT8 forms and the gate draw on the same ranges
                augmented_model_path=str(Path(tmp) / "augmented.onnx"),
                calibrate_method=ort_method,
                # Asymmetric ranges: the CPU form uses them as-is (U8), the TensorRT form symmetrises them.
                extra_options={"symmetric": False},
            )
        except Exception as exc:  # onnx/onnxruntime raise many types for a broken graph
            first = first_line(exc)
            raise EdgesegError(f"cannot calibrate {model_path.name}: {first}") from None
        pending: list[np.ndarray] = []
        done = 0
        for batch in calib.batches(card):
            pending.append(batch)
            if len(pending) == CHUNK:
                calibrator.collect_data(_Chunk(input_name, pending))
                done += len(pending)
                pending = []
                if progress:
                    progress(f"calibrating ({method})", done, len(calib))
        if pending:
            calibrator.collect_data(_Chunk(input_name, pending))
            if progress:
                progress(f"calibrating ({method})", len(calib), len(calib))
        tensors = calibrator.compute_data()
    ranges = {}
    for name, td in tensors.items():
        lo, hi = td.range_value
        ranges[name] = (float(np.min(lo)), float(np.max(hi)))
    return ranges


def calibrate(
    model_path: str | Path,
    card: ModelCard,
    calib: CalibrationSet,
    *,
    method: str = "entropy",
    seed: int = 0,
    cache_path: str | Path | None = None,
    progress: Callable[[str, int, int], Any] | None = None,
) -> CalibrationStats:
    """Activation ranges for `model_path` on `calib`, from the cache when the key matches."""
    if method not in METHODS:
        raise EdgesegError(f"unknown calibration method {method!r}; choose one of {', '.join(METHODS)}")
    model_path = Path(model_path)
    cache = Path(cache_path) if cache_path else calib_cache_path(model_path)
    key = cache_key(model_path, calib, method, len(calib), seed)
    cached = load_cached(cache, key)
    if cached is not None:
        return cached
    ranges = run_calibrator(model_path, card, calib, method, progress=progress)
    stats = CalibrationStats(
        method=method,
        ranges=ranges,
        key=key,
        calibration=calib.describe(),
        from_cache=False,
        cache_path=cache,
    )
    save_cached(cache, stats)
    return stats
