"""Small ONNX graph helpers shared by export, the TensorRT report and precision transforms.

Loading goes through `load_onnx` so a missing or corrupt file is one clear line, never a protobuf
traceback; simplification is wrapped so a simplifier failure degrades to the unsimplified graph.
"""

from __future__ import annotations

import collections
from pathlib import Path
from typing import Any

from edgeseg.card import ModelCard
from edgeseg.errors import EdgesegError, first_line
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
        first = first_line(exc)
        raise EdgesegError(f"{path} is not a valid ONNX model: {first}") from None
    if not model.graph.node:
        raise EdgesegError(f"{path} is not a valid ONNX model: the graph has no nodes")
    return model


def inline_constant_identities(model: Any) -> int:
    """Point the readers of `Identity(initializer)` at the initializer itself and drop the Identity.

    torch.onnx.export (TorchScript) stores equal-valued weights once and gives each further user an
    Identity of it (an untrained net's zero biases, for one); ONNX Runtime's quantizer reads Conv
    weights and biases only from initializers and fails on those ("'NoneType' object has no attribute
    'data_type'"). onnxsim does the same folding on edgeseg's own exports. Returns the nodes removed."""
    graph = model.graph
    constants = {init.name for init in graph.initializer}
    outputs = {o.name for o in graph.output}
    source: dict[str, str] = {}
    for node in graph.node:
        if node.op_type == "Identity" and node.input and node.output[0] not in outputs:
            src = source.get(node.input[0], node.input[0])
            if src in constants:
                source[node.output[0]] = src
    if not source:
        return 0
    for node in graph.node:
        for i, name in enumerate(node.input):
            if name in source:
                node.input[i] = source[name]
    dead = [n for n in graph.node if n.op_type == "Identity" and n.output[0] in source]
    for node in dead:
        graph.node.remove(node)
    return len(dead)


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
        first = first_line(exc)
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


def graph_facts(model: Any) -> dict[str, Any]:
    """What a card must agree with, read from the graph: input (H, W) or None when symbolic, whether
    height/width (`dynamic`) and the batch (`dynamic_batch`) are dynamic, kept apart (a file with a
    dynamic batch alone runs any frame resized to its fixed H x W), output kind by rank (4: logits,
    3: labels) and the class count when static."""
    io = io_shapes(model)
    if len(io["inputs"]) != 1 or len(io["outputs"]) < 1:
        raise EdgesegError(f"expected one image input, got {len(io['inputs'])} input(s)")
    dims = next(iter(io["inputs"].values()))
    out = next(iter(io["outputs"].values()))
    if len(dims) != 4 or (dims[1] != 3 and not isinstance(dims[1], str)):
        raise EdgesegError(f"expected an N x 3 x H x W input, got {dims}")
    if out and len(out) not in (3, 4):
        name = next(iter(io["outputs"]))
        raise EdgesegError(
            f"output {name!r} is {list(out)}: not a segmentation output (N x C x H x W logits or "
            "N x H x W labels); a classifier or detector needs another tool"
        )
    static = all(isinstance(d, int) and d > 0 for d in dims[2:])
    facts: dict[str, Any] = {
        "input_size": (dims[2], dims[3]) if static else None,
        "dynamic": not static,
        "dynamic_batch": not (isinstance(dims[0], int) and dims[0] > 0),
        "output": {4: "logits", 3: "labels"}.get(len(out)),
        "num_classes": out[1] if len(out) == 4 and isinstance(out[1], int) and out[1] > 0 else None,
    }
    return facts


def check_card_fits(model: Any, card: ModelCard) -> None:
    """Refuse a card that contradicts the graph (input size, output kind, class count)."""
    facts = graph_facts(model)
    if facts["input_size"] and tuple(facts["input_size"]) != tuple(card.input_size):
        h, w = facts["input_size"]
        raise EdgesegError(
            f"the ONNX input is {h}x{w} but the card says {card.input_size[0]}x{card.input_size[1]}"
        )
    if facts["output"] and facts["output"] != card.output:
        raise EdgesegError(f"the ONNX outputs {facts['output']} but the card says {card.output}")
    if facts["num_classes"] and facts["num_classes"] != card.num_classes:
        raise EdgesegError(
            f"the ONNX scores {facts['num_classes']} classes but the card lists {card.num_classes}"
        )


def embed_card(path: str | Path, card: ModelCard) -> None:
    """Write `card` into the ONNX's metadata, atomically (foreign metadata entries are kept)."""
    from edgeseg.atomic import atomic_path

    onnx = require("onnx")
    model = load_onnx(path)
    check_card_fits(model, card)
    set_card(model, card)
    with atomic_path(path) as tmp:
        onnx.save(model, str(tmp))
