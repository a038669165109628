"""The model registry: one construction path for every segmentation net.

`@register_model` records a builder with its allowed backbones and paper; `create_model` validates
the name, backbone and options (one-line EdgesegError with the valid choices and the closest match),
builds the net, records the resolved options on `model.edgeseg_kwargs` (what a checkpoint's card needs
to rebuild it), and optionally loads weights.
"""

from __future__ import annotations

import difflib
import inspect
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from edgeseg.errors import EdgesegError


@dataclass(frozen=True)
class ModelSpec:
    name: str
    builder: Callable[..., Any]
    backbones: tuple[str, ...]
    default_backbone: str | None
    paper: str
    cite: str
    output_strides: tuple[int, ...] = ()  # selectable via output_stride=...; empty: fixed
    default_output_stride: int | None = None  # stride of the finest map the head scores/fuses
    summary: str = ""
    # options that only some backbones take: option -> those backbones (absent: every backbone)
    option_backbones: dict[str, tuple[str, ...]] = field(default_factory=dict)

    def takes_option(self, option: str, backbone: str | None) -> bool:
        only = self.option_backbones.get(option)
        return only is None or backbone in only

    @property
    def builtin(self) -> bool:
        """Shipped with edgeseg (these are the models the catalog lists)."""
        return self.builder.__module__.startswith("edgeseg.models.")


_REGISTRY: dict[str, ModelSpec] = {}
_BUILTIN = (
    "fcn",
    "deeplab",
    "deeplabv2",
    "fpn",
    "denseaspp",
    "unet",
)  # modules whose import registers the zoo


def _load_builtin() -> None:
    import importlib

    for mod in _BUILTIN:
        importlib.import_module(f"edgeseg.models.{mod}")


def suggest(name: str, choices: Iterable[str]) -> str:
    close = difflib.get_close_matches(name, list(choices), n=1, cutoff=0.5)
    return f" (did you mean {close[0]!r}?)" if close else ""


def register_model(
    name: str,
    *,
    backbones: Iterable[str] = (),
    default_backbone: str | None = None,
    paper: str = "",
    cite: str = "",
    output_strides: Iterable[int] = (),
    default_output_stride: int | None = None,
    summary: str = "",
    option_backbones: dict[str, Iterable[str]] | None = None,
) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Decorator: register `builder(num_classes, backbone=..., output_stride=..., **kw) -> nn.Module`."""

    def deco(builder: Callable[..., Any]) -> Callable[..., Any]:
        if name in _REGISTRY:
            raise ValueError(f"model {name!r} registered twice")
        bbs = tuple(backbones)
        _REGISTRY[name] = ModelSpec(
            name=name,
            builder=builder,
            backbones=bbs,
            default_backbone=default_backbone or (bbs[0] if bbs else None),
            paper=paper,
            cite=cite or _cite(paper),
            output_strides=tuple(output_strides),
            default_output_stride=default_output_stride,
            summary=summary or (inspect.getdoc(builder) or "").split("\n")[0],
            option_backbones={k: tuple(v) for k, v in (option_backbones or {}).items()},
        )
        return builder

    return deco


def _cite(paper: str) -> str:
    """'Long, Shelhamer & Darrell, ..., CVPR 2015' -> 'Long 2015' (short form for tables)."""
    author = paper.replace(",", " ").split()[0] if paper else "-"
    year = next(
        (tok for tok in reversed(paper.replace(")", " ").split()) if tok.isdigit() and len(tok) == 4), ""
    )
    return f"{author} {year}".strip()


def list_models(*, builtin_only: bool = False) -> list[str]:
    """Registered names in registration order; `builtin_only` skips models registered by user code/tests."""
    _load_builtin()
    return [n for n, s in _REGISTRY.items() if not builtin_only or s.builtin]


def get_spec(name: str) -> ModelSpec:
    _load_builtin()
    if name not in _REGISTRY:
        raise EdgesegError(
            f"unknown model {name!r}{suggest(name, _REGISTRY)}; valid models: {', '.join(_REGISTRY)}"
        )
    return _REGISTRY[name]


def resolve_kwargs(
    name: str, backbone: str | None = None, output_stride: int | None = None, **kw: Any
) -> dict[str, Any]:
    """Validated, complete builder options (backbone/output stride defaults filled in)."""
    spec = get_spec(name)
    resolved: dict[str, Any] = {}
    if spec.backbones:
        backbone = backbone or spec.default_backbone
        if backbone not in spec.backbones:
            raise EdgesegError(
                f"model {name!r} does not support backbone {backbone!r}{suggest(str(backbone), spec.backbones)}; "
                f"valid: {', '.join(spec.backbones)}"
            )
        resolved["backbone"] = backbone
    elif backbone is not None:
        raise EdgesegError(f"model {name!r} has its own encoder and takes no backbone (got {backbone!r})")
    if spec.output_strides:
        if isinstance(output_stride, str):
            output_stride = _coerce(name, "output_stride", output_stride, "int")
        output_stride = output_stride or spec.default_output_stride or spec.output_strides[0]
        if output_stride not in spec.output_strides:
            raise EdgesegError(
                f"model {name!r} supports output stride {'/'.join(map(str, spec.output_strides))}, not {output_stride}"
            )
        resolved["output_stride"] = int(output_stride)
    elif output_stride is not None:
        raise EdgesegError(f"model {name!r} has a fixed output stride; do not pass output_stride")
    params = inspect.signature(spec.builder).parameters
    allowed = [p for p in params if p not in ("num_classes", "backbone", "output_stride")]
    for key, value in kw.items():
        if key not in allowed:
            raise EdgesegError(
                f"model {name!r} has no option {key!r}{suggest(key, allowed)}; "
                f"options: {', '.join(allowed) or 'none'}"
            )
        if not spec.takes_option(key, resolved.get("backbone")):
            only = ", ".join(spec.option_backbones[key])
            raise EdgesegError(
                f"model {name!r} option {key!r} applies to backbone {only} only, not {resolved.get('backbone')!r}"
            )
        resolved[key] = _coerce(name, key, value, params[key].annotation)
    return resolved


_SCALARS: dict[str, type] = {"int": int, "float": float, "bool": bool}


def _coerce(model: str, key: str, value: Any, annotation: Any) -> Any:
    """Options typed on the command line arrive as strings: convert to the builder's int/float/bool."""
    kind = _SCALARS.get(annotation if isinstance(annotation, str) else getattr(annotation, "__name__", ""))
    if kind is None or not isinstance(value, str):
        return value
    try:
        if kind is bool:
            if value.lower() not in ("1", "0", "true", "false", "yes", "no"):
                raise ValueError(value)
            return value.lower() in ("1", "true", "yes")
        return kind(value)
    except ValueError:
        raise EdgesegError(f"model {model!r} option {key}={value!r} is not a valid {kind.__name__}") from None


def create_model(
    name: str,
    num_classes: int = 21,
    backbone: str | None = None,
    weights: Any = None,
    **kw: Any,
):
    """Build a registered model: N x 3 x H x W in, N x num_classes x H x W logits out, any H, W.

    `weights`: a path, "imagenet" or a read `WeightsFile` (edgeseg/models/weights.py). A torchvision
    checkpoint of a net the zoo matches fills in the backbone and output stride it implies, unless given;
    what was loaded is recorded on `model.edgeseg_weights`.
    """
    if not isinstance(num_classes, int) or num_classes < 1:
        raise EdgesegError(f"num_classes must be a positive integer, not {num_classes!r}")
    if weights is not None and str(weights) != "imagenet":
        from edgeseg.models.weights import WeightsFile, implied_options, read_weights

        weights = weights if isinstance(weights, WeightsFile) else read_weights(weights)
        backbone, kw = implied_options(name, weights, backbone, kw)
    resolved = resolve_kwargs(name, backbone, **kw)
    model = get_spec(name).builder(num_classes=num_classes, **resolved)
    model.edgeseg_name = name
    model.edgeseg_kwargs = dict(resolved)
    model.num_classes = num_classes
    if weights is not None:
        from edgeseg.models.weights import load_weights

        model.edgeseg_weights = load_weights(model, weights)
    return model


def model_from_weights(
    name: str,
    weights: Any,
    *,
    num_classes: int | None = None,
    backbone: str | None = None,
    **kw: Any,
):
    """A zoo model that the whole state_dict in `weights` (a read `WeightsFile`) fits: its class count
    is read from the weights unless given, a torchvision checkpoint's output stride and backbone are
    implied unless given."""
    from edgeseg.models.state_dict import classes_in
    from edgeseg.models.weights import implied_options, load_weights

    backbone, kw = implied_options(name, weights, backbone, kw)
    if num_classes is None:
        match = weights.torchvision
        num_classes = (
            match.num_classes
            if match is not None
            else classes_in(lambda n: create_model(name, n, backbone, **kw), weights.state)
        )
    # no classifier in the file: any count; the load below names the keys that do not fit
    model = create_model(name, num_classes or 21, backbone, **kw)
    model.edgeseg_weights = load_weights(model, weights, whole=True)
    return model
