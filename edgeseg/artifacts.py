"""The rules of edgeseg's artifact files, owned here and nowhere else.

Which backend runs a file, what a model's precision variants are called, where a card or an engine's
sidecar lives, and how an artifact's model card is read. Every command and stage calls these instead
of building names or reading metadata itself. Torch-free (a checkpoint's card imports torch lazily).

    <name>.onnx                  FP32 export; card in its metadata and in <name>.card.json
    <name>.fp16.onnx             FP16 graph, FP32 I/O
    <name>.int8.cpu.onnx         ONNX Runtime CPU INT8 (U8S8)
    <name>.int8.qdq.onnx         TensorRT-form INT8 (symmetric Q/DQ)
    <name>.calib.json            calibration statistics cache
    <name>.<variant>.engine      TensorRT engine, with <name>.<variant>.engine.json (sidecar)
"""

from __future__ import annotations

import contextlib
import json
from pathlib import Path
from typing import Any

from edgeseg.card import ModelCard
from edgeseg.errors import EdgesegError, first_line

# backend -> the file suffixes it runs (lower case); the first is what edgeseg writes. A suffix two
# backends run (.onnx) belongs by default to the first listed; runtime/backends.choose_backend decides.
BACKEND_SUFFIXES: dict[str, tuple[str, ...]] = {
    "onnxruntime": (".onnx",),
    "openvino": (".onnx",),
    "tensorrt": (".engine", ".plan", ".trt"),
    "torch": (".pt", ".pth"),
}
ENGINE_SUFFIXES = BACKEND_SUFFIXES["tensorrt"]

# precision variant of an export -> the infix of its file name
VARIANTS: dict[str, str] = {"fp16": "fp16", "int8-cpu": "int8.cpu", "int8-qdq": "int8.qdq"}
INT8_FORMS = ("cpu", "qdq")  # int8-<form>


def backend_for(path: str | Path) -> str:
    """The backend that runs `path` (by its suffix), or one clear error."""
    suffix = Path(path).suffix.lower()
    for backend, suffixes in BACKEND_SUFFIXES.items():
        if suffix in suffixes:
            return backend
    known = ", ".join(dict.fromkeys(s for suffixes in BACKEND_SUFFIXES.values() for s in suffixes))
    raise EdgesegError(f"don't know how to run {Path(path).name}: expected one of {known}")


def backends_for(path: str | Path) -> list[str]:
    """Every backend that runs `path`'s file type, the default first."""
    suffix = Path(path).suffix.lower()
    return [backend for backend, suffixes in BACKEND_SUFFIXES.items() if suffix in suffixes]


def is_artifact(path: str | Path) -> bool:
    suffix = Path(path).suffix.lower()
    return any(suffix in s for s in BACKEND_SUFFIXES.values())


# ------------------------------------------------------------------------------------------ names
def base_name(path: str | Path) -> str:
    """The export name a file belongs to: `fcn8s.int8.qdq.onnx` -> `fcn8s`."""
    return Path(path).name.split(".")[0]


def variant_path(base_onnx: str | Path, variant: str) -> Path:
    """`<name>.onnx` -> the file of one precision variant beside it (fp16, int8-cpu, int8-qdq)."""
    if variant not in VARIANTS:
        raise EdgesegError(f"unknown variant {variant!r}; choose one of {', '.join(VARIANTS)}")
    base = Path(base_onnx)
    return base.with_name(f"{base_name(base)}.{VARIANTS[variant]}.onnx")


def int8_path(base_onnx: str | Path, form: str) -> Path:
    return variant_path(base_onnx, f"int8-{form}")


def variant_of(path: str | Path) -> str:
    """The variant a file name says it is ("fp32" for a base export or an unknown name)."""
    name = Path(path).name.lower()
    for variant, infix in VARIANTS.items():
        if f".{infix}." in name:
            return variant
    return "fp32"


def variants_beside(base_onnx: str | Path) -> list[Path]:
    """The precision variants and engines of an export that exist beside it, in a stable order."""
    base = Path(base_onnx)
    name = base_name(base)
    onnx = sorted(
        p for p in base.parent.glob(f"{name}.*.onnx") if p != base and ".sensitivity." not in p.name
    )
    engines = sorted(p for s in ENGINE_SUFFIXES for p in base.parent.glob(f"{name}.*{s}"))
    return onnx + engines


def card_path(artifact: str | Path) -> Path:
    """`x.onnx` -> `x.card.json`, the card written beside every ONNX edgeseg makes."""
    return Path(artifact).with_suffix(".card.json")


def calib_cache_path(model: str | Path) -> Path:
    """`x.onnx` -> `x.calib.json`, the calibration statistics cache."""
    model = Path(model)
    return model.with_name(f"{model.stem}.calib.json")


def engine_path(
    onnx: str | Path, precision: str, *, legacy: bool = False, dla_core: int | None = None
) -> Path:
    """`<name>.<precision>[-legacy][-dlaN].engine` beside the ONNX it is built from."""
    variant = precision + ("-legacy" if legacy else "") + (f"-dla{dla_core}" if dla_core is not None else "")
    onnx = Path(onnx)
    return onnx.with_name(f"{base_name(onnx)}.{variant}.engine")


def legacy_calib_cache_path(onnx: str | Path) -> Path:
    """The TensorRT calibration cache the implicit-INT8 calibrator writes (`<name>.int8-legacy.calib`)."""
    onnx = Path(onnx)
    return onnx.with_name(f"{base_name(onnx)}.int8-legacy.calib")


def sidecar_path(engine: str | Path) -> Path:
    """`model.fp16.engine` -> `model.fp16.engine.json` (never clashes with an ONNX variant's card)."""
    engine = Path(engine)
    return engine.with_name(engine.name + ".json")


# ------------------------------------------------------------------------------------------ cards
def load_sidecar(engine: str | Path) -> dict[str, Any] | None:
    """An engine's build record (card, TensorRT version, GPU, flags), or None when it has none."""
    path = sidecar_path(engine)
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise EdgesegError(f"engine sidecar {path} is not valid JSON: {exc}") from None
    if not isinstance(data, dict) or "card" not in data:
        raise EdgesegError(
            f"engine sidecar {path} has no model card; rebuild with `edgeseg build --target tensorrt`"
        )
    return data


def onnx_beside_engine(engine: str | Path) -> Path | None:
    """The ONNX an engine without a sidecar was most likely built from, among the files beside it: the
    same stem (`x.plan` <- `x.onnx`), else the variant its name's precision names (`m.fp16.engine` <-
    `m.fp16.onnx`, `m.int8.engine` <- `m.int8.qdq.onnx`), else the FP32 export `<name>.onnx`."""
    engine = Path(engine)
    name = base_name(engine)
    infix = engine.name[len(name) :].split(".")[1] if engine.name.count(".") > 1 else ""
    precision = infix.split("-")[0]
    variant = {"fp16": "fp16", "int8": "int8-qdq"}.get(precision)
    candidates = [engine.with_suffix(".onnx")]
    if variant is not None:
        candidates.append(variant_path(engine.with_name(f"{name}.onnx"), variant))
    candidates.append(engine.with_name(f"{name}.onnx"))
    return next((c for c in candidates if c.is_file()), None)


def onnx_metadata(path: str | Path) -> dict[str, str]:
    """An ONNX file's metadata_props, read without its weights' external data."""
    from edgeseg.lazy import require

    onnx = require("onnx")
    path = Path(path)
    with contextlib.suppress(OSError):
        if path.stat().st_size == 0:
            raise EdgesegError(f"{path} is empty (0 bytes): not an ONNX model (an interrupted copy?)")
    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception as exc:  # protobuf DecodeError, OSError
        first = first_line(exc)
        raise EdgesegError(f"{path} is not a valid ONNX model: {first}") from None
    return {p.key: p.value for p in model.metadata_props}


def card_from_metadata(path: str | Path, metadata: dict[str, str]) -> ModelCard:
    """An ONNX's card: its own metadata, else `<stem>.card.json` beside it, else one clear error."""
    if any(k.startswith("edgeseg.") for k in metadata):
        return ModelCard.from_metadata_props(metadata, f"in {path}")
    beside = card_path(path)
    if beside.is_file():
        return ModelCard.load_json(beside)
    return ModelCard.from_metadata_props(metadata)  # raises the explanatory error


def read_card(path: str | Path, card: str | Path | ModelCard | None = None) -> ModelCard:
    """The model card of any artifact. `card` (a ModelCard or a card JSON) overrides what the file
    carries: the way to run an ONNX or engine made elsewhere."""
    if isinstance(card, ModelCard):
        return card
    if card is not None:
        return ModelCard.load_json(card)
    path = Path(path)
    if not path.is_file():
        raise EdgesegError(f"artifact not found: {path}")
    backend = backend_for(path)
    if backend == "onnxruntime":
        return card_from_metadata(path, onnx_metadata(path))
    if backend == "tensorrt":
        info = load_sidecar(path)
        if info is not None:
            return ModelCard.from_dict(info["card"], f"in {sidecar_path(path)}")
        if card_path(path).is_file():
            return ModelCard.load_json(card_path(path))
        onnx = onnx_beside_engine(path)  # an engine built by trtexec from edgeseg's ONNX
        if onnx is not None:
            return card_from_metadata(onnx, onnx_metadata(onnx))
        raise EdgesegError(
            f"no sidecar {sidecar_path(path).name} beside {path.name}: cannot tell which model it is; "
            "pass --card CARD.json, put the ONNX it was built from beside it, or rebuild with "
            "`edgeseg build --target tensorrt`"
        )
    from edgeseg.checkpoint import load_checkpoint

    return load_checkpoint(path)["card"]
