"""Bring your own model: each import route through `edgeseg export` with real libraries (torchvision,
segmentation_models_pytorch, transformers) on tiny random-init nets: PyTorch vs ONNX Runtime parity
>= 99.9%, the TensorRT op report, the card, and the one-line errors."""

from __future__ import annotations

import json
import sys
import textwrap

import pytest

torch = pytest.importorskip("torch")
from typer.testing import CliRunner  # noqa: E402

from edgeseg.cli import app  # noqa: E402
from edgeseg.runtime.segmenter import Segmenter  # noqa: E402

torch.set_num_threads(1)
SIZE = ["--height", "64", "--width", "96", "--parity-scenes", "2"]
SMALL_UNET = ["-o", "encoder_depth=3", "-o", "decoder_channels=[16,8,4]"]


def export(*args: str) -> dict:
    r = CliRunner().invoke(app, ["export", *args, "--json"])
    assert r.exit_code == 0, r.output
    return json.loads(r.output[r.output.index("{") :])


def one_line_error(*args: str) -> str:
    r = CliRunner().invoke(app, ["export", *args])
    assert r.exit_code == 2, r.output
    assert "Traceback" not in r.output
    lines = [ln for ln in r.output.strip().splitlines() if ln.strip()]
    assert lines[-1].startswith("error:"), r.output
    return lines[-1]


def assert_exported(data: dict, num_classes: int) -> Segmenter:
    """Parity passed at >= 99.9%, TensorRT would parse every op, and the runtime reads the card."""
    assert data["written"]
    assert data["parity"]["passed"] and data["parity"]["agreement"] >= 0.999
    assert data["trt"]["errors"] == []
    seg = Segmenter(data["path"])
    assert len(seg.classes) == num_classes
    assert seg.card.input_size == (64, 96)
    return seg


@pytest.fixture(scope="module")
def tv_files(tmp_path_factory):
    """torchvision's own mobilenet segmentation nets, random init (with random BatchNorm statistics so
    the outputs vary), saved as plain state_dicts the way users save them."""
    from torchvision.models.segmentation import deeplabv3_mobilenet_v3_large, lraspp_mobilenet_v3_large

    root = tmp_path_factory.mktemp("tv")
    torch.manual_seed(0)
    files = {}
    for name, net in (
        ("lraspp", lraspp_mobilenet_v3_large(weights=None, weights_backbone=None, num_classes=5)),
        (
            "deeplab_mb",
            deeplabv3_mobilenet_v3_large(weights=None, weights_backbone=None, num_classes=4, aux_loss=True),
        ),
    ):
        for m in net.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.uniform_(-0.2, 0.2)
                m.running_var.uniform_(0.5, 2.0)
        files[name] = root / f"{name}.pth"
        torch.save(net.state_dict(), files[name])
    return files


def test_torchvision_lraspp_reads_classes_from_weights(tv_files):
    data = export("torchvision:lraspp_mobilenet_v3_large", "--weights", str(tv_files["lraspp"]), *SIZE)
    seg = assert_exported(data, 5)
    assert data["model"] == "lraspp_mobilenet_v3_large"
    assert seg.classes == [f"class_{i}" for i in range(5)]  # 5 != torchvision's 21 VOC categories
    assert seg.card.extra["import"]["spec"] == "torchvision:lraspp_mobilenet_v3_large"
    assert "random_weights" not in seg.card.extra and seg.card.checkpoint_sha256


def test_torchvision_deeplab_with_aux_head_and_class_names(tv_files, tmp_path):
    names = tmp_path / "names.txt"
    names.write_text("road\nsky 70 130 180\ncar\ntree\n")
    data = export(
        "torchvision:deeplabv3_mobilenet_v3_large",
        "--weights",
        str(tv_files["deeplab_mb"]),
        "--classes",
        str(names),
        *SIZE,
    )
    seg = assert_exported(data, 4)
    assert seg.classes == ["road", "sky", "car", "tree"]
    assert seg.card.palette[1] == (70, 130, 180)
    assert seg.card.extra["import"]["aux_head"] is True
    assert data["io"]["outputs"]["logits"] == [1, 4, 64, 96]  # the dict's "out", not the aux head


def test_torchvision_errors_are_one_line(tv_files, tmp_path):
    lraspp = str(tv_files["lraspp"])
    line = one_line_error("torchvision:deeplabv3_mobilenet_v3_large", "--weights", lraspp)
    assert "is torchvision's lraspp_mobilenet_v3_large" in line
    assert "did you mean 'fcn_resnet50'" in one_line_error("torchvision:fcn_resnet5")
    state = torch.load(lraspp, weights_only=True)
    state["classifier.cbr.0.weight"] = torch.zeros(8, 960, 1, 1)
    del state["backbone.0.0.weight"]
    bad = tmp_path / "bad.pth"
    torch.save(state, bad)
    line = one_line_error("torchvision:lraspp_mobilenet_v3_large", "--weights", str(bad))
    assert "does not fit torchvision's lraspp_mobilenet_v3_large" in line
    assert "'classifier.cbr.0.weight' has shape (8, 960, 1, 1), the model (128, 960, 1, 1)" in line
    assert "missing 'backbone.0.0.weight'" in line


def test_unsafe_pickle_is_refused_without_suggesting_weights_only_false(tmp_path):
    from torchvision.models.segmentation import lraspp_mobilenet_v3_large

    whole = tmp_path / "whole_model.pt"
    torch.save(lraspp_mobilenet_v3_large(weights=None, weights_backbone=None, num_classes=2), whole)
    line = one_line_error("torchvision:lraspp_mobilenet_v3_large", "--weights", str(whole))
    assert "not a plain weights file" in line and "state_dict" in line
    assert "weights_only" not in line


def test_safetensors_weights_are_read(tv_files, tmp_path):
    from safetensors.torch import save_file

    state = torch.load(tv_files["lraspp"], weights_only=True)
    path = tmp_path / "lraspp.safetensors"
    save_file({k: v.contiguous() for k, v in state.items()}, str(path))
    data = export("torchvision:lraspp_mobilenet_v3_large", "--weights", str(path), *SIZE)
    assert_exported(data, 5)


@pytest.fixture(scope="module")
def smp_file(tmp_path_factory):
    smp = pytest.importorskip("segmentation_models_pytorch")
    torch.manual_seed(0)
    net = smp.Unet(
        "mobilenet_v2", encoder_weights=None, encoder_depth=3, decoder_channels=(16, 8, 4), classes=3
    )
    path = tmp_path_factory.mktemp("smp") / "unet.pth"
    torch.save({"state_dict": net.state_dict()}, path)  # the common {"state_dict": ...} wrapper
    return path


def test_smp_unet_with_encoder_and_options(smp_file):
    data = export(
        "smp:Unet",
        "--encoder",
        "mobilenet_v2",
        *SMALL_UNET,
        "--weights",
        str(smp_file),
        *SIZE,
    )
    seg = assert_exported(data, 3)
    assert data["model"] == "smp_unet_mobilenet_v2"
    assert seg.card.extra["import"]["encoder"] == "mobilenet_v2"


def test_smp_encoder_as_option_is_the_same_and_errors_are_one_line(smp_file):
    data = export(
        "smp:unet",
        "-o",
        "encoder_name=mobilenet_v2",
        *SMALL_UNET,
        "--weights",
        str(smp_file),
        *SIZE,
    )
    assert data["parity"]["passed"] and data["model"] == "smp_unet_mobilenet_v2"
    assert "did you mean 'Unet'" in one_line_error("smp:Unett")
    assert "did you mean 'decoder_channels'" in one_line_error("smp:Unet", "-o", "decoder_chanels=[8]")
    assert "never downloads" in one_line_error("smp:Unet", "-o", "encoder_weights=imagenet")
    assert "no encoder 'resnet19'" in one_line_error("smp:Unet", "--encoder", "resnet19")
    line = one_line_error("smp:Unet", "--encoder", "resnet18", "--weights", str(smp_file))
    assert "does not fit smp Unet (resnet18)" in line or "holds no segmentation head" in line


@pytest.fixture(scope="module")
def segformer_folder(tmp_path_factory):
    transformers = pytest.importorskip("transformers")
    cfg = transformers.SegformerConfig(
        num_encoder_blocks=2,
        depths=[1, 1],
        sr_ratios=[2, 1],
        hidden_sizes=[8, 16],
        patch_sizes=[7, 3],
        strides=[4, 2],
        num_attention_heads=[1, 1],
        mlp_ratios=[2, 2],
        decoder_hidden_size=16,
        num_labels=4,
        id2label={0: "road", 1: "sky", 2: "car", 3: "tree"},
        label2id={"road": 0, "sky": 1, "car": 2, "tree": 3},
    )
    torch.manual_seed(0)
    folder = tmp_path_factory.mktemp("hf") / "tiny-segformer"
    transformers.SegformerForSemanticSegmentation(cfg).save_pretrained(folder)
    return folder


def test_hf_segformer_folder_full_size_logits_and_id2label(segformer_folder):
    assert (segformer_folder / "model.safetensors").is_file()
    data = export(f"hf:{segformer_folder}", *SIZE)
    seg = assert_exported(data, 4)
    assert seg.classes == ["road", "sky", "car", "tree"]
    assert data["io"]["outputs"]["logits"] == [1, 4, 64, 96]  # upsampled from SegFormer's 1/4 map
    assert data["model"] == "tiny-segformer"


def test_hf_errors_are_one_line(segformer_folder, tmp_path):
    assert "no config.json" in one_line_error(f"hf:{tmp_path}")
    other = tmp_path / "bert"
    other.mkdir()
    (other / "config.json").write_text('{"model_type": "bert"}')
    assert "'bert' model" in one_line_error(f"hf:{other}")
    assert "drop --weights" in one_line_error(f"hf:{segformer_folder}", "--weights", "w.pt")


def test_python_callable_with_options_and_dict_output(tmp_path, monkeypatch):
    pkg = tmp_path / "byom_nets_a"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "nets.py").write_text(
        textwrap.dedent(
            """
            from torch import nn

            class Net(nn.Module):
                def __init__(self, width, classes):
                    super().__init__()
                    self.body = nn.Sequential(nn.Conv2d(3, width, 3, padding=1), nn.BatchNorm2d(width),
                                              nn.ReLU(), nn.Conv2d(width, classes, 1))

                def forward(self, x):
                    return {"out": self.body(x), "aux": x}

            def build_net(width=8, classes=3):
                return Net(width, classes)
            """
        )
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    import byom_nets_a.nets as nets

    torch.manual_seed(0)
    weights = tmp_path / "w.pth"
    torch.save(nets.build_net(width=4, classes=5).state_dict(), weights)
    sys.path.remove(str(tmp_path))  # the route itself must find the package in the current directory
    for mod in ("byom_nets_a", "byom_nets_a.nets"):
        monkeypatch.delitem(sys.modules, mod)
    monkeypatch.chdir(tmp_path)
    data = export(
        "python:byom_nets_a.nets:build_net",
        "-o",
        "width=4",
        "-o",
        "classes=5",
        "--weights",
        str(weights),
        *SIZE,
    )
    seg = assert_exported(data, 5)
    assert seg.card.extra["import"]["options"] == {"width": 4, "classes": 5}
    line = one_line_error("python:byom_nets_a.nets:build_net", "-o", "widht=4")
    assert "takes no argument 'widht'; it takes: width, classes" in line
    assert "does not fit" in one_line_error(
        "python:byom_nets_a.nets:build_net", "--weights", str(weights), *SIZE
    )  # width 8 / 3 classes by default: the weights do not fit
    assert "cannot import" in one_line_error("python:no_such_module_xyz:build")


def test_missing_optional_library_names_the_extra(monkeypatch, segformer_folder):
    monkeypatch.setitem(sys.modules, "segmentation_models_pytorch", None)  # import raises ImportError
    monkeypatch.setitem(sys.modules, "transformers", None)
    assert "pip install 'edgeseg[smp]'" in one_line_error("smp:Unet")
    assert "pip install 'edgeseg[hf]'" in one_line_error(f"hf:{segformer_folder}")


def test_random_import_gets_street_classes_and_a_loud_warning():
    r = CliRunner().invoke(app, ["export", "torchvision:lraspp_mobilenet_v3_large", *SIZE])
    assert r.exit_code == 0, r.output
    assert "NO TRAINED WEIGHTS" in r.output and "--weights" in r.output
    from edgeseg.data.synth import SYNTH_CLASSES
    from edgeseg.workspace import export_path, workdir

    seg = Segmenter(export_path(workdir(), "lraspp_mobilenet_v3_large"))
    assert seg.classes == list(SYNTH_CLASSES) and seg.card.extra["random_weights"]


def test_smp_pspnet_sizes_and_encoders_the_exporter_cannot_take_are_said_before_export():
    """PSPNet's bins (1, 2, 3, 6) on the 1/8 map: H and W multiples of 48; smp's efficientnet encoders
    pad by the runtime size, which PyTorch's exporter cannot trace into the PSP pooling."""
    pytest.importorskip("segmentation_models_pytorch")
    line = one_line_error("smp:PSPNet", "--encoder", "resnet18", "--height", "128", "--width", "256")
    assert "H/8 and W/8 must be divisible by 6" in line and "e.g. 144x240" in line
    assert "not factor of input size" not in line  # PyTorch's raw message, after minutes, no more
    line = one_line_error("smp:PSPNet", "--encoder", "efficientnet-b0", "--height", "192", "--width", "384")
    assert "efficientnet-b0 cannot be exported by PyTorch's ONNX exporter" in line
    deeper = one_line_error(
        "smp:PSPNet", "--encoder", "resnet18", "-o", "encoder_depth=4", "--height", "144", "--width", "288"
    )
    assert "H/16 and W/16" in deeper


def test_smp_pspnet_with_one_side_given_names_the_size_it_would_export():
    """--height alone exports at that height and the card's default width (512x1024 by default): the
    message names that size, not the default one."""
    pytest.importorskip("segmentation_models_pytorch")
    line = one_line_error("smp:PSPNet", "--encoder", "resnet18", "--height", "100")
    assert "got 100x1024" in line and "e.g. 96x1008" in line
    line = one_line_error("smp:PSPNet", "--encoder", "resnet18", "--width", "100")
    assert "got 512x100" in line and "e.g. 528x96" in line


def test_smp_pspnet_at_a_size_its_bins_divide_exports():
    pytest.importorskip("segmentation_models_pytorch")
    data = export(
        "smp:PSPNet", "--encoder", "resnet18", "-o", "psp_out_channels=16", "--height", "48", "--width", "96",
        "--parity-scenes", "1",
    )  # fmt: skip
    assert data["parity"]["passed"]


def test_python_module_left_in_training_mode_is_switched_to_eval_and_said(tmp_path, monkeypatch):
    (tmp_path / "byom_bn_train.py").write_text(
        textwrap.dedent(
            """
            from torch import nn

            def build_net():
                return nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.BatchNorm2d(4), nn.Conv2d(4, 2, 1))

            def build_eval_net():
                return build_net().eval()
            """
        )
    )
    monkeypatch.chdir(tmp_path)
    r = CliRunner().invoke(app, ["export", "python:byom_bn_train:build_net", *SIZE])
    assert r.exit_code == 0, r.output
    said = [ln for ln in r.output.splitlines() if "training mode" in ln]
    assert len(said) == 1 and "switched to eval()" in said[0] and "1 BatchNorm layer(s)" in said[0]
    r = CliRunner().invoke(app, ["export", "python:byom_bn_train:build_eval_net", *SIZE])
    assert r.exit_code == 0, r.output
    assert "training mode" not in r.output
