"""Every model exports to ONNX (opset 17, TorchScript exporter) and ONNX Runtime matches PyTorch.

Exported with dynamic H/W and checked at the export size and at a different odd size, so the
crop/resize paths are proven to be traced generically rather than baked in for one shape.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
ort = pytest.importorskip("onnxruntime")

from edgeseg.models import create_model, get_spec, list_models  # noqa: E402

torch.set_num_threads(1)
pytestmark = pytest.mark.filterwarnings("ignore:You are using the legacy TorchScript:DeprecationWarning")

LIGHT = ("mobilenet_v3_large", "efficientnet_lite0", "resnet18")


def _light(name: str) -> str | None:
    spec = get_spec(name)
    return next((bb for bb in LIGHT if bb in spec.backbones), spec.default_backbone)


def _export(model, path: Path, hw: tuple[int, int]) -> None:
    x = torch.randn(1, 3, *hw)
    torch.onnx.export(
        model,
        x,
        str(path),
        opset_version=17,
        dynamo=False,
        input_names=["input"],
        output_names=["logits"],
        dynamic_axes={"input": {0: "N", 2: "H", 3: "W"}, "logits": {0: "N", 2: "H", 3: "W"}},
    )


def _compare(model, session, hw: tuple[int, int], seed: int) -> None:
    x = torch.from_numpy(np.random.default_rng(seed).normal(size=(1, 3, *hw)).astype(np.float32))
    with torch.no_grad():
        ref = model(x).numpy()
    (out,) = session.run(None, {"input": x.numpy()})
    assert out.shape == ref.shape == (1, model.num_classes, *hw)
    scale = max(1.0, float(np.abs(ref).max()))
    assert float(np.abs(out - ref).max()) < 1e-3 * scale
    agree = float((out.argmax(1) == ref.argmax(1)).mean())
    assert agree >= 0.999


def _check(name: str, backbone: str | None, tmp_path: Path, sizes=((48, 64), (37, 53))) -> None:
    torch.manual_seed(0)
    model = create_model(name, num_classes=4, backbone=backbone).eval()
    path = tmp_path / f"{name}.onnx"
    _export(model, path, sizes[0])
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    session = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
    for i, hw in enumerate(sizes):
        _compare(model, session, hw, seed=i)


@pytest.mark.parametrize("name", list_models(builtin_only=True))
def test_every_model_exports_and_onnxruntime_matches(name, tmp_path):
    _check(name, _light(name), tmp_path)


@pytest.mark.parametrize("name", ["deeplabv3plus", "fpn"])
def test_pooling_and_resize_export_in_the_engine_friendly_form(name, tmp_path):
    """Image pooling -> GlobalAveragePool; every Resize takes `sizes` (not scales); bilinear is half_pixel."""
    import onnx
    from onnx import helper

    model = create_model(name, num_classes=3, backbone="resnet18").eval()
    path = tmp_path / "m.onnx"
    _export(model, path, (40, 56))
    nodes = onnx.load(str(path)).graph.node
    resizes = [n for n in nodes if n.op_type == "Resize"]
    assert resizes
    for node in resizes:
        attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
        assert len(node.input) == 4 and node.input[3] and not node.input[2]  # sizes, no scales
        if attrs["mode"] == b"linear":
            assert attrs["coordinate_transformation_mode"] == b"half_pixel"  # align_corners=False
    if name == "deeplabv3plus":
        assert any(n.op_type == "GlobalAveragePool" for n in nodes)


@pytest.mark.slow
@pytest.mark.parametrize(
    ("name", "backbone"),
    [
        ("fcn8s", "vgg16"),
        ("deeplabv3plus", "resnet101"),
        ("deeplabv3plus", "xception65"),
        ("deeplabv2", "resnet101"),
        ("deeplabv2", "vgg16"),
        ("denseaspp", "densenet121"),
        ("unet", "resnet34"),
    ],
)
def test_heavy_backbones_export(name, backbone, tmp_path):
    _check(name, backbone, tmp_path, sizes=((64, 80), (45, 71)))
