"""`torchvision:NAME`: torchvision's segmentation models (FCN-ResNet50/101, DeepLabV3-ResNet50/101/
MobileNetV3, LR-ASPP-MobileNetV3), built by torchvision's own registry with random weights, then loaded
from `--weights`. The class count and the aux head are read from the weights; class names default to
the categories of torchvision's published weights when the count matches, mean/std come from their
preprocessing preset. The dict output ({"out", "aux"}) is reduced to "out" by the export wrapper.
"""

from __future__ import annotations

from edgeseg.errors import EdgesegError
from edgeseg.models import torchvision_seg
from edgeseg.models.foreign import Imported, ImportRequest, import_record, register_importer, seeded
from edgeseg.models.registry import suggest


@register_importer("torchvision", extra="train", usage="torchvision:NAME")
def load_torchvision(request: ImportRequest) -> Imported:
    name = request.target
    names = torchvision_seg.segmentation_names()
    if name not in names:
        raise EdgesegError(
            f"torchvision has no segmentation model {name!r}{suggest(name, names)}; valid: {', '.join(names)}"
        )
    choice = request.choice
    if choice.backbone or choice.options:
        raise EdgesegError(
            f"torchvision:{name} fixes its backbone and takes no options (drop --backbone / -o)"
        )
    aux = False
    if request.weights is not None:
        from edgeseg.models.state_dict import load_exact
        from edgeseg.models.weights import read_weights

        wf = read_weights(request.weights)
        if wf.checkpoint:
            raise EdgesegError(
                f"{request.weights} is an edgeseg checkpoint: export it with `edgeseg export {request.weights}`"
            )
        match = torchvision_seg.identify(wf.state, [name])
        if match is None:
            other = (
                torchvision_seg.identify(wf.state) if torchvision_seg.looks_torchvision(wf.state) else None
            )
            if other is not None:
                raise EdgesegError(
                    f"{request.weights} is torchvision's {other.name}, not {name}: "
                    f"use torchvision:{other.name}"
                )
            _explain_mismatch(name, wf)
        n, aux = match.num_classes, match.aux
        net = torchvision_seg.build(name, n, aux)
        load_exact(net, wf.state, request.weights, f"torchvision's {name}")
        description = f"torchvision {name}, weights {request.weights}"
    else:
        n = choice.count or _default_count()
        net = seeded(lambda: torchvision_seg.build(name, n))
        description = f"torchvision {name}, random weights (untrained)"
    random = request.weights is None
    classes = choice.class_names(n, torchvision_seg.categories(name), random_weights=random)
    mean, std = torchvision_seg.normalisation(name)
    card = choice.card(
        name,
        classes,
        mean=mean,
        std=std,
        extra={
            "import": import_record(f"torchvision:{name}", request, aux_head=aux),
            **({"random_weights": True} if random else {}),
        },
    )
    return Imported(net.eval(), card, description, request.weights, random_weights=random)


def _default_count() -> int:
    from edgeseg.data.synth import SYNTH_CLASSES

    return len(SYNTH_CLASSES)


def _explain_mismatch(name: str, wf) -> None:
    """One line naming the first keys and shapes that keep the file from torchvision's `name`."""
    from edgeseg.models.state_dict import classes_in, fit_problem

    aux = any(k.startswith(torchvision_seg.AUX_PREFIX) for k in wf.state)
    if name.startswith("lraspp"):
        aux = False
    n = classes_in(lambda k: torchvision_seg.build(name, k, aux), wf.state) or 21
    import torch

    with torch.device("meta"):
        ref = torchvision_seg.build(name, n, aux).state_dict()
    problem = fit_problem(ref, wf.state) or "unrecognised layout"
    raise EdgesegError(f"{wf.path} does not fit torchvision's {name}: {problem}")
