"""The whole chain for each import route on the command line: export -> build --fp16 --int8 -> run --video
-> bench, with tiny nets of each family. Class names come from a classes file (the street classes, so
bench can score mIoU on generated scenes), calibration from a video: what a user with their own net does.
The quick families (python, smp: about 5 s each here) run in the default suite; torchvision's LR-ASPP and
SegFormer (12-15 s each) are `slow` (make test-all); their export alone is in the default suite
(tests/test_byom_export.py)."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
from typer.testing import CliRunner  # noqa: E402

from edgeseg.cli import app  # noqa: E402
from edgeseg.data.synth import SYNTH_CLASSES, write_video  # noqa: E402

torch.set_num_threads(1)
N = len(SYNTH_CLASSES)
H, W = 64, 96


def invoke(*args: str) -> str:
    """stdout of a successful command (warnings and progress go to stderr)."""
    r = CliRunner().invoke(app, list(args))
    assert r.exit_code == 0, r.output
    return r.stdout


def tv_route(root: Path) -> tuple[list[str], str]:
    from torchvision.models.segmentation import lraspp_mobilenet_v3_large

    path = root / "lraspp.pth"
    torch.save(
        lraspp_mobilenet_v3_large(weights=None, weights_backbone=None, num_classes=N).state_dict(), path
    )
    return ["torchvision:lraspp_mobilenet_v3_large", "--weights", str(path)], "lraspp_mobilenet_v3_large"


def smp_route(root: Path) -> tuple[list[str], str]:
    smp = pytest.importorskip("segmentation_models_pytorch")
    net = smp.Unet(
        "mobilenet_v2", encoder_weights=None, encoder_depth=3, decoder_channels=(16, 8, 4), classes=N
    )
    path = root / "unet.pth"
    torch.save(net.state_dict(), path)
    opts = ["-o", "encoder_depth=3", "-o", "decoder_channels=[16,8,4]"]
    return ["smp:Unet", "--encoder", "mobilenet_v2", *opts, "--weights", str(path)], "smp_unet_mobilenet_v2"


def hf_route(root: Path) -> tuple[list[str], str]:
    transformers = pytest.importorskip("transformers")
    cfg = transformers.SegformerConfig(
        num_encoder_blocks=2, depths=[1, 1], sr_ratios=[2, 1], hidden_sizes=[8, 16], patch_sizes=[7, 3],
        strides=[4, 2], num_attention_heads=[1, 1], mlp_ratios=[2, 2], decoder_hidden_size=16, num_labels=N,
    )  # fmt: skip
    folder = root / "segformer-tiny"
    transformers.SegformerForSemanticSegmentation(cfg).save_pretrained(folder)
    return [f"hf:{folder}"], "segformer-tiny"


def python_route(root: Path) -> tuple[list[str], str]:
    (root / "chain_nets.py").write_text(
        textwrap.dedent(
            """
            from torch import nn

            def tiny(classes=2):
                return nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(),
                                     nn.Conv2d(8, classes, 1))
            """
        )
    )
    return ["python:chain_nets:tiny", "-o", f"classes={N}"], "tiny"


ROUTES = {
    "torchvision": pytest.param(tv_route, id="torchvision", marks=pytest.mark.slow),
    "smp": pytest.param(smp_route, id="smp"),
    "hf": pytest.param(hf_route, id="hf", marks=pytest.mark.slow),
    "python": pytest.param(python_route, id="python"),
}


@pytest.mark.parametrize("route", list(ROUTES.values()))
def test_export_build_run_bench(route, tmp_path, monkeypatch, _isolated_workdir):
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    torch.manual_seed(0)
    model_args, name = route(tmp_path)
    classes = tmp_path / "classes.txt"
    classes.write_text("\n".join(SYNTH_CLASSES) + "\n")
    video = tmp_path / "drive.mp4"
    write_video(video, 10, H, W)

    out = invoke("export", *model_args, "--classes", str(classes), "--height", str(H), "--width", str(W),
                 "--parity-scenes", "1", "--json")  # fmt: skip
    exported = json.loads(out[out.index("{") :])
    assert exported["parity"]["agreement"] >= 0.999 and exported["trt"]["errors"] == []
    assert exported["model"] == name

    out = invoke("build", name, "--fp16", "--int8", "--calib-data", str(video), "--calib-images", "4",
                 "--eval-images", "4", "--max-miou-drop", "100", "--json")  # fmt: skip
    built = json.loads(out)
    assert [a["precision"] for a in built["artifacts"]] == ["fp32", "fp16", "int8-cpu", "int8-qdq"]

    report = tmp_path / "run.json"
    invoke("run", "--model", f"{name}.int8.cpu", "--video", str(video), "--report", str(report))
    ran = json.loads(report.read_text())
    assert ran["frames"]["processed"] == 10 and ran["model"]["name"] == name

    out = invoke("bench", name, "--data", "synth:2", "--iterations", "2", "--warmup", "1", "--json")
    results = json.loads(out)["results"]
    assert {r["precision"] for r in results} >= {"fp32", "fp16", "int8"}
    assert all(r["error"] is None and r["miou"] is not None for r in results)
