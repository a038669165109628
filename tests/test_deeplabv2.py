"""DeepLabV2 through the chain a user runs: export (ONNX Runtime parity, TensorRT op report) -> build
--fp16 --int8 with the mIoU gate, at a small odd-free size with the lightest trunk (the zoo-wide shape,
registry and parity tests cover it with the others: tests/test_models.py, tests/test_export_zoo.py)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
from typer.testing import CliRunner  # noqa: E402

from edgeseg.cli import app  # noqa: E402

torch.set_num_threads(1)


def invoke(*args: str) -> str:
    r = CliRunner().invoke(app, list(args))
    assert r.exit_code == 0, r.output
    return r.stdout


def test_deeplabv2_export_then_fp16_and_int8_pass_the_gate(tmp_path, monkeypatch, _isolated_workdir):
    monkeypatch.chdir(tmp_path)
    torch.manual_seed(0)
    out = invoke("export", "deeplabv2", "--backbone", "resnet18", "--height", "48", "--width", "64",
                 "--parity-scenes", "1", "--json")  # fmt: skip
    exported = json.loads(out[out.index("{") :])
    assert exported["parity"]["agreement"] >= 0.999 and exported["trt"]["errors"] == []
    card = json.loads(Path(exported["card_path"]).read_text())
    assert exported["model"] == card["model"] == "deeplabv2"
    assert card["model_kwargs"] == {"backbone": "resnet18", "output_stride": 8}

    out = invoke("build", "deeplabv2", "--fp16", "--int8", "--calib-images", "2", "--eval-images", "2",
                 "--max-miou-drop", "100", "--json")  # fmt: skip
    built = json.loads(out)
    arts = {a["precision"]: a for a in built["artifacts"]}
    assert list(arts) == ["fp32", "fp16", "int8-cpu", "int8-qdq"]
    assert arts["fp16"]["argmax_agreement"] >= 0.99  # FP16 keeps the FP32 labels
    assert all(a["miou_drop_points"] is not None for a in arts.values())  # the gate measured every form
