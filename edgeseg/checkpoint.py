"""edgeseg checkpoints: a state_dict plus the model card, loaded with `weights_only=True`.

Layout (a plain dict of tensors and built-in types, so the safe loader accepts it):

    {"format": "edgeseg-checkpoint/1", "card": ModelCard.to_dict(), "model": state_dict,
     "train_state": {...optional: optimizer, scheduler, epoch, ...}, "metrics": {...}, "data_hash": str}

Never unpickles arbitrary objects: a file that needs that is refused with a clear message. The one
class let through is `argparse.Namespace` (`SAFE_GLOBALS`): torchvision's reference trainer
(references/segmentation/train.py) saves `{"model", "optimizer", "lr_scheduler", "epoch", "args"}` with
its parsed arguments in "args", and a Namespace is a plain attribute bag (pickled as the class plus a
dict of its attributes, which are themselves checked like everything else).
"""

from __future__ import annotations

import pickletools
import re
import warnings
import zipfile
from pathlib import Path
from typing import Any

from edgeseg.card import ModelCard
from edgeseg.errors import EdgesegError, first_line, not_a_file
from edgeseg.lazy import require

FORMAT = "edgeseg-checkpoint/1"


def _safe_globals() -> list[type]:
    """Classes the weights_only unpickler may build besides tensors and containers: only
    argparse.Namespace (torchvision's reference checkpoints carry one as "args")."""
    import argparse

    return [argparse.Namespace]


def save_checkpoint(
    path: str | Path,
    model_state: dict[str, Any],
    card: ModelCard,
    *,
    train_state: dict[str, Any] | None = None,
    metrics: dict[str, Any] | None = None,
    data_hash: str | None = None,
) -> None:
    """Write atomically (a crash never leaves a truncated checkpoint behind)."""
    torch = require("torch")
    from edgeseg.atomic import atomic_path

    payload = {
        "format": FORMAT,
        "card": card.to_dict(),
        "model": model_state,
        "train_state": train_state or {},
        "metrics": metrics or {},
        "data_hash": data_hash,
    }
    with atomic_path(path) as tmp:
        torch.save(payload, tmp)


def load_raw(path: str | Path) -> Any:
    """torch.load with weights_only=True and one-line errors for missing/corrupt/unsafe files.

    A file that needs more than tensors and plain containers is refused as such, never called
    corrupt, and the message never suggests weights_only=False (that would run its code)."""
    torch = require("torch")
    path = Path(path)
    if not path.is_file():
        raise not_a_file(path, "checkpoint")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # torch warns about the pickle protocol before it refuses
            with torch.serialization.safe_globals(_safe_globals()):
                return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises UnpicklingError, RuntimeError, EOFError... for bad files
        objects = pickled_objects(path, str(exc))
        if objects is not None:
            raise EdgesegError(
                f"refused {path}: not a plain weights file, it holds pickled Python objects{objects}, "
                "which edgeseg never unpickles; save a state_dict (torch.save(model.state_dict(), ...)) "
                "or an edgeseg checkpoint"
            ) from None
        raise EdgesegError(
            f"cannot read checkpoint {path}: corrupt or not a PyTorch file ({_detail(exc)})"
        ) from None


_UNSAFE_OPS = {"GLOBAL", "STACK_GLOBAL", "INST", "OBJ", "REDUCE", "NEWOBJ", "NEWOBJ_EX", "BUILD"}


def pickled_objects(path: Path, error: str) -> str | None:
    """If torch's safe loader refused `path` because it holds pickled objects: ' (e.g. posix.system)'
    or ''; None when the file is simply not readable. Only parses opcodes (pickletools), never runs
    them."""
    named = re.search(r"GLOBAL ([\w.]+)", error)
    if named:
        return f" (e.g. {named.group(1)})"
    if "Weights only load failed" not in error:
        return None
    try:
        if zipfile.is_zipfile(path):
            with zipfile.ZipFile(path) as zf:
                member = next((n for n in zf.namelist() if n.endswith("data.pkl")), None)
                data = zf.read(member) if member else b""
        else:
            data = path.read_bytes()
        ops = [op.name for op, _, _ in pickletools.genops(data)]
    except Exception:  # noqa: BLE001 - not a well-formed pickle: corrupt, not unsafe
        return None
    return "" if _UNSAFE_OPS & set(ops) else None


def _detail(exc: Exception) -> str:
    """The first line of torch's message that is about the file, not about weights_only."""
    lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()]
    useful = [ln for ln in lines if "weights_only" not in ln and "Weights only" not in ln]
    text = useful[0].split(". ")[0][:200] if useful else ""
    return text if len(text) > 12 else f"{type(exc).__name__} {text}".strip()


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    """Load an edgeseg checkpoint; returns the payload dict with `card` as a ModelCard."""
    raw = load_raw(path)
    if not isinstance(raw, dict) or raw.get("format") != FORMAT:
        raise EdgesegError(
            f"{path} is not an edgeseg checkpoint (no '{FORMAT}' marker); "
            "pass plain backbone weights with --weights instead"
        )
    raw["card"] = ModelCard.from_dict(raw["card"], f"in {path}")
    return raw


def is_edgeseg_checkpoint(raw: Any) -> bool:
    return isinstance(raw, dict) and raw.get("format") == FORMAT


def model_from_checkpoint(path: str | Path):
    """(model in eval mode, card) from an edgeseg checkpoint, via the model registry."""
    from edgeseg.models import create_model

    payload = load_checkpoint(path)
    card: ModelCard = payload["card"]
    model = create_model(card.model, num_classes=card.num_classes, **card.model_kwargs)
    try:
        model.load_state_dict(payload["model"])
    except RuntimeError as exc:
        first = first_line(exc)
        raise EdgesegError(f"checkpoint {path} does not fit model {card.model}: {first}") from None
    model.eval()
    return model, card
