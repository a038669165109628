"""`smp:ARCH`: segmentation_models_pytorch (Unet, FPN, DeepLabV3+, Segformer, ...), any of its encoders.

The encoder comes from `--encoder`/`--backbone` or `-o encoder_name=NAME` (smp's own keyword); other
`-o key=value` go to the architecture's constructor, checked against its signature. Encoders are built
with `encoder_weights=None` (random init, nothing downloaded) and `--weights` loads the user's
state_dict; the class count is read from the segmentation head in the weights. Mean/std: a timm
encoder's (`tu-...`) from timm's local config, else ImageNet's, which smp's ImageNet encoders use.
"""

from __future__ import annotations

import inspect
from typing import Any

from edgeseg.card import ModelCard
from edgeseg.errors import EdgesegError, first_line
from edgeseg.lazy import require
from edgeseg.models.foreign import (
    Imported,
    ImportRequest,
    export_name,
    import_record,
    load_into,
    offline,
    register_importer,
    seeded,
)
from edgeseg.models.registry import suggest

_FIXED = ("self", "encoder_name", "encoder_weights", "in_channels", "classes")


@register_importer("smp", extra="smp", usage="smp:ARCH --encoder NAME")
def load_smp(request: ImportRequest) -> Imported:
    offline()
    smp = require("segmentation_models_pytorch", purpose="segmentation_models_pytorch models")
    archs = smp.MODEL_ARCHITECTURES_MAPPING
    arch_cls = archs.get(request.target.lower())
    if arch_cls is None:
        names = [c.__name__ for c in archs.values()]
        raise EdgesegError(
            f"segmentation_models_pytorch has no architecture {request.target!r}"
            f"{suggest(request.target, names)}; valid: {', '.join(names)}"
        )
    arch = arch_cls.__name__
    choice = request.choice
    options = dict(choice.options)
    encoder = _encoder(smp, arch_cls, choice.backbone, options.pop("encoder_name", None))
    _check_options(arch_cls, options)

    def build(num_classes: int) -> Any:
        try:
            return arch_cls(encoder_name=encoder, encoder_weights=None, classes=num_classes, **options)
        except (KeyError, ValueError, TypeError, RuntimeError) as exc:
            first = first_line(exc).strip("\"'")[:300]
            raise EdgesegError(f"smp {arch} with encoder {encoder!r} cannot be built: {first}") from None

    what = f"smp {arch} ({encoder})"
    if request.weights is not None:
        from edgeseg.models.state_dict import classes_in
        from edgeseg.models.weights import read_weights

        wf = read_weights(request.weights)
        n = choice.count or classes_in(build, wf.state)
        if n is None:
            raise EdgesegError(
                f"{request.weights} holds no segmentation head of {what} "
                "(is the architecture or encoder different? the file's first key is "
                f"{next(iter(wf.state))!r})"
            )
        net = build(n)
        load_into(net, request.weights, what)
        description = f"{what}, weights {request.weights}"
    else:
        from edgeseg.data.synth import SYNTH_CLASSES

        n = choice.count or len(SYNTH_CLASSES)
        net = seeded(lambda: build(n))
        description = f"{what}, random weights (untrained)"
    random = request.weights is None
    mean, std = _normalisation(encoder)
    _check_exportable(arch, encoder, options, choice.size(ModelCard.input_size))
    card = choice.card(
        export_name(f"smp_{arch}_{encoder}"),
        choice.class_names(n, random_weights=random),
        mean=mean,
        std=std,
        extra={
            "import": import_record(f"smp:{arch}", request, encoder=encoder),
            **({"random_weights": True} if random else {}),
        },
    )
    return Imported(net.eval(), card, description, request.weights, random_weights=random)


def _encoder(smp: Any, arch_cls: Any, backbone: str | None, option: str | None) -> str:
    if backbone and option and backbone != option:
        raise EdgesegError(f"--encoder {backbone!r} and -o encoder_name={option!r} disagree; give one")
    default = inspect.signature(arch_cls.__init__).parameters["encoder_name"].default
    encoder = str(backbone or option or default)
    if encoder.startswith("tu-"):
        timm = require("timm", purpose="timm encoders of segmentation_models_pytorch")
        if not timm.list_models(encoder[3:]):
            raise EdgesegError(f"timm has no model {encoder[3:]!r} (smp encoder {encoder!r})")
        return encoder
    names = smp.encoders.get_encoder_names()
    if encoder not in names:
        raise EdgesegError(
            f"segmentation_models_pytorch has no encoder {encoder!r}{suggest(encoder, names)} "
            "(or a timm model as tu-NAME)"
        )
    return encoder


PSP_BINS = (1, 2, 3, 6)  # smp's PSPModule pool sizes


def _check_exportable(arch: str, encoder: str, options: dict[str, Any], size: tuple[int, int]) -> None:
    """What PyTorch's ONNX exporter cannot do with an smp net, said in one line before it tries.

    PSPNet pools the encoder's 1/2**encoder_depth map into 1, 2, 3 and 6 bins with adaptive average
    pooling, which the exporter writes only when each bin count divides the map's size, and only when
    that size is known while tracing: smp's `efficientnet-*` encoders pad by the runtime size
    (Conv2dDynamicSamePadding), so it is not (measured in docs/models.md)."""
    if arch != "PSPNet":
        return
    if encoder.startswith("efficientnet-"):
        raise EdgesegError(
            f"smp PSPNet with {encoder} cannot be exported by PyTorch's ONNX exporter: the encoder pads "
            "by the input's runtime size, so the PSP pooling cannot see its input size; choose another "
            "encoder (e.g. resnet18, mobilenet_v2) or another architecture"
        )
    stride = 2 ** int(options.get("encoder_depth", 3))
    step = stride * PSP_BINS[-1]
    h, w = size
    if h % step or w % step:
        fit = "x".join(str(max(step, round(v / step) * step)) for v in (h, w))
        raise EdgesegError(
            f"smp PSPNet pools its 1/{stride} feature map into {', '.join(map(str, PSP_BINS))} bins, so "
            f"H/{stride} and W/{stride} must be divisible by {PSP_BINS[-1]} (H and W multiples of {step}); "
            f"got {h}x{w}: export at e.g. {fit} (--height/--width)"
        )


def _check_options(arch_cls: Any, options: dict[str, Any]) -> None:
    params = inspect.signature(arch_cls.__init__).parameters
    allowed = [p for p, v in params.items() if p not in _FIXED and v.kind is not v.VAR_KEYWORD]
    for key in options:
        if key == "encoder_weights":
            raise EdgesegError(
                "edgeseg never downloads weights (encoder_weights); pass your trained weights with --weights"
            )
        if key not in allowed:
            raise EdgesegError(
                f"smp {arch_cls.__name__} has no option {key!r}{suggest(key, allowed)}; "
                f"options: {', '.join(allowed)}"
            )


def _normalisation(encoder: str) -> tuple[tuple[float, ...], tuple[float, ...]]:
    from edgeseg.card import IMAGENET_MEAN, IMAGENET_STD

    if encoder.startswith("tu-"):
        import timm

        cfg = timm.get_pretrained_cfg(encoder[3:])
        if cfg is not None and getattr(cfg, "mean", None) and getattr(cfg, "std", None):
            return tuple(cfg.mean), tuple(cfg.std)
    return IMAGENET_MEAN, IMAGENET_STD
