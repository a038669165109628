"""The torch-free catalog behind `edgeseg models` matches the real models, is the file
`measure --write` writes, ships in the wheel, and the CLI stays torch-free."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from edgeseg.errors import EdgesegError
from edgeseg.models import catalog
from edgeseg.models.catalog import CATALOG_CLASSES, CATALOG_PATH, CATALOG_SIZE, entries, model_names

REPO = Path(__file__).resolve().parents[1]

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


def test_catalog_json_is_what_measure_write_writes():
    """Everything but the measured numbers (checked below, per row) comes from the registry, in the
    writer's order and layout; the conditions the rows were measured at are recorded with them."""
    pytest.importorskip("torch")
    from edgeseg.models.measure import document, rows

    recorded = {(r["model"], r["backbone"]): (r["params"], r["gflops"]) for r in entries()}
    expected = document(rows(lambda name, bb: recorded.get((name, bb or "-"), (-1, -1.0))))
    assert json.loads(CATALOG_PATH.read_text()) == expected
    assert expected["num_classes"] == CATALOG_CLASSES and expected["input_size"] == list(CATALOG_SIZE)


@pytest.mark.slow
def test_measure_write_reproduces_the_catalog_byte_for_byte(tmp_path):
    pytest.importorskip("torch")
    from edgeseg.models.measure import write

    out = write(tmp_path / "catalog.json")
    assert out.read_bytes() == CATALOG_PATH.read_bytes()
    assert [p.name for p in tmp_path.iterdir()] == ["catalog.json"]  # no temporary left behind


def test_missing_catalog_is_one_clear_error(tmp_path, monkeypatch):
    monkeypatch.setattr(catalog, "CATALOG_PATH", tmp_path / "catalog.json")
    catalog._rows.cache_clear()
    try:
        with pytest.raises(EdgesegError, match="model catalog .*catalog.json is missing or unreadable"):
            model_names()
    finally:
        catalog._rows.cache_clear()


def test_catalog_ships_in_the_wheel_and_a_normal_install_reads_it(tmp_path):
    """Build a wheel from a copy of the source (the shipped model weights left out: not needed here),
    unpack it as pip would install it, and run `edgeseg models` from there."""
    src = tmp_path / "tree"
    src.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(REPO / name, src / name)
    for folder in ("edgeseg", "export", "calib", "runtime", "src"):  # the links of the src layout too
        shutil.copytree(
            REPO / folder,
            src / folder,
            symlinks=True,
            ignore=shutil.ignore_patterns("__pycache__", "*.pt", "*.onnx"),
        )
    cmd = [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation"]
    subprocess.run([*cmd, str(src), "-w", str(tmp_path / "dist")], check=True, timeout=300)
    (wheel,) = (tmp_path / "dist").glob("edgeseg-*.whl")
    with zipfile.ZipFile(wheel) as zf:
        assert "edgeseg/models/catalog.json" in zf.namelist()
        zf.extractall(tmp_path / "site")
    env = {**os.environ, "PYTHONPATH": str(tmp_path / "site")}
    res = _run("models", "unet", env=env, cwd=tmp_path)  # not the checkout: `python -c` puts cwd first
    assert res.returncode == 0, res.stderr
    assert f"FILE={tmp_path / 'site'}" in res.stderr  # the unpacked wheel, not this checkout
    assert "31.0M" in res.stdout and "width=1.0 (compact only)" in res.stdout


@pytest.mark.parametrize("row", _rows(light=True))
def test_catalog_numbers_match_models(row):
    _check(row)


@pytest.mark.slow
@pytest.mark.parametrize("row", _rows(light=False))
def test_catalog_numbers_match_heavy_models(row):
    _check(row)


def _run(
    *args: str, env: dict[str, str] | None = None, cwd: Path | None = None
) -> subprocess.CompletedProcess:
    """`edgeseg ARGS` in a fresh interpreter; stderr ends with whether torch was imported and which
    catalog file was read."""
    code = (
        "import sys\n"
        "from edgeseg.cli import main\n"
        f"sys.argv = ['edgeseg', *{list(args)!r}]\n"
        "try:\n"
        "    main()\n"
        "finally:\n"
        "    sys.stderr.write('TORCH=%s' % any(m == 'torch' or m.startswith('torch.') for m in sys.modules))\n"
        "    from edgeseg.models.catalog import CATALOG_PATH\n"
        "    sys.stderr.write(' FILE=%s' % CATALOG_PATH)\n"
    )
    return subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, env=env, cwd=cwd
    )


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
    assert "TORCH=False" in res.stderr


def test_options_that_only_some_backbones_take_say_which():
    res = _run("models", "unet")
    assert res.returncode == 0, res.stderr
    assert "TORCH=False" in res.stderr
    assert "options (edgeseg train/export unet -o key=value): width=1.0 (compact only)" in res.stdout
    from edgeseg.models.catalog import entries

    assert {r["backbone"]: bool(r["options"]) for r in entries("unet")}["compact"]
    assert not any(r["options"] for r in entries("unet") if r["backbone"] != "compact")
