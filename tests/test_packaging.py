"""Packaging: the src layout (symlinks into the repository's stage folders) installs editable
without setuptools' import-hook notice and builds a wheel holding one complete `edgeseg`; the
default output folders are ignored by git and removed by `make clean`."""

from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
STAGES = ("export", "calib", "runtime")


@pytest.fixture(scope="module")
def project_copy(tmp_path_factory) -> Path:
    """The repository's tracked layout in a scratch folder, so building leaves nothing behind here."""
    dst = tmp_path_factory.mktemp("project") / "edgeseg"
    ignore = shutil.ignore_patterns(
        ".venv", ".git", "build", "*.egg-info", "__pycache__", ".*cache", "edgeseg-work", "edgeseg-demo"
    )
    shutil.copytree(REPO, dst, symlinks=True, ignore=ignore)
    return dst


def build(project: Path, hook: str, out: Path) -> tuple[Path, str]:
    """Call the PEP 517/660 hook the way pip does, in a fresh interpreter; (wheel, everything printed)."""
    code = f"from setuptools import build_meta as b; print(b.{hook}({str(out)!r}))"
    r = subprocess.run([sys.executable, "-c", code], cwd=project, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    return out / r.stdout.strip().splitlines()[-1], r.stdout + r.stderr


def test_stage_folders_are_linked_into_the_package():
    assert (REPO / "src" / "edgeseg").resolve() == REPO / "edgeseg"
    for stage in STAGES:
        link = REPO / "edgeseg" / stage
        assert link.is_symlink() and link.resolve() == REPO / stage


def test_editable_install_is_a_plain_path_without_the_notice(project_copy, tmp_path):
    wheel, printed = build(project_copy, "build_editable", tmp_path)
    assert "same name as your package" not in printed and "meta path finder" not in printed
    names = zipfile.ZipFile(wheel).namelist()
    pth = [n for n in names if n.endswith(".pth")]
    assert len(pth) == 1 and not [n for n in names if n.endswith("finder.py")]
    assert zipfile.ZipFile(wheel).read(pth[0]).decode().strip() == str(project_copy / "src")


def test_wheel_holds_one_complete_package(project_copy, tmp_path):
    wheel, _ = build(project_copy, "build_wheel", tmp_path)
    names = zipfile.ZipFile(wheel).namelist()
    tops = {n.split("/")[0] for n in names}
    assert "edgeseg" in tops and all(t == "edgeseg" or t.endswith(".dist-info") for t in tops)
    for needed in (
        "edgeseg/export/onnx_export.py",
        "edgeseg/calib/quantize.py",
        "edgeseg/runtime/liveserver.py",
        "edgeseg/runtime/liveview.html",
        "edgeseg/assets/edgeseg-default.onnx",
    ):
        assert needed in names


def test_default_output_folders_are_ignored_and_cleaned():
    from edgeseg.demo import DemoConfig
    from edgeseg.workspace import DEFAULT_WORKDIR

    folders = [DEFAULT_WORKDIR, str(DemoConfig.__dataclass_fields__["out"].default)]
    ignored = (REPO / ".gitignore").read_text().split()
    clean = subprocess.run(["make", "-n", "clean"], cwd=REPO, capture_output=True, text=True).stdout.split()
    for folder in folders:
        assert f"{folder}/" in ignored and folder in clean
