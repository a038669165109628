"""Small ONNX graph helpers shared by export, the TensorRT report and precision transforms.

Loading goes through `load_onnx` so a missing or corrupt file is one clear line, never a protobuf
traceback; simplification is wrapped so a simplifier failure degrades to the unsimplified graph.
"""

from __future__ import annotations

import collections
from pathlib import Path
from typing import Any

from edgeseg.card import ModelCard
from edgeseg.errors import EdgesegError
from edgeseg.lazy import require

SIMPLIFIERS = ("onnxsim", "onnxslim")


def load_onnx(path: str | Path, *, load_external_data: bool = True) -> Any:
    """`onnx.load` with one-line errors for missing, empty or corrupt files."""
    onnx = require("onnx")
    path = Path(path)
    if not path.is_file():
        raise EdgesegError(f"ONNX file not found: {path}")
    if path.stat().st_size == 0:
        raise EdgesegError(f"ONNX file {path} is empty")
    try:
        model = onnx.load(str(path), load_external_data=load_external_data)
    except Exception as exc:  # protobuf DecodeError, onnx errors, OSError
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise EdgesegError(f"{path} is not a valid ONNX model: {first}") from None
    if not model.graph.node:
        raise EdgesegError(f"{path} is not a valid ONNX model: the graph has no nodes")
    return model


def op_counts(model: Any) -> dict[str, int]:
    """Node count per op type, most frequent first (the graph-cleanliness measure)."""
    counts = collections.Counter(node.op_type for node in model.graph.node)
    return dict(counts.most_common())


def opset_version(model: Any) -> int:
    for imp in model.opset_import:
        if imp.domain in ("", "ai.onnx"):
            return int(imp.version)
    return 0


def attributes(node: Any) -> dict[str, Any]:
    """Node attributes as plain Python values (bytes decoded to str)."""
    onnx = require("onnx")
    out = {}
    for attr in node.attribute:
        value = onnx.helper.get_attribute_value(attr)
        if isinstance(value, bytes):
            value = value.decode("utf-8", "replace")
        out[attr.name] = value
    return out


def io_shapes(model: Any) -> dict[str, dict[str, list[int | str]]]:
    """{"inputs": {name: dims}, "outputs": {...}} with symbolic dims as strings."""

    def dims(vi: Any) -> list[int | str]:
        return [d.dim_param if d.dim_param else int(d.dim_value) for d in vi.type.tensor_type.shape.dim]

    inits = {i.name for i in model.graph.initializer}
    return {
        "inputs": {vi.name: dims(vi) for vi in model.graph.input if vi.name not in inits},
        "outputs": {vi.name: dims(vi) for vi in model.graph.output},
    }


def set_card(model: Any, card: ModelCard) -> None:
    """Replace the edgeseg.* metadata_props with `card`, keeping any foreign entries."""
    onnx = require("onnx")
    keep = [(p.key, p.value) for p in model.metadata_props if not p.key.startswith("edgeseg.")]
    del model.metadata_props[:]
    for key, value in keep + list(card.to_metadata_props().items()):
        model.metadata_props.append(onnx.StringStringEntryProto(key=key, value=value))


def card_of(model: Any) -> ModelCard:
    return ModelCard.from_metadata_props({p.key: p.value for p in model.metadata_props})


def simplify(model: Any, tool: str = "onnxsim") -> tuple[Any, str | None]:
    """Simplify with `tool`; returns (model, None) or (original model, reason) when it cannot.

    A failing simplifier must not fail the export: the unsimplified graph is valid, only less tidy.
    """
    if tool not in SIMPLIFIERS:
        raise EdgesegError(f"unknown simplifier {tool!r}; choose one of {', '.join(SIMPLIFIERS)}")
    try:
        if tool == "onnxsim":
            onnxsim = require("onnxsim")
            simplified, ok = onnxsim.simplify(model)
            if not ok:
                return model, "onnxsim could not validate the simplified graph"
            return simplified, None
        onnxslim = require("onnxslim")
        return onnxslim.slim(model), None
    except EdgesegError:
        raise
    except Exception as exc:  # simplifiers raise assorted errors on unusual graphs
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        return model, f"{tool} failed: {first}"


def set_dims(value_info: Any, dims: list[int | str]) -> None:
    """Overwrite a tensor's declared shape (exporters lose static dims next to symbolic ones)."""
    shape = value_info.type.tensor_type.shape
    del shape.dim[:]
    for d in dims:
        dim = shape.dim.add()
        if isinstance(d, str):
            dim.dim_param = d
        else:
            dim.dim_value = int(d)
