"""Model zoo: registry, shapes at odd sizes, gradients, published parameter counts, bilinear init."""

from __future__ import annotations

import math

import pytest

torch = pytest.importorskip("torch")
import torch.nn.functional as F  # noqa: E402
from torch import nn  # noqa: E402

from edgeseg.errors import EdgesegError  # noqa: E402
from edgeseg.models import create_model, get_spec, list_models  # noqa: E402

torch.set_num_threads(1)

ALL_MODELS = [
    "fcn32s",
    "fcn16s",
    "fcn8s",
    "fcn8s_lite",
    "deeplabv3plus",
    "deeplabv3",
    "deeplabv2",
    "fpn",
    "denseaspp",
    "unet",
]
HEAVY = {"vgg16", "resnet50", "resnet101", "densenet121", "classic"}


def light(name: str) -> str | None:
    """The cheapest backbone of a model (keeps default tests fast on 2 cores)."""
    spec = get_spec(name)
    for bb in ("mobilenet_v3_large", "efficientnet_lite0", "resnet18"):
        if bb in spec.backbones:
            return bb
    return spec.default_backbone


def combos(heavy: bool) -> list:
    out = []
    for name in list_models(builtin_only=True):
        for bb in get_spec(name).backbones or (None,):
            if (bb in HEAVY) == heavy:
                out.append(pytest.param(name, bb, id=f"{name}-{bb}"))
    return out


def n_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def test_registry_lists_every_model():
    assert list_models(builtin_only=True) == ALL_MODELS
    assert list_models()[: len(ALL_MODELS)] == ALL_MODELS  # user-registered models come after


def test_user_registered_model_goes_through_the_same_path():
    from edgeseg.models import register_model
    from edgeseg.models.registry import _REGISTRY

    def tiny(num_classes: int, width: int = 4) -> nn.Module:
        return nn.Sequential(nn.Conv2d(3, width, 3, padding=1), nn.ReLU(), nn.Conv2d(width, num_classes, 1))

    register_model("test_tiny_zoo")(tiny)
    try:
        model = create_model("test_tiny_zoo", num_classes=2, width=3)
        assert model.edgeseg_kwargs == {"width": 3} and model(torch.zeros(1, 3, 5, 7)).shape == (1, 2, 5, 7)
        assert "test_tiny_zoo" in list_models() and "test_tiny_zoo" not in list_models(builtin_only=True)
        with pytest.raises(EdgesegError, match="takes no backbone"):
            create_model("test_tiny_zoo", backbone="resnet18")
        with pytest.raises(ValueError, match="registered twice"):
            register_model("test_tiny_zoo")(tiny)
    finally:
        del _REGISTRY["test_tiny_zoo"]


def test_unknown_model_lists_valid_names_and_closest():
    with pytest.raises(EdgesegError) as exc:
        create_model("fcn8", num_classes=3)
    msg = str(exc.value)
    assert "'fcn8s'" in msg and all(name in msg for name in ALL_MODELS) and "\n" not in msg


def test_unknown_backbone_and_option_and_stride_rejected():
    with pytest.raises(EdgesegError, match="valid: .*resnet50"):
        create_model("deeplabv3plus", backbone="resnet5")
    with pytest.raises(EdgesegError, match="did you mean 'resnet50'"):
        create_model("deeplabv3plus", backbone="resnet5")
    with pytest.raises(EdgesegError, match="no option 'outputstride'"):
        create_model("deeplabv3plus", outputstride=8)
    with pytest.raises(EdgesegError, match="output stride 16/8"):
        create_model("deeplabv3plus", output_stride=32)
    with pytest.raises(EdgesegError, match="takes no backbone"):
        create_model("fcn8s_lite", backbone="resnet18")
    with pytest.raises(EdgesegError, match="num_classes"):
        create_model("fcn8s", num_classes=0)


def test_resolved_kwargs_rebuild_the_same_architecture():
    m = create_model("deeplabv3plus", num_classes=4, backbone="resnet18", output_stride=8)
    assert m.edgeseg_kwargs == {"backbone": "resnet18", "output_stride": 8}
    again = create_model(m.edgeseg_name, num_classes=4, **m.edgeseg_kwargs)
    assert [k for k in again.state_dict()] == [k for k in m.state_dict()]


@pytest.mark.parametrize(("name", "backbone"), combos(heavy=False))
def test_forward_odd_size_every_light_combo(name, backbone):
    model = create_model(name, num_classes=5, backbone=backbone).eval()
    with torch.no_grad():
        y = model(torch.randn(2, 3, 37, 61))
    assert isinstance(y, torch.Tensor) and y.shape == (2, 5, 37, 61)
    assert torch.isfinite(y).all()


@pytest.mark.parametrize("name", ALL_MODELS)
def test_forward_250x333_every_model(name):
    model = create_model(name, num_classes=7, backbone=light(name)).eval()
    with torch.no_grad():
        y = model(torch.randn(1, 3, 250, 333))
    assert y.shape == (1, 7, 250, 333)


@pytest.mark.slow
@pytest.mark.parametrize(("name", "backbone"), combos(heavy=True))
def test_forward_250x333_heavy_backbones(name, backbone):
    model = create_model(name, num_classes=3, backbone=backbone).eval()
    with torch.no_grad():
        y = model(torch.randn(1, 3, 250, 333))
    assert y.shape == (1, 3, 250, 333)


@pytest.mark.parametrize("name", ALL_MODELS)
def test_gradients_reach_first_layer(name):
    torch.manual_seed(0)
    model = create_model(name, num_classes=3, backbone=light(name)).train()
    x = torch.randn(2, 3, 45, 53)  # batch 2: the ASPP image-pooling BatchNorm needs > 1 value
    target = torch.randint(0, 3, (2, 45, 53))
    F.cross_entropy(model(x), target).backward()
    first = next(m for m in model.modules() if isinstance(m, nn.Conv2d))
    assert first.weight.grad is not None
    assert torch.isfinite(first.weight.grad).all() and first.weight.grad.abs().sum() > 0


def test_eval_output_is_deterministic_and_has_no_aux():
    model = create_model("deeplabv3plus", num_classes=3, backbone="resnet18").eval()
    x = torch.randn(1, 3, 33, 47)
    with torch.no_grad():
        assert torch.equal(model(x), model(x))


def test_fcn8s_vgg16_parameter_count_matches_long_et_al():
    """FCN-8s/VGG16, 21 classes (Caffe voc-fcn8s): VGG16 convs + fc6/fc7 as convs + scores + deconvs."""
    with torch.device("meta"):
        model = create_model("fcn8s", num_classes=21, backbone="vgg16")
    c = 21
    vgg_convs = sum(
        cin * cout * 9 + cout
        for cin, cout in [(3, 64), (64, 64), (64, 128), (128, 128), (128, 256), (256, 256), (256, 256),
                          (256, 512), (512, 512), (512, 512), (512, 512), (512, 512), (512, 512)]
    )  # fmt: skip
    fc6 = 512 * 7 * 7 * 4096 + 4096
    fc7 = 4096 * 4096 + 4096
    scores = (4096 * c + c) + (512 * c + c) + (256 * c + c)  # score_fr, score_pool4, score_pool3
    deconvs = c * c * 4 * 4 + c * c * 4 * 4 + c * c * 16 * 16  # upscore2, upscore_pool4, upscore8 (no bias)
    expected = vgg_convs + fc6 + fc7 + scores + deconvs
    assert n_params(model) == expected
    assert 134.0e6 < expected < 135.0e6  # "about 134M" in the paper


def test_deeplabv3_resnet101_matches_torchvision_reference():
    """torchvision's deeplabv3_resnet101 (no aux head) is an independent implementation of the paper."""
    tvseg = pytest.importorskip("torchvision.models.segmentation")
    with torch.device("meta"):
        ours = create_model("deeplabv3", num_classes=21, backbone="resnet101", output_stride=8)
        ref = tvseg.deeplabv3_resnet101(weights=None, weights_backbone=None, num_classes=21, aux_loss=False)
    assert n_params(ours) == n_params(ref)


def test_deeplabv3plus_resnet101_parameter_count():
    """DeepLabV3+ (Chen et al. 2018) with ResNet-101: torchvision's trunk + the paper's head, counted by hand.

    Trunk = torchvision resnet101 minus its 1000-way fc. ASPP: 1x1, three 3x3 atrous and image-pooling
    branches to 256 (conv without bias + BN), 1x1 fusion 5*256 -> 256 + BN. Decoder: 1x1 256 -> 48 + BN on
    the stride-4 features, 3x3 (256+48) -> 256 + BN, 3x3 256 -> 256 + BN, 1x1 classifier with bias.
    """
    tvm = pytest.importorskip("torchvision.models")
    with torch.device("meta"):
        ours = create_model("deeplabv3plus", num_classes=21, backbone="resnet101")
        trunk = n_params(tvm.resnet101(weights=None)) - (2048 * 1000 + 1000)
    bn = 2
    aspp = (2048 * 256 + bn * 256) + 3 * (2048 * 256 * 9 + bn * 256) + (2048 * 256 + bn * 256)
    aspp += 5 * 256 * 256 + bn * 256
    decoder = (256 * 48 + bn * 48) + (304 * 256 * 9 + bn * 256) + (256 * 256 * 9 + bn * 256) + (256 * 21 + 21)
    assert n_params(ours) == trunk + aspp + decoder
    assert 59.0e6 < n_params(ours) < 59.7e6


def test_deeplabv2_resnet101_parameter_count_is_the_paper_aspp_l():
    """DeepLabV2-ResNet-101: torchvision's trunk + ASPP-L, four 3x3 atrous convs 2048 -> classes with bias
    (the released fc1_c0..c3); nothing else (no BN, no 1x1 fusion: the scores are summed)."""
    tvm = pytest.importorskip("torchvision.models")
    with torch.device("meta"):
        ours = create_model("deeplabv2", num_classes=21)
        trunk = n_params(tvm.resnet101(weights=None)) - (2048 * 1000 + 1000)
    assert ours.edgeseg_kwargs == {"backbone": "resnet101", "output_stride": 8}
    assert n_params(ours) == trunk + 4 * (2048 * 9 * 21 + 21)


def test_deeplabv2_vgg16_branches_are_fc6_fc7_fc8():
    """VGG-16 DeepLab-ASPP-L (Fig. 4b): per branch 3x3 atrous fc6 to 1024, 1x1 fc7 1024, 1x1 fc8 to classes."""
    with torch.device("meta"):
        model = create_model("deeplabv2", num_classes=21, backbone="vgg16")
    vgg_convs = n_params(model.backbone)
    branch = (512 * 9 * 1024 + 1024) + (1024 * 1024 + 1024) + (1024 * 21 + 21)
    assert n_params(model) == vgg_convs + 4 * branch
    rates = [b[0].dilation[0] for b in model.aspp.branches]
    assert rates == [6, 12, 18, 24] and all(b[0].padding[0] == b[0].dilation[0] for b in model.aspp.branches)


def test_deeplabv2_sums_four_atrous_class_scores_and_upsamples_bilinearly():
    """The output is the bilinear resize of the sum of the branch scores on the stride-8 features."""
    torch.manual_seed(0)
    model = create_model("deeplabv2", num_classes=3, backbone="resnet18").eval()
    assert [(c.dilation[0], c.out_channels, c.bias is not None) for c in model.aspp.branches] == [
        (6, 3, True), (12, 3, True), (18, 3, True), (24, 3, True)
    ]  # fmt: skip
    x = torch.randn(1, 3, 41, 67)
    with torch.no_grad():
        feats = model.backbone(x)[-1]
        summed = sum(branch(feats) for branch in model.aspp.branches)
        out = model(x)
    assert feats.shape[-2:] == (6, 9)  # ceil(41/8), ceil(67/8): output stride 8
    ref = F.interpolate(summed, size=(41, 67), mode="bilinear", align_corners=False)
    assert out.shape == (1, 3, 41, 67) and torch.allclose(out, ref, atol=1e-6)
    with torch.device("meta"):
        coarse = create_model("deeplabv2", num_classes=3, backbone="resnet18", output_stride=16)
    assert [c.dilation[0] for c in coarse.aspp.branches] == [3, 6, 9, 12]  # same field of view in pixels


def test_vgg16_at_output_stride_8_dilates_conv5_only():
    """DeepLab's VGG-16: pool4/pool5 no longer downsample, conv4 keeps rate 1, conv5 gets rate 2."""
    from edgeseg.models.backbones import Backbone

    with torch.device("meta"):
        bb = Backbone("vgg16", output_stride=8)
        feats = bb(torch.empty(1, 3, 64, 96))
    convs = {int(n.split(".")[1]): m for n, m in bb.body.named_modules() if isinstance(m, nn.Conv2d)}
    assert {i: c.dilation[0] for i, c in convs.items() if i >= 17} == {
        17: 1, 19: 1, 21: 1, 24: 2, 26: 2, 28: 2
    }  # fmt: skip
    assert [tuple(f.shape[-2:]) for f in feats] == [(32, 48), (16, 24), (8, 12), (8, 12), (8, 12)]


def test_xception65_strided_block_keeps_the_previous_rate():
    """As DeepLab's own Xception: the unit that would downsample runs whole at the previous rate (its first
    two separable convs see the pre-stride resolution), the units after it at the doubled rate."""
    from edgeseg.models.backbones import Backbone

    with torch.device("meta"):
        bb = Backbone("xception65", output_stride=16)
    rates = [[sep[0].dilation[0] for sep in block.convs] for block in bb.body.exit]
    assert rates == [[1, 1, 1], [2, 2, 2]]


@pytest.mark.parametrize("factor", [2, 4, 8, 16, 32])
def test_bilinear_init_reproduces_interpolate(factor):
    from edgeseg.models.layers import BilinearUp

    yy, xx = torch.meshgrid(torch.linspace(0, 1, 9), torch.linspace(0, 1, 11), indexing="ij")
    smooth = torch.stack([torch.sin(3 * yy + 2 * xx), torch.cos(2 * yy - xx), yy * xx])[None]
    ref = F.interpolate(smooth, scale_factor=factor, mode="bilinear", align_corners=False)
    with torch.no_grad():
        out = BilinearUp(3, factor)(smooth, ref)
        dw = BilinearUp(3, factor, depthwise=True)(smooth, ref)
    assert out.shape == ref.shape
    m = factor  # interior: the transposed conv zero-pads where interpolate clamps at the border
    assert torch.allclose(out[..., m:-m, m:-m], ref[..., m:-m, m:-m], atol=1e-5)
    assert torch.allclose(dw[..., m:-m, m:-m], ref[..., m:-m, m:-m], atol=1e-5)


def test_fcn_upsampling_layers_start_bilinear_and_skips_start_at_zero():
    from edgeseg.models.layers import bilinear_kernel

    model = create_model("fcn8s", num_classes=4, backbone="resnet18")
    for up, f in [(model.up_skip[0], 2), (model.up_skip[1], 2), (model.up_final, 8)]:
        k = 2 * f - f % 2
        assert (
            up.up.kernel_size == (k, k)
            and up.up.stride == (f, f)
            and up.up.padding == (math.ceil((f - 1) / 2),) * 2
        )
        assert torch.equal(up.up.weight, bilinear_kernel(4, 4, k))
    assert all(s.weight.abs().sum() == 0 and s.bias.abs().sum() == 0 for s in model.score_skip)


@pytest.mark.parametrize(("output_stride", "dilate"), [(16, [False, False, True]), (8, [False, True, True])])
def test_generic_dilation_matches_torchvision_resnet(output_stride, dilate):
    """The one atrous surgery used for every trunk equals torchvision's replace_stride_with_dilation."""
    tvm = pytest.importorskip("torchvision.models")
    from edgeseg.models.backbones import Backbone

    ours = Backbone("resnet50", output_stride=output_stride).eval()
    ref = tvm.resnet50(weights=None, replace_stride_with_dilation=dilate).eval()
    ours.body.load_state_dict({k: v for k, v in ref.state_dict().items() if not k.startswith("fc.")})
    x = torch.randn(1, 3, 41, 57)
    with torch.no_grad():
        y = ref.layer4(ref.layer3(ref.layer2(ref.layer1(ref.maxpool(ref.relu(ref.bn1(ref.conv1(x))))))))
        feats = ours(x)
    assert torch.allclose(feats[-1], y, atol=1e-5)
    assert ours.strides == [2, 4, 8, min(16, output_stride), output_stride]


@pytest.mark.parametrize(
    "backbone", ["resnet18", "mobilenet_v3_large", "efficientnet_lite0", "vgg16", "densenet121", "xception65"]
)
def test_backbone_stage_channels_and_strides_match_table(backbone):
    from edgeseg.models.backbones import BACKBONES, Backbone

    with torch.device("meta"):
        bb = Backbone(backbone)
        feats = bb(torch.empty(1, 3, 64, 96))
    assert [f.shape[1] for f in feats] == list(BACKBONES[backbone].channels)
    assert [f.shape[2] for f in feats] == [64 // s for s in (2, 4, 8, 16, 32)]


def test_string_options_from_the_command_line_are_coerced():
    m = create_model("deeplabv3", num_classes=2, backbone="resnet18", output_stride="8")
    assert m.edgeseg_kwargs == {"backbone": "resnet18", "output_stride": 8}
    assert create_model("fcn8s_lite", num_classes=2, width="0.25").edgeseg_kwargs == {"width": 0.25}
    with pytest.raises(EdgesegError, match="width='wide' is not a valid float"):
        create_model("fcn8s_lite", width="wide")


def test_deeplab_batch_of_one_in_training_is_a_clear_error():
    model = create_model("deeplabv3plus", num_classes=2, backbone="resnet18").train()
    with pytest.raises(EdgesegError, match="batch size >= 2"):
        model(torch.randn(1, 3, 32, 32))
    model.eval()
    assert model(torch.randn(1, 3, 32, 32)).shape == (1, 2, 32, 32)


@pytest.mark.parametrize("hw", [(1, 1), (17, 23), (33, 2)])
def test_tiny_inputs_still_give_input_sized_logits(hw):
    for name in ALL_MODELS:
        model = create_model(name, num_classes=2, backbone=light(name)).eval()
        with torch.no_grad():
            assert model(torch.randn(1, 3, *hw)).shape == (1, 2, *hw)


def test_aligned_xception65_has_65_layers():
    """Xception-65: 2 stem convs + 63 separable convs (entry 3x3, middle 16x3, exit 3+3)."""
    from edgeseg.models.xception import SepConv, xception65

    with torch.device("meta"):
        net = xception65()
    sep = sum(isinstance(m, SepConv) for m in net.modules())
    stem = sum(isinstance(m, nn.Conv2d) for m in net.stem)
    assert (stem, sep) == (2, 63)
    assert (
        sum(m.stride == (2, 2) for m in net.modules() if isinstance(m, nn.Conv2d) and m.kernel_size == (3, 3))
        == 5
    )


@pytest.mark.parametrize(
    "backbone", ["vgg16", "resnet50", "mobilenet_v3_large", "densenet121", "efficientnet_lite0"]
)
def test_every_trunk_parameter_is_used(backbone):
    """The stage table covers the whole trunk (no dead weights: DDP and --weights both rely on it)."""
    from edgeseg.models.backbones import Backbone

    with torch.device("meta"):
        bb = Backbone(backbone, output_stride=16)
        called: set[str] = set()
        hooks = [
            m.register_forward_hook(lambda mod, i, o, n=name: called.add(n))
            for name, m in bb.body.named_modules()
            if any(True for _ in m.parameters(recurse=False))
        ]
        bb(torch.empty(1, 3, 64, 64))
    for h in hooks:
        h.remove()
    unused = {
        n for n, m in bb.body.named_modules() if any(True for _ in m.parameters(recurse=False))
    } - called
    assert not unused


def test_compact_unet_is_plain_convs_scoring_at_stride_2():
    model = create_model("unet", num_classes=8, backbone="compact").eval()
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    assert convs and all(c.groups == 1 for c in convs)  # no depthwise: INT8 kernels apply everywhere
    seen = {}

    def record(module, inputs, output) -> None:
        seen["hw"] = tuple(output.shape[-2:])

    model.classifier.register_forward_hook(record)
    with torch.no_grad():
        out = model(torch.zeros(1, 3, 64, 96))
    assert tuple(out.shape) == (1, 8, 64, 96) and seen["hw"] == (32, 48)
    half = create_model("unet", num_classes=8, backbone="compact", width=0.5)
    assert n_params(half) < n_params(model) / 3
    with pytest.raises(EdgesegError, match="option 'width' applies to backbone compact only, not 'classic'"):
        create_model("unet", num_classes=8, backbone="classic", width=0.5)
