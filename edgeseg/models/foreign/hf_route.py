"""`hf:FOLDER`: a Hugging Face SegFormer saved with `save_pretrained` (config.json + model.safetensors).

Loaded from the folder only (`local_files_only=True`, HF_HUB_OFFLINE; no remote code). SegFormer's
decode head scores at 1/4 of the input; the wrapper upsamples bilinearly (align_corners=False, as
transformers' `post_process_semantic_segmentation`) so the net returns N x C x H x W logits at the input
resolution like every edgeseg model. Class names come from the config's `id2label`; mean/std and the
input size from `preprocessor_config.json` when the folder has one (SegFormer's processor defaults:
ImageNet statistics, 512x512).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from edgeseg.errors import EdgesegError, first_line
from edgeseg.lazy import require
from edgeseg.models.foreign import (
    Imported,
    ImportRequest,
    export_name,
    import_record,
    offline,
    register_importer,
)

SUPPORTED = ("segformer",)


def _wrapper_class() -> type:
    torch = require("torch")
    F = torch.nn.functional

    class LogitsAtInputSize(torch.nn.Module):
        """A transformers semantic-segmentation model as edgeseg nets are: pixels in, full-size logits out."""

        def __init__(self, model: Any) -> None:
            super().__init__()
            self.model = model

        def forward(self, x: Any) -> Any:
            logits = self.model(pixel_values=x).logits
            return F.interpolate(logits, size=x.shape[-2:], mode="bilinear", align_corners=False)

    return LogitsAtInputSize


@register_importer("hf", extra="hf", usage="hf:FOLDER")
def load_hf(request: ImportRequest) -> Imported:
    folder = Path(request.target).expanduser()
    config_path = folder / "config.json"
    if not config_path.is_file():
        raise EdgesegError(
            f"hf:{request.target}: no config.json in {folder} (a folder written by save_pretrained; "
            "edgeseg never downloads from the Hub)"
        )
    if request.weights is not None:
        raise EdgesegError("hf: loads the weights saved in the folder; drop --weights")
    choice = request.choice
    if choice.backbone or choice.options:
        raise EdgesegError("hf: the folder's config.json fixes the architecture (drop --backbone / -o)")
    config = _read_json(config_path)
    model_type = config.get("model_type")
    if model_type not in SUPPORTED:
        raise EdgesegError(
            f"hf:{request.target} is a {model_type!r} model; edgeseg imports {', '.join(SUPPORTED)} folders"
        )
    safetensors = any(folder.glob("*.safetensors"))
    if not safetensors and not any(folder.glob("pytorch_model*.bin")):
        raise EdgesegError(f"hf:{request.target}: no model.safetensors (or pytorch_model.bin) in {folder}")
    if not safetensors:  # refused here, unrun and in one line, as on every other route
        from edgeseg.checkpoint import load_raw

        for weights in sorted(folder.glob("pytorch_model*.bin")):
            load_raw(weights)
    offline()
    torch = require("torch")
    transformers = require("transformers", purpose="Hugging Face models")
    transformers.utils.logging.disable_progress_bar()
    transformers.utils.logging.set_verbosity_error()
    try:
        model = transformers.SegformerForSemanticSegmentation.from_pretrained(
            str(folder),
            local_files_only=True,
            use_safetensors=safetensors,
            trust_remote_code=False,
            weights_only=True,
            dtype=torch.float32,
        )
    except (OSError, ValueError, RuntimeError, KeyError) as exc:
        first = first_line(exc)
        raise EdgesegError(f"hf:{request.target} cannot be loaded: {first}") from None
    n = int(model.config.num_labels)
    id2label = {int(k): str(v) for k, v in (model.config.id2label or {}).items()}
    known = [id2label[i] for i in range(n)] if sorted(id2label) == list(range(n)) else None
    mean, std, size = _preprocessing(folder)
    card = choice.card(
        export_name(folder.resolve().name),
        choice.class_names(n, known),
        mean=mean,
        std=std,
        input_size=size,
        extra={"import": import_record(f"hf:{folder}", request, model_type=model_type)},
    )
    net = _wrapper_class()(model).eval()
    return Imported(net, card, f"Hugging Face {model_type} {folder}", None)


def _read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise EdgesegError(f"{path} is not readable JSON: {exc}") from None
    if not isinstance(data, dict):
        raise EdgesegError(f"{path} is not a JSON object")
    return data


def _preprocessing(folder: Path) -> tuple[tuple[float, ...], tuple[float, ...], tuple[int, int] | None]:
    """Mean, std (0..1 scale) and input size from preprocessor_config.json, else SegFormer's defaults."""
    from edgeseg.card import IMAGENET_MEAN, IMAGENET_STD

    path = folder / "preprocessor_config.json"
    if not path.is_file():
        return IMAGENET_MEAN, IMAGENET_STD, (512, 512)
    cfg = _read_json(path)
    if (
        cfg.get("do_rescale", True) is False
        or abs(float(cfg.get("rescale_factor", 1 / 255)) - 1 / 255) > 1e-9
    ):
        raise EdgesegError(
            f"{path}: edgeseg feeds pixels scaled to 0..1 (rescale_factor 1/255); this processor differs"
        )
    mean, std = IMAGENET_MEAN, IMAGENET_STD
    if cfg.get("do_normalize", True):
        mean = tuple(float(v) for v in cfg.get("image_mean", mean))
        std = tuple(float(v) for v in cfg.get("image_std", std))
    else:
        mean, std = (0.0, 0.0, 0.0), (1.0, 1.0, 1.0)
    size = cfg.get("size") or {}
    hw = (int(size["height"]), int(size["width"])) if "height" in size and "width" in size else (512, 512)
    return mean, std, hw
