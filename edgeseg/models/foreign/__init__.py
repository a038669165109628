"""Import routes: nets users trained elsewhere, named `SCHEME:TARGET` on the command line.

    torchvision:NAME           torchvision's segmentation models (FCN, DeepLabV3, LR-ASPP)
    smp:ARCH                   segmentation_models_pytorch (`--encoder`/`--backbone` or -o encoder_name=)
    hf:FOLDER                  a Hugging Face SegFormer saved with save_pretrained (config.json + safetensors)
    python:MODULE:CALLABLE     any nn.Module returned by a callable (-o key=value are its arguments)

Each route is one module here that registers an `Importer` (scheme, pip extra, loader) with
`@register_importer`, like the zoo's `@register_model`: `import_model` is the one construction path.
Every route returns an `Imported` net with a full ModelCard (classes, palette, mean/std, input size), so
export, build, run and bench treat it exactly like a zoo model. Nothing is ever downloaded: builders get
random initialisation, and user weights come from local files read safely (weights_only / safetensors).
"""

from __future__ import annotations

import importlib
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edgeseg.card import ModelCard
from edgeseg.errors import EdgesegError
from edgeseg.models.choice import ModelChoice

_ROUTES = ("torchvision_route", "smp_route", "hf_route", "python_route")  # modules that register


@dataclass
class Imported:
    """A foreign net ready for export: eval mode, its card, and where it came from."""

    net: Any
    card: ModelCard
    description: str
    weights: Path | None = None
    random_weights: bool = False


@dataclass(frozen=True)
class ImportRequest:
    target: str  # what follows "SCHEME:"
    weights: Path | None
    choice: ModelChoice


@dataclass(frozen=True)
class Importer:
    scheme: str
    load: Callable[[ImportRequest], Imported]
    extra: str  # the edgeseg[extra] that installs its library
    usage: str


_IMPORTERS: dict[str, Importer] = {}


def register_importer(scheme: str, *, extra: str, usage: str) -> Callable[[Callable], Callable]:
    """Decorator: register `load(request) -> Imported` for `SCHEME:...` model names."""

    def deco(load: Callable[[ImportRequest], Imported]) -> Callable[[ImportRequest], Imported]:
        if scheme in _IMPORTERS:
            raise ValueError(f"import scheme {scheme!r} registered twice")
        _IMPORTERS[scheme] = Importer(scheme, load, extra, usage)
        return load

    return deco


def importers() -> dict[str, Importer]:
    for mod in _ROUTES:
        importlib.import_module(f"{__name__}.{mod}")
    return dict(_IMPORTERS)


def scheme_of(model: str) -> str | None:
    """The import scheme `model` names ('torchvision' for 'torchvision:fcn_resnet50'), else None."""
    scheme, sep, _ = model.partition(":")
    if not sep or not re.fullmatch(r"[a-z]+", scheme):
        return None
    return scheme if scheme in importers() else None


def usages() -> str:
    return ", ".join(imp.usage for imp in importers().values())


def import_model(
    model: str, *, weights: str | Path | None = None, choice: ModelChoice | None = None
) -> Imported:
    """Build (and load) the foreign net `SCHEME:TARGET` with its model card."""
    scheme = scheme_of(model)
    if scheme is None:
        raise EdgesegError(f"{model!r} names no import route; routes: {usages()}")
    target = model.partition(":")[2]
    if not target:
        raise EdgesegError(f"{model!r}: say what to import, e.g. {_IMPORTERS[scheme].usage}")
    request = ImportRequest(target, Path(weights) if weights is not None else None, choice or ModelChoice())
    imported = _IMPORTERS[scheme].load(request)
    imported.net.eval()
    return imported


def export_name(text: str) -> str:
    """A file-system-safe export name for a foreign model (`smp:Unet` + resnet34 -> `smp_unet_resnet34`)."""
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", text).strip("_.").lower() or "model"


def seeded(build: Callable[[], Any]) -> Any:
    """Build a net with seeded random weights: re-exporting an untrained import is reproducible."""
    from edgeseg.lazy import require

    torch = require("torch")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        return build()


def load_into(net: Any, weights: Path, what: str) -> None:
    """Load a user's weights file into `net` (every tensor, one-line error naming the first mismatches)."""
    from edgeseg.models.state_dict import load_exact
    from edgeseg.models.weights import read_weights

    wf = read_weights(weights)
    if wf.checkpoint:
        raise EdgesegError(
            f"{weights} is an edgeseg checkpoint: export it directly with `edgeseg export {weights}`"
        )
    load_exact(net, wf.state, weights, what)


def import_record(model: str, request: ImportRequest, **details: Any) -> dict[str, Any]:
    """What the card's `extra["import"]` records: the route as typed and its options."""
    record: dict[str, Any] = {"spec": model}
    if request.choice.backbone:
        record["backbone"] = request.choice.backbone
    if request.choice.options:
        record["options"] = dict(request.choice.options)
    if request.weights is not None:
        record["weights"] = str(request.weights)
    record.update(details)
    return record


def offline() -> None:
    """Tell huggingface_hub (used by transformers, smp and timm) never to reach the network.

    Set before those libraries are first imported (they read it at import); a value the user set wins.
    """
    import os

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
