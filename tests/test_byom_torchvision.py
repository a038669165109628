"""torchvision checkpoints in edgeseg, checked against torchvision's own model objects: the key mapping
into the zoo's deeplabv3, the refusals where the architectures differ, fine-tuning with another class
count, and the mIoU of a trained torchvision checkpoint through edgeseg's ONNX runtime vs torchvision."""

from __future__ import annotations

import json

import numpy as np
import pytest

torch = pytest.importorskip("torch")
tvseg = pytest.importorskip("torchvision.models.segmentation")
from typer.testing import CliRunner  # noqa: E402

from edgeseg.cli import app  # noqa: E402
from edgeseg.errors import EdgesegError  # noqa: E402
from edgeseg.models import create_model  # noqa: E402
from edgeseg.models.registry import model_from_weights  # noqa: E402
from edgeseg.models.weights import read_weights  # noqa: E402

torch.set_num_threads(1)


def randomise_batchnorm(net):
    """Random BatchNorm statistics and affine terms: a mapping that swaps two BN layers shows up."""
    for m in net.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-0.2, 0.2)
            m.running_var.uniform_(0.5, 2.0)
            m.weight.data.uniform_(0.5, 1.5)
            m.bias.data.uniform_(-0.2, 0.2)
    return net.eval()


@pytest.fixture(scope="module")
def tv_deeplab50(tmp_path_factory):
    torch.manual_seed(0)
    net = randomise_batchnorm(
        tvseg.deeplabv3_resnet50(weights=None, weights_backbone=None, num_classes=5, aux_loss=True)
    )
    path = tmp_path_factory.mktemp("tv") / "deeplabv3_resnet50.pth"
    torch.save(net.state_dict(), path)
    return net, path


def test_deeplabv3_resnet50_checkpoint_is_the_zoo_deeplabv3_at_stride_8(tv_deeplab50):
    tv_net, path = tv_deeplab50
    net = model_from_weights("deeplabv3", read_weights(path)).eval()
    assert net.edgeseg_kwargs == {"backbone": "resnet50", "output_stride": 8}  # implied by the checkpoint
    assert net.num_classes == 5 and net.edgeseg_weights == "torchvision deeplabv3_resnet50"
    x = torch.rand(2, 3, 61, 83)  # odd sizes: every resize and padding path runs
    with torch.no_grad():
        assert torch.equal(net(x), tv_net(x)["out"])


def test_deeplabv3_resnet101_keys_map_one_to_one(tmp_path):
    """ResNet-101 differs only in depth: every tensor lands at the renamed key with its shape."""
    torch.manual_seed(0)
    tv_net = tvseg.deeplabv3_resnet101(weights=None, weights_backbone=None, num_classes=3)
    path = tmp_path / "r101.pth"
    torch.save(tv_net.state_dict(), path)
    net = model_from_weights("deeplabv3", read_weights(path))
    ours = net.state_dict()
    assert torch.equal(ours["backbone.body.layer3.22.conv2.weight"], tv_net.backbone.layer3[22].conv2.weight)
    assert torch.equal(
        ours["aspp.branches.4.proj.1.running_var"], tv_net.classifier[0].convs[4][2].running_var
    )
    assert torch.equal(ours["classifier.weight"], tv_net.classifier[4].weight)
    assert len(ours) == len(tv_net.state_dict())


def test_explicit_options_that_contradict_the_checkpoint_are_refused(tv_deeplab50):
    _, path = tv_deeplab50
    with pytest.raises(EdgesegError, match="deeplabv3 --backbone resnet50 -o output_stride=8"):
        model_from_weights("deeplabv3", read_weights(path), output_stride=16)
    with pytest.raises(EdgesegError, match=r"\(not fcn8s\)"):
        model_from_weights("fcn8s", read_weights(path), backbone="resnet50")


@pytest.mark.parametrize(
    ("name", "zoo", "why"),
    [
        ("fcn_resnet50", "fcn8s", "3x3 conv head"),
        ("deeplabv3_mobilenet_v3_large", "deeplabv3", "rates 12/24/36 at output stride 16"),
        ("lraspp_mobilenet_v3_large", "deeplabv3", "no LR-ASPP"),
    ],
)
def test_architectures_that_differ_point_to_the_torchvision_route(tmp_path, name, zoo, why):
    torch.manual_seed(0)
    path = tmp_path / f"{name}.pth"
    torch.save(tvseg.__dict__[name](weights=None, weights_backbone=None, num_classes=3).state_dict(), path)
    with pytest.raises(EdgesegError, match=why) as info:
        model_from_weights(zoo, read_weights(path))
    assert f"edgeseg export torchvision:{name} --weights" in str(info.value)
    assert "\n" not in str(info.value)


def test_train_weights_fine_tune_another_label_set(tv_deeplab50):
    """`train --weights tv.pth` (create_model with the data's class count): all but the classifier load."""
    tv_net, path = tv_deeplab50
    net = create_model("deeplabv3", num_classes=7, weights=path)
    assert "classifier re-initialised (5 -> 7 classes)" in net.edgeseg_weights
    assert net.classifier.weight.shape[0] == 7
    assert torch.equal(net.state_dict()["fuse.0.weight"], tv_net.classifier[1].weight)
    assert torch.equal(
        net.state_dict()["backbone.body.layer4.2.bn3.running_mean"],
        tv_net.backbone.layer4[2].bn3.running_mean,
    )


def test_cli_export_of_a_torchvision_checkpoint_into_the_zoo(tv_deeplab50):
    _, path = tv_deeplab50
    r = CliRunner().invoke(
        app,
        ["export", "deeplabv3", "--backbone", "resnet50", "--weights", str(path), "--height", "48",
         "--width", "64", "--parity-scenes", "1", "--json"],
    )  # fmt: skip
    assert r.exit_code == 0, r.output
    data = json.loads(r.output[r.output.index("{") :])
    assert data["parity"]["agreement"] >= 0.999 and data["trt"]["errors"] == []
    assert "torchvision deeplabv3_resnet50" in data["source"]
    from edgeseg.runtime.segmenter import Segmenter

    card = Segmenter(data["path"]).card
    assert card.model_kwargs == {"backbone": "resnet50", "output_stride": 8} and card.num_classes == 5


# ---- mIoU: torchvision's own model vs edgeseg's ONNX through the runtime, on the same frames ----------


def _confusion_miou(preds: list[np.ndarray], masks: list[np.ndarray], n: int) -> float:
    """mIoU over classes present in labels or predictions, written here (not edgeseg's metrics)."""
    cm = np.zeros((n, n), dtype=np.int64)
    for p, m in zip(preds, masks):
        keep = m != 255
        cm += np.bincount(m[keep].astype(np.int64) * n + p[keep], minlength=n * n).reshape(n, n)
    inter = np.diag(cm)
    union = cm.sum(0) + cm.sum(1) - inter
    return float(np.mean(inter[union > 0] / union[union > 0]))


@pytest.fixture(scope="module")
def trained_lraspp(tmp_path_factory):
    """torchvision's LR-ASPP trained briefly on generated street scenes (torch only, no edgeseg code in
    the loop), so its predictions are far from constant."""
    from edgeseg.data.synth import SYNTH_CLASSES, SceneGenerator

    h, w = 64, 128
    gen = SceneGenerator(h, w, seed=5)
    scenes = [gen.scene(i) for i in range(16)]
    mean = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
    x = (torch.from_numpy(np.stack([s[0] for s in scenes])).permute(0, 3, 1, 2).float() / 255 - mean) / std
    y = torch.from_numpy(np.stack([s[1] for s in scenes])).long()
    torch.manual_seed(0)
    net = tvseg.lraspp_mobilenet_v3_large(weights=None, weights_backbone=None, num_classes=len(SYNTH_CLASSES))
    opt = torch.optim.Adam(net.parameters(), lr=1e-2)
    net.train()
    for step in range(60):
        idx = torch.arange(4) + (step * 4) % 16
        loss = torch.nn.functional.cross_entropy(net(x[idx])["out"], y[idx], ignore_index=255)
        opt.zero_grad()
        loss.backward()
        opt.step()
    net.eval()
    path = tmp_path_factory.mktemp("trained") / "lraspp.pth"
    torch.save(net.state_dict(), path)
    return net, path, (h, w), (mean, std)


def test_trained_checkpoint_miou_through_edgeseg_equals_torchvision(trained_lraspp, tmp_path):
    net, path, (h, w), (mean, std) = trained_lraspp
    from edgeseg.data.synth import SYNTH_CLASSES, SceneGenerator

    r = CliRunner().invoke(
        app,
        ["export", "torchvision:lraspp_mobilenet_v3_large", "--weights", str(path), "--height", str(h),
         "--width", str(w), "--parity-scenes", "1", "--classes", str(len(SYNTH_CLASSES)), "--json"],
    )  # fmt: skip
    assert r.exit_code == 0, r.output
    onnx_path = json.loads(r.output[r.output.index("{") :])["path"]

    import cv2

    from edgeseg.runtime.segmenter import Segmenter

    frames = [SceneGenerator(h, w, seed=99).scene(i) for i in range(6)]  # held out, at the input size
    seg = Segmenter(onnx_path)
    ours = [seg.infer(cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR)) for rgb, _ in frames]
    with torch.no_grad():
        batch = (
            torch.from_numpy(np.stack([f[0] for f in frames])).permute(0, 3, 1, 2).float() / 255 - mean
        ) / std
        theirs = list(net(batch)["out"].argmax(1).numpy().astype(np.uint8))
    masks = [m for _, m in frames]
    n = len(SYNTH_CLASSES)
    miou_tv, miou_edgeseg = _confusion_miou(theirs, masks, n), _confusion_miou(ours, masks, n)
    majority = np.bincount(np.concatenate([m[m != 255] for m in masks])).argmax()
    constant = _confusion_miou([np.full_like(m, majority) for m in masks], masks, n)
    assert miou_tv > 2 * constant  # trained: clearly better than the majority class everywhere
    assert abs(miou_edgeseg - miou_tv) < 1e-3, (miou_edgeseg, miou_tv)
    agreement = np.mean([np.mean(a == b) for a, b in zip(ours, theirs)])
    assert agreement >= 0.999


@pytest.mark.slow
def test_cli_train_starts_from_a_torchvision_checkpoint(tv_deeplab50, _isolated_workdir):
    _, path = tv_deeplab50
    r = CliRunner().invoke(
        app,
        ["train", "deeplabv3", "--data", "synth:4", "--epochs", "1", "--height", "32", "--width", "48",
         "--batch-size", "2", "--val-limit", "2", "--weights", str(path)],
    )  # fmt: skip
    assert r.exit_code == 0, r.output
    assert "torchvision deeplabv3_resnet50, classifier re-initialised (5 -> 8 classes)" in " ".join(
        r.output.split()
    )
    from edgeseg.checkpoint import load_checkpoint
    from edgeseg.workspace import newest_checkpoint

    card = load_checkpoint(newest_checkpoint(_isolated_workdir, "deeplabv3"))["card"]
    assert card.model_kwargs == {"backbone": "resnet50", "output_stride": 8}
