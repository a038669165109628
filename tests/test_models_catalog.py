"""The torch-free catalog behind `edgeseg models` matches the real models, and the CLI stays torch-free."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from edgeseg.models.catalog import CATALOG_CLASSES, CATALOG_SIZE, entries, model_names

LIGHT = {"mobilenet_v3_large", "efficientnet_lite0", "resnet18", "-"}


def _rows(light: bool) -> list:
    return [
        pytest.param(r, id=f"{r['model']}-{r['backbone']}")
        for r in entries()
        if (r["backbone"] in LIGHT) == light
    ]


def _check(row: dict) -> None:
    pytest.importorskip("torch")
    from edgeseg.models.measure import measure

    backbone = None if row["backbone"] == "-" else row["backbone"]
    params, gflops = measure(row["model"], backbone, num_classes=CATALOG_CLASSES, size=CATALOG_SIZE)
    assert row["params"] == params
    assert row["gflops"] == pytest.approx(gflops, abs=0.01)


def test_catalog_covers_every_registered_model_and_backbone():
    pytest.importorskip("torch")
    from edgeseg.models import get_spec, list_models

    assert model_names() == list_models(builtin_only=True)
    for name in list_models(builtin_only=True):
        spec = get_spec(name)
        assert [r["backbone"] for r in entries(name)] == list(spec.backbones or ("-",))
        (default,) = entries(name, all_backbones=False)
        assert default["backbone"] == (spec.default_backbone or "-")
        assert default["output_stride"] == spec.default_output_stride
        assert default["paper"] == spec.paper


@pytest.mark.parametrize("row", _rows(light=True))
def test_catalog_numbers_match_models(row):
    _check(row)


@pytest.mark.slow
@pytest.mark.parametrize("row", _rows(light=False))
def test_catalog_numbers_match_heavy_models(row):
    _check(row)


def _run(*args: str) -> subprocess.CompletedProcess:
    code = (
        "import sys\n"
        "from edgeseg.cli import main\n"
        f"sys.argv = ['edgeseg', *{list(args)!r}]\n"
        "try:\n"
        "    main()\n"
        "finally:\n"
        "    sys.stderr.write('TORCH=%s' % any(m == 'torch' or m.startswith('torch.') for m in sys.modules))\n"
    )
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)


def test_models_command_table_without_torch():
    res = _run("models")
    assert res.returncode == 0, res.stderr
    assert "TORCH=False" in res.stderr
    for name in model_names():
        assert name in res.stdout
    assert "134.5M" in res.stdout  # FCN-8s / VGG16, 21 classes


def test_models_command_json():
    res = _run("models", "--all", "--json")
    assert res.returncode == 0, res.stderr
    assert "TORCH=False" in res.stderr
    data = json.loads(res.stdout)
    assert data["input_size"] == list(CATALOG_SIZE) and data["num_classes"] == CATALOG_CLASSES
    assert len(data["models"]) == len(entries())
    row = next(r for r in data["models"] if r["model"] == "deeplabv3plus" and r["backbone"] == "resnet101")
    assert set(row) >= {"model", "backbone", "params", "gflops", "output_stride", "paper"}


def test_models_command_unknown_name_is_one_line_error():
    res = _run("models", "deeplab")
    assert res.returncode == 2
    err = res.stderr.split("TORCH=")[0].strip()
    assert err.startswith("error: unknown model 'deeplab'") and "deeplabv3plus" in err
    assert "Traceback" not in res.stderr


def test_models_command_one_model_lists_backbones_and_options():
    res = _run("models", "deeplabv3plus")
    assert res.returncode == 0, res.stderr
    for backbone in ("resnet50 *", "resnet101", "mobilenet_v3_large", "xception65"):
        assert backbone in res.stdout
    assert "output_stride=16" in res.stdout
    assert "fcn8s" not in res.stdout


def test_options_that_only_some_backbones_take_say_which():
    res = _run("models", "unet")
    assert res.returncode == 0, res.stderr
    assert "options (edgeseg train/export unet -o key=value): width=1.0 (compact only)" in res.stdout
    from edgeseg.models.catalog import entries

    assert {r["backbone"]: bool(r["options"]) for r in entries("unet")}["compact"]
    assert not any(r["options"] for r in entries("unet") if r["backbone"] != "compact")
