"""`benchmarks/chain.py --models`: which weights a spec names and what its artifacts are called."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from edgeseg.errors import EdgesegError

# registered model name + options of the paper models (spelled out so the label says what ran)
PAPER_MODELS = {
    "fcn8s": ("fcn8s", {"backbone": "vgg16"}),
    "deeplabv3plus": ("deeplabv3plus", {"backbone": "resnet50"}),
}


@dataclass
class ModelSpec:
    """One entry of --models: where the weights come from and what the artifacts are called."""

    text: str
    key: str  # workspace name stem
    model: str | None = None  # registry name when the weights are random
    kwargs: dict[str, str] = field(default_factory=dict)
    checkpoint: Path | None = None  # trained edgeseg checkpoint
    trained: bool = False


def parse_spec(text: str) -> ModelSpec:
    """`default` | path/to/checkpoint.pt | `name[:key=value[:key=value]]` (random init)."""
    text = text.strip()
    if not text:
        raise EdgesegError("empty model spec in --models")
    if text == "default":
        from edgeseg.defaults import default_model_path

        return ModelSpec(text, "edgeseg-default", checkpoint=default_model_path("pt"), trained=True)
    if text.endswith((".pt", ".pth")):
        path = Path(text).expanduser()
        if not path.is_file():
            raise EdgesegError(f"checkpoint not found: {path}")
        return ModelSpec(text, path.stem, checkpoint=path, trained=True)
    name, *opts = text.split(":")
    model, kwargs = PAPER_MODELS.get(name, (name, {}))
    kwargs = dict(kwargs)
    for opt in opts:
        key, sep, value = opt.partition("=")
        if not sep or not key:
            raise EdgesegError(f"model option {opt!r} in {text!r} must look like key=value")
        kwargs[key] = value
    from edgeseg.models import list_models

    if model not in list_models():
        raise EdgesegError(f"unknown model {model!r} in --models; see `edgeseg models`")
    suffix = "-".join(str(v).replace(".", "_") for v in kwargs.values())
    return ModelSpec(text, f"{model}-{suffix}" if suffix else model, model=model, kwargs=kwargs)
