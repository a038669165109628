"""PyTorch -> ONNX export: the one place an edgeseg model becomes a deployable graph.

Exporter choice (measured, see docs/export.md): the TorchScript exporter (`dynamo=False`). On our
nets it gives opset 17 as asked, `GlobalAveragePool` for AdaptiveAvgPool(1) and `Resize` driven by
`sizes`, with BatchNorm folded into Conv; the dynamo exporter needs onnxscript, cannot emit opset 17
(it stays at 18) and turns the pooling into `ReduceMean`.

The export is committed only when it is trustworthy: the graph is written to a temporary sibling,
checked (ONNX checker, PyTorch-vs-ONNX Runtime parity on generated scenes, TensorRT op report) and
only then renamed over `<name>.onnx`, so a failed export never leaves a partial or wrong file.
"""

from __future__ import annotations

import io
import time
import warnings
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np

from edgeseg._version import __version__
from edgeseg.artifacts import card_path
from edgeseg.card import MIN_INPUT_SIDE, ModelCard, sha256_file
from edgeseg.errors import EdgesegError, first_line
from edgeseg.export import graph
from edgeseg.export.parity import PARITY_THRESHOLD, ParityResult, parity_check
from edgeseg.export.trt_compat import TrtReport, check_trt_compat
from edgeseg.lazy import require
from edgeseg.models.choice import ModelChoice
from edgeseg.models.outputs import logits_of

DEFAULT_OPSET = 17
MIN_OPSET, MAX_OPSET = 13, 20  # Resize with `sizes` needs 13; TensorRT 10 parses up to 20
DEFAULT_SIZE = (512, 1024)
EXPORTER = "torchscript"
INPUT_NAME = "input"
LabelsDtype = Literal["uint8", "int32"]
Step = Callable[[str], None]


class ExportCheckError(EdgesegError):
    """The export ran but failed a check (parity or TensorRT compatibility); carries the evidence."""

    def __init__(self, message: str, result: ExportResult) -> None:
        super().__init__(message)
        self.result = result


@dataclass
class ExportResult:
    """What an export produced and measured; `to_dict()` is the `--json` output."""

    path: Path
    card_path: Path
    card: ModelCard
    source: str
    opset: int
    exporter: str
    simplifier: str | None
    simplify_note: str | None
    nodes_exported: int
    nodes_final: int
    op_counts: dict[str, int]
    io: dict[str, Any]
    seconds: float
    parity: ParityResult | None = None
    trt: TrtReport | None = None
    written: bool = False
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "path": str(self.path),
            "card_path": str(self.card_path),
            "written": self.written,
            "model": self.card.model,
            "source": self.source,
            "input_size": list(self.card.input_size),
            "dynamic": self.card.dynamic,
            "dynamic_batch": self.card.dynamic_batch,
            "output": self.card.output,
            "opset": self.opset,
            "exporter": self.exporter,
            "simplifier": self.simplifier,
            "simplify_note": self.simplify_note,
            "nodes_exported": self.nodes_exported,
            "nodes_final": self.nodes_final,
            "op_counts": self.op_counts,
            "io": self.io,
            "seconds": round(self.seconds, 3),
            "parity": self.parity.to_dict() if self.parity else None,
            "trt": self.trt.to_dict() if self.trt else None,
            "notes": self.notes,
        }


def _torch_module_class() -> type:
    torch = require("torch")

    class SegExportWrapper(torch.nn.Module):
        """Normalises model outputs to one NxCxHxW tensor and optionally appends the in-graph ArgMax.

        torchvision-style nets return {"out": ...}; some return tuples (aux heads). Labels are
        ArgMax over the class axis cast to a narrow integer, cutting device-to-host bytes 4x (int32)
        or 16x (uint8) versus float logits.
        """

        def __init__(self, net: Any, output: str, labels_dtype: str) -> None:
            super().__init__()
            self.net = net
            self.output = output
            self.labels_dtype = torch.uint8 if labels_dtype == "uint8" else torch.int32

        def forward(self, x: Any) -> Any:
            y = logits_of(self.net, x)
            if self.output == "labels":
                return torch.argmax(y, dim=1).to(self.labels_dtype)
            return y

    return SegExportWrapper


def _validate(height: int, width: int, opset: int, output: str, labels_dtype: str, card: ModelCard) -> None:
    if height < MIN_INPUT_SIDE or width < MIN_INPUT_SIDE:
        raise EdgesegError(f"--height/--width must be at least {MIN_INPUT_SIDE} pixels, got {height}x{width}")
    if not MIN_OPSET <= opset <= MAX_OPSET:
        raise EdgesegError(
            f"--opset must be between {MIN_OPSET} and {MAX_OPSET} (TensorRT range), got {opset}"
        )
    if output not in ("logits", "labels"):
        raise EdgesegError(f"--output must be 'logits' or 'labels', got {output!r}")
    if labels_dtype not in ("uint8", "int32"):
        raise EdgesegError(f"labels dtype must be 'uint8' or 'int32', got {labels_dtype!r}")
    if output == "labels" and labels_dtype == "uint8" and card.num_classes > 256:
        raise EdgesegError(f"{card.num_classes} classes do not fit uint8 labels; use --labels-dtype int32")


def torch_to_onnx_bytes(
    net: Any,
    height: int,
    width: int,
    *,
    dynamic: bool,
    opset: int,
    output: str,
    labels_dtype: str,
    dynamic_hw: bool = False,
) -> bytes:
    """Trace `net` with the TorchScript exporter and return the serialized (unsimplified) ONNX.
    `dynamic`: the batch axis is symbolic; `dynamic_hw`: height and width are."""
    torch = require("torch")
    wrapper = _torch_module_class()(net, output, labels_dtype).eval()
    gen = torch.Generator().manual_seed(0)
    dummy = torch.rand(1, 3, height, width, generator=gen)
    out_name = "labels" if output == "labels" else "logits"
    dynamic_axes = None
    if dynamic or dynamic_hw:
        batch = {0: "batch"} if dynamic else {}
        nchw = {**batch, **({2: "height", 3: "width"} if dynamic_hw else {})}
        nhw = {**batch, **({1: "height", 2: "width"} if dynamic_hw else {})}
        dynamic_axes = {INPUT_NAME: nchw, out_name: nhw if output == "labels" else nchw}
    buf = io.BytesIO()
    try:
        with warnings.catch_warnings(), torch.no_grad():
            warnings.simplefilter("ignore")
            torch.onnx.export(
                wrapper,
                (dummy,),
                buf,
                dynamo=False,
                opset_version=opset,
                input_names=[INPUT_NAME],
                output_names=[out_name],
                dynamic_axes=dynamic_axes,
                do_constant_folding=True,
            )
    except EdgesegError:
        raise
    except Exception as exc:  # torch raises many types for unexportable modules
        first = first_line(exc)
        raise EdgesegError(f"PyTorch could not export the model to ONNX (opset {opset}): {first}") from None
    return buf.getvalue()


def _name_dynamic_output(
    model: Any, classes: int, hw: tuple[int, int], output: str, dynamic: bool, dynamic_hw: bool
) -> None:
    """Name the output's dynamic axes as the input's (batch, height, width), keeping the class axis
    static: runtimes and TensorRT profiles read it."""
    n: int | str = "batch" if dynamic else 1
    size: list[int | str] = ["height", "width"] if dynamic_hw else list(hw)
    dims = [n, *size] if output == "labels" else [n, classes, *size]
    graph.set_dims(model.graph.output[0], dims)


def _exported_card(
    card: ModelCard,
    size: tuple[int, int],
    output: str,
    dynamic: bool,
    dynamic_hw: bool,
    checkpoint_sha256: str | None,
    export_info: dict[str, Any],
) -> ModelCard:
    """The card an export carries: the size frames run at, the output, which axes are dynamic, and how
    it was made (`extra.export`)."""
    return card.replace(
        input_size=size,
        native_size=False,
        output=output,
        dynamic=dynamic_hw,
        dynamic_batch=dynamic,
        precision="fp32",
        checkpoint_sha256=checkpoint_sha256 or card.checkpoint_sha256,
        edgeseg_version=__version__,
        extra={**card.extra, "export": export_info},
    )


def export_onnx(
    model_or_checkpoint: Any,
    out_path: str | Path,
    card: ModelCard | None = None,
    *,
    height: int | None = None,
    width: int | None = None,
    dynamic: bool = False,
    dynamic_hw: bool = False,
    inference_size: tuple[int, int] | None = None,
    opset: int = DEFAULT_OPSET,
    output: str = "logits",
    simplify: bool | str = True,
    labels_dtype: LabelsDtype = "int32",  # TensorRT converts no INT32 (ArgMax) to UINT8
    parity: bool = True,
    parity_frames: Iterable[np.ndarray] | None = None,
    parity_scenes: int = 3,
    allow_trt_errors: bool = False,
    source: str | None = None,
    checkpoint_sha256: str | None = None,
    on_step: Step | None = None,
) -> ExportResult:
    """Export a torch segmentation net (or an edgeseg checkpoint path) to `out_path` + `.card.json`.

    `dynamic`: a symbolic batch axis (several streams batch their frames; H x W stay fixed, frames are
    resized to them). `dynamic_hw`: symbolic height and width too, a separate choice; the card then
    states the inference size the runtime resizes frames to (`inference_size`, else `height` x
    `width`), and running each frame at its own size is the runtime's explicit option (NATIVE).
    `simplify`: True (onnxsim, then onnxslim on static graphs when it removes more nodes), "onnxsim",
    "onnxslim", or False. The ONNX is committed only if the parity check (argmax agreement >= 99.9%)
    passes and TensorRT would accept every op (unless `allow_trt_errors`); otherwise
    ExportCheckError is raised and nothing is written.
    """
    onnx = require("onnx")
    step = on_step or (lambda _msg: None)
    start = time.perf_counter()
    out_path = Path(out_path)
    if out_path.suffix != ".onnx":
        raise EdgesegError(f"export target must end in .onnx, got {out_path.name}")
    net, card, source, checkpoint_sha256 = _open_net(
        model_or_checkpoint, card, source, checkpoint_sha256, step
    )
    h, w = (height or card.input_size[0]), (width or card.input_size[1])
    _validate(h, w, opset, output, labels_dtype, card)
    if inference_size is not None and not dynamic_hw:
        raise EdgesegError(
            "an inference size other than height x width needs dynamic_hw (a fixed net has one)"
        )

    step(f"exporting with the TorchScript exporter (opset {opset})")
    raw = torch_to_onnx_bytes(
        net, h, w, dynamic=dynamic, dynamic_hw=dynamic_hw, opset=opset, output=output, labels_dtype=labels_dtype
    )  # fmt: skip
    model = onnx.load_from_string(raw)
    del raw  # VGG-16 FCNs are 0.5 GB of weights: keep as few copies alive as possible
    nodes_exported = len(model.graph.node)
    model, simplifier, simplify_note = _simplify(model, simplify, dynamic_hw, step)
    if dynamic or dynamic_hw:
        _name_dynamic_output(model, card.num_classes, (h, w), output, dynamic, dynamic_hw)
    export_info = {
        "opset": opset,
        "exporter": EXPORTER,
        "simplifier": simplifier,
        "source": source,
        **({"labels_dtype": labels_dtype} if output == "labels" else {}),
    }  # no timestamp: the same checkpoint + options give a byte-identical ONNX (calib caches key on it)
    final_card = _exported_card(
        card, tuple(inference_size) if inference_size else (h, w), output, dynamic, dynamic_hw,
        checkpoint_sha256, export_info,
    )  # fmt: skip
    _stamp(model, final_card)

    step("checking TensorRT operator support")
    result = ExportResult(
        path=out_path,
        card_path=card_path(out_path),
        card=final_card,
        source=source,
        opset=opset,
        exporter=EXPORTER,
        simplifier=simplifier,
        simplify_note=simplify_note,
        nodes_exported=nodes_exported,
        nodes_final=len(model.graph.node),
        op_counts=graph.op_counts(model),
        io=graph.io_shapes(model),
        seconds=0.0,
        trt=check_trt_compat(model),
    )
    if simplify_note:
        result.notes.append(simplify_note)
    _commit(model, result, net, parity, parity_frames, parity_scenes, allow_trt_errors, start, step)
    return result


def _open_net(
    model_or_checkpoint: Any, card: ModelCard | None, source: str | None, sha256: str | None, step: Step
) -> tuple[Any, ModelCard, str, str | None]:
    """(net in eval mode, card, source, checkpoint hash) from a checkpoint path or a torch module."""
    if isinstance(model_or_checkpoint, (str, Path)):
        from edgeseg.checkpoint import model_from_checkpoint

        step("loading checkpoint")
        ckpt_path = Path(model_or_checkpoint)
        net, ckpt_card = model_from_checkpoint(ckpt_path)
        card = card or ckpt_card
        sha256 = sha256 or sha256_file(ckpt_path)
        source = source or str(ckpt_path)
    else:
        net = model_or_checkpoint
        if card is None:
            raise EdgesegError("export_onnx needs a ModelCard when given a torch module")
        source = source or "module"
    net.eval()
    return net, card, source, sha256


def _simplify(
    model: Any, simplify: bool | str, dynamic: bool, step: Step
) -> tuple[Any, str | None, str | None]:
    """(model, the simplifier that ran or None, why it could not); see `export_onnx`'s `simplify`."""
    if not simplify:
        return model, None, None
    tool = "onnxsim" if simplify is True else str(simplify)
    step(f"simplifying with {tool}")
    model, note = graph.simplify(model, tool)
    simplifier = None if note else tool
    if simplify is True and simplifier and not dynamic:
        # onnxsim leaves no-op Slices (FCN/U-Net crops) in static graphs; onnxslim removes them.
        # Measured in docs/export.md: never fewer nodes on dynamic graphs, so skipped there.
        slim, slim_note = graph.simplify(model, "onnxslim")
        if slim_note is None and len(slim.graph.node) < len(model.graph.node):
            model, simplifier = slim, "onnxsim+onnxslim"
    return model, simplifier, note


def _stamp(model: Any, card: ModelCard) -> None:
    """The card into the graph's metadata, edgeseg as its producer, and the full ONNX check."""
    onnx = require("onnx")
    graph.set_card(model, card)
    model.producer_name = "edgeseg"
    model.producer_version = __version__
    try:
        onnx.checker.check_model(model, full_check=True)
    except Exception as exc:
        first = first_line(exc)
        raise EdgesegError(f"the exported graph fails the ONNX checker: {first}") from None


def _commit(
    model: Any,
    result: ExportResult,
    net: Any,
    parity: bool,
    parity_frames: Iterable[np.ndarray] | None,
    parity_scenes: int,
    allow_trt_errors: bool,
    start: float,
    step: Step,
) -> None:
    """Write the ONNX under its final name only if parity passes and TensorRT accepts every op (or
    `allow_trt_errors`); otherwise raise ExportCheckError and leave nothing behind."""
    onnx = require("onnx")
    from edgeseg.atomic import atomic_path

    with atomic_path(result.path) as tmp:
        onnx.save(model, str(tmp))
        if parity:
            step("checking parity: PyTorch vs ONNX Runtime on generated scenes")
            result.parity = parity_check(
                net, tmp, result.card, frames=parity_frames, num_scenes=parity_scenes
            )
        result.seconds = time.perf_counter() - start
        if result.parity is not None and not result.parity.passed:
            raise ExportCheckError(
                f"parity check failed: PyTorch and ONNX Runtime agree on {result.parity.agreement:.4%} of "
                f"pixels (< {PARITY_THRESHOLD:.1%} required), max |diff| "
                f"{result.parity.max_abs_diff_text()}; nothing was written",
                result,
            )
        if result.trt.errors and not allow_trt_errors:
            raise ExportCheckError(
                f"TensorRT would reject {len(result.trt.errors)} op(s): {'; '.join(result.trt.errors[:3])}; "
                "nothing was written (pass --allow-trt-errors to export for ONNX Runtime anyway)",
                result,
            )
    result.card.save_json(result.card_path)
    result.written = True
    result.seconds = time.perf_counter() - start


@dataclass
class ExportSource:
    """A torch net ready to export, with its card and where it came from."""

    net: Any
    card: ModelCard
    description: str
    checkpoint: Path | None = None
    checkpoint_sha256: str | None = None
    random_weights: bool = False


def _from_checkpoint(path: Path, expect_model: str | None = None) -> ExportSource:
    from edgeseg.checkpoint import model_from_checkpoint

    net, card = model_from_checkpoint(path)
    if expect_model and card.model != expect_model:
        raise EdgesegError(f"{path} is a {card.model!r} checkpoint, not {expect_model!r}")
    return ExportSource(net, card, f"checkpoint {path}", path, sha256_file(path))


def resolve_source(
    model: str, *, root: Path, weights: str | Path | None = None, choice: ModelChoice | None = None
) -> ExportSource:
    """MODEL as typed on the command line -> net + card.

    `SCHEME:TARGET` (torchvision:, smp:, hf:, python:) is an import route (edgeseg.models.foreign).
    A path (or *.pt/*.pth) is an edgeseg checkpoint. A registry name uses `--weights` when given
    (an explicit flag wins; a plain or torchvision state_dict sets the class count), else the newest
    trained checkpoint of that model in the workspace when it matches `choice` (backbone, options,
    classes), else random weights (flagged in the card; the CLI warns loudly).
    """
    from edgeseg.models.foreign import import_model, scheme_of, usages
    from edgeseg.workspace import newest_checkpoint

    choice = choice or ModelChoice()
    path = Path(model)
    if path.suffix == ".onnx":
        raise EdgesegError(
            f"{path.name} is already ONNX; export takes a model name or an edgeseg checkpoint (.pt) "
            "(for FP16/INT8 variants of an ONNX use `edgeseg build`)"
        )
    if scheme_of(model) is not None:
        imp = import_model(model, weights=weights, choice=choice)
        sha = sha256_file(imp.weights) if imp.weights is not None else None
        return ExportSource(imp.net, imp.card, imp.description, imp.weights, sha, imp.random_weights)
    if path.suffix in (".pt", ".pth") or path.is_file():
        if not path.is_file():
            raise EdgesegError(f"checkpoint not found: {path}")
        _refuse_choice(choice, path)
        return _from_checkpoint(path)

    from edgeseg.models import create_model, list_models

    names = list_models()
    if model not in names:
        import difflib

        close = difflib.get_close_matches(model, names, n=1, cutoff=0.5)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise EdgesegError(
            f"unknown model {model!r}{hint}; valid models: {', '.join(names)} "
            f"(or a checkpoint path, or an import: {usages()})"
        )
    if weights is not None:
        from edgeseg.models.registry import model_from_weights
        from edgeseg.models.weights import read_weights

        wf = read_weights(weights)
        if wf.checkpoint:
            _refuse_choice(choice, wf.path)
            return _from_checkpoint(wf.path, expect_model=model)
        net = model_from_weights(
            model, wf, num_classes=choice.count, backbone=choice.backbone, **choice.options
        )
        known = None
        if wf.torchvision is not None:
            from edgeseg.models.torchvision_seg import categories

            known = categories(wf.torchvision.name)
        card = choice.card(model, choice.class_names(net.num_classes, known), model_kwargs=net.edgeseg_kwargs)
        what = f" ({net.edgeseg_weights})" if net.edgeseg_weights != "model" else ""
        return ExportSource(net.eval(), card, f"weights {wf.path}{what}", wf.path, sha256_file(wf.path))
    note = ""
    ckpt = newest_checkpoint(root, model)
    if ckpt is not None:
        found = _from_checkpoint(ckpt, expect_model=model)
        differs = _differs(found.card, choice)
        if not differs:
            return found
        note = f"; the newest {model} checkpoint {ckpt} has {differs}"
    from edgeseg.data.synth import SYNTH_CLASSES
    from edgeseg.models.foreign import seeded

    n = choice.count or len(SYNTH_CLASSES)  # seeded: re-exporting an untrained model is reproducible
    net = seeded(lambda: create_model(model, n, choice.backbone, **choice.options))
    card = choice.card(
        model,
        choice.class_names(n, random_weights=True),
        model_kwargs=net.edgeseg_kwargs,
        extra={"random_weights": True},
    )
    return ExportSource(net.eval(), card, f"random weights (untrained{note})", random_weights=True)


def _refuse_choice(choice: ModelChoice, path: Path) -> None:
    if choice.given():
        raise EdgesegError(
            f"{path} is an edgeseg checkpoint: it carries its own backbone, options and classes "
            f"(drop {', '.join(choice.given())})"
        )


def _differs(card: ModelCard, choice: ModelChoice) -> str:
    """What a trained checkpoint's card has that the command line asked otherwise ('' when it matches)."""
    kwargs = card.model_kwargs
    wanted = {**({"backbone": choice.backbone} if choice.backbone else {}), **choice.options}
    diffs = [f"{k} {kwargs.get(k)!r}" for k, v in wanted.items() if str(kwargs.get(k)) != str(v)]
    if choice.count is not None and choice.count != card.num_classes:
        diffs.append(f"{card.num_classes} classes")
    elif choice.classes is not None and list(choice.classes) != card.classes:
        diffs.append("other class names")
    return ", ".join(diffs)
