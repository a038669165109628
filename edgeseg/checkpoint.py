"""edgeseg checkpoints: a state_dict plus the model card, loaded with `weights_only=True`.

Layout (a plain dict of tensors and built-in types, so the safe loader accepts it):

    {"format": "edgeseg-checkpoint/1", "card": ModelCard.to_dict(), "model": state_dict,
     "train_state": {...optional: optimizer, scheduler, epoch, ...}, "metrics": {...}, "data_hash": str}

Never unpickles arbitrary objects: a file that needs that is refused with a clear message.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from edgeseg.card import ModelCard
from edgeseg.errors import EdgesegError
from edgeseg.lazy import require

FORMAT = "edgeseg-checkpoint/1"


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
    """torch.load with weights_only=True and one-line errors for missing/corrupt/unsafe files."""
    torch = require("torch")
    path = Path(path)
    if not path.is_file():
        raise EdgesegError(f"checkpoint not found: {path}")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises UnpicklingError, RuntimeError, EOFError... for bad files
        text = str(exc)
        if "Unsupported global" in text:
            raise EdgesegError(
                f"{path} contains pickled objects that are not safe to load (e.g. a whole nn.Module); "
                "only state_dicts and edgeseg checkpoints are accepted: save model.state_dict() instead"
            ) from None
        detail = next((ln.strip() for ln in text.splitlines() if "Unsupported" in ln), None)
        detail = detail or (text.strip().splitlines()[0] if text.strip() else type(exc).__name__)
        raise EdgesegError(
            f"cannot read checkpoint {path}: corrupt or not a PyTorch file ({detail})"
        ) from None


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    """Load an edgeseg checkpoint; returns the payload dict with `card` as a ModelCard."""
    raw = load_raw(path)
    if not isinstance(raw, dict) or raw.get("format") != FORMAT:
        raise EdgesegError(
            f"{path} is not an edgeseg checkpoint (no '{FORMAT}' marker); "
            "pass plain backbone weights with --weights instead"
        )
    raw["card"] = ModelCard.from_dict(raw["card"])
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
        first = str(exc).strip().splitlines()[0]
        raise EdgesegError(f"checkpoint {path} does not fit model {card.model}: {first}") from None
    model.eval()
    return model, card
