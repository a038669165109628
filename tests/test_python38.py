"""The on-device part runs on Python 3.8 (JetPack 5.1's system Python, the only one with TensorRT's bindings
there). Which part: whatever `tests/on_device.py` imports while it builds an engine from an ONNX, runs it
on a stream, runs `Segmenter` and `edgeseg ros2`, plus all of `runtime/`. Checked three ways: vermin
(syntax and standard-library API per Python version) on those files, pyproject's promises (requires-python,
ruff's per-file target), `X | Y` between types outside annotations (vermin misses `isinstance(v, int | float)`),
and, where a Python 3.8 with the requirements is installed, the script itself under it (`make py38-check`
makes one)."""

from __future__ import annotations

import ast
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
    runtime = sorted(str(p) for p in (ROOT / "runtime").rglob("*.py"))
    return sorted(set(on_device["files"]) | set(runtime))


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


def _annotation_nodes(tree: ast.AST) -> set[int]:
    inside: set[int] = set()
    for node in ast.walk(tree):
        roots = []
        if isinstance(node, (ast.arg, ast.AnnAssign)) and node.annotation is not None:
            roots.append(node.annotation)
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.returns is not None:
            roots.append(node.returns)
        for root in roots:
            inside |= {id(n) for n in ast.walk(root)}
    return inside


def _typeish(node: ast.AST) -> bool:
    """A name that looks like a type: a builtin type, None, or a CamelCase class (not an ALL_CAPS flag)."""
    if isinstance(node, ast.Constant) and node.value is None:
        return True
    if isinstance(node, ast.Subscript):
        return True
    name = node.id if isinstance(node, ast.Name) else node.attr if isinstance(node, ast.Attribute) else ""
    builtin = {
        "int",
        "float",
        "str",
        "bytes",
        "bool",
        "list",
        "tuple",
        "dict",
        "set",
        "frozenset",
        "type",
        "object",
    }
    bare = name.lstrip("_")
    return name in builtin or (bare[:1].isupper() and not bare.isupper())


def test_no_union_of_types_is_evaluated_at_run_time(on_device):
    """`int | float` outside an annotation runs on 3.10+ only (isinstance, aliases); vermin misses some."""
    found = []
    for path in _device_files(on_device):
        tree = ast.parse(Path(path).read_text())
        skip = _annotation_nodes(tree)
        for node in ast.walk(tree):
            is_or = isinstance(node, ast.BinOp) and isinstance(node.op, ast.BitOr) and id(node) not in skip
            if is_or and (_typeish(node.left) or _typeish(node.right)):
                found.append(f"{Path(path).relative_to(ROOT)}:{node.lineno}: {ast.unparse(node)}")
    assert not found, found


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
        if not any(fnmatch.fnmatch(str(Path(f).relative_to(ROOT)), g) for glob in per_file for g in (glob, glob.replace("**/", "")))  # ruff's ** also matches no folder
    ]  # fmt: skip
    assert not unlinted, f"device files ruff does not lint for Python 3.8: {unlinted}"


def _python38() -> str | None:
    """A Python 3.8 with numpy, onnx, onnxruntime, typer and pytest: $EDGESEG_PY38, .venv38, or none."""
    for candidate in (os.environ.get("EDGESEG_PY38"), str(ROOT / ".venv38" / "bin" / "python")):
        if candidate and Path(candidate).exists():
            probe = subprocess.run(
                [candidate, "-c", "import sys, numpy, onnx, onnxruntime, typer, pytest; print(sys.version_info[:2])"],
                capture_output=True, text=True, timeout=120,
            )  # fmt: skip
            if probe.returncode == 0 and probe.stdout.strip() == "(3, 8)":
                return candidate
    return None


@pytest.mark.parametrize("binding", ["pycuda", "cuda-python"])
def test_the_device_commands_run_on_a_real_python_38(tmp_path, binding):
    python = _python38()
    if python is None:
        pytest.skip("no Python 3.8 with the requirements here: `make py38-check` makes .venv38")
    got = _run(python, tmp_path, binding)
    assert got["python"][:2] == [3, 8]
    assert got["done"] == {"build": "tiny.fp32.engine", "run": 3, "segmenter": [40, 60], "ros2": "help"}


DEVICE_WITHOUT_ONNXRUNTIME = """
import importlib.abc, json, sys, traceback
class NoOnnxRuntime(importlib.abc.MetaPathFinder):  # a Jetson without onnxruntime installed
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] != "onnxruntime":
            return None
        stack = traceback.extract_stack()
        if any("fake_tensorrt" in f.filename for f in stack):
            return None  # the fake engine computes with ONNX Runtime: a test double, not the device's code
        raise ImportError(name + " is not installed (blocked): " + " <- ".join(
            f"{f.filename.rsplit('/', 1)[-1]}:{f.lineno}" for f in stack[-12:] if "importlib" not in f.filename))
sys.meta_path.insert(0, NoOnnxRuntime())
import pytest
from fake_tensorrt.install import install_trt
install_trt(pytest.MonkeyPatch(), "8.5.2")
from typer.testing import CliRunner
from edgeseg.cli import app
fp32, fp16, qdq = sys.argv[1:4]
runs = {
    "fp32": ["build", fp32, "--target", "tensorrt"],
    "fp16 file": ["build", fp16, "--target", "tensorrt"],
    "int8 q/dq file": ["build", qdq, "--target", "tensorrt"],
    "int8 implicit calibrator": ["build", fp32, "--target", "tensorrt", "--int8", "--legacy-calibrator",
                                 "--calib-data", "synth", "--calib-images", "2"],
    "run": ["run", "--model", fp32.replace(".onnx", ".fp32.engine"), "--synthetic", "--frames", "2", "--threads", "1"],
}
out = {}
for what, args in runs.items():
    r = CliRunner().invoke(app, args)
    out[what] = [r.exit_code, repr(r.exception) if r.exception and r.exit_code else ""]
out["onnxruntime imported"] = sorted(m for m in sys.modules if m.startswith("onnxruntime.quantization"))
print(json.dumps(out))
"""


def test_the_device_commands_need_no_onnxruntime(tmp_path, tiny_onnx):
    """On a Jetson, TensorRT builds the engine: the FP32, FP16 and Q/DQ INT8 files made on the host, and
    the implicit calibrator, build and run with `import onnxruntime` failing (only quantizing on the host,
    `build --int8` without --legacy-calibrator, needs ONNX Runtime). The host side here makes the files."""
    from edgeseg.artifacts import card_from_metadata, int8_path, onnx_metadata
    from edgeseg.calib.activation_ranges import calibrate
    from edgeseg.calib.data import open_calibration
    from edgeseg.calib.quantize import quantize_tensorrt_form
    from edgeseg.data.synth import SYNTH_CLASSES
    from edgeseg.export.fp16 import write_fp16

    fp32 = tiny_onnx(num_classes=len(SYNTH_CLASSES), size=(32, 48), name="dev", hidden=4)
    fp16 = write_fp16(fp32)[0]
    card = card_from_metadata(fp32, onnx_metadata(fp32))
    stats = calibrate(fp32, card, open_calibration("synth", card, 2, seed=0), method="minmax")
    qdq = int8_path(fp32, "qdq")
    quantize_tensorrt_form(fp32, card, stats, qdq)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), str(ROOT / "tests")]),
           "EDGESEG_WORKDIR": str(tmp_path / "work")}  # fmt: skip
    done = subprocess.run([sys.executable, "-c", DEVICE_WITHOUT_ONNXRUNTIME, str(fp32), str(fp16), str(qdq)],
                          capture_output=True, text=True, timeout=300, env=env, cwd=tmp_path)  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    got = json.loads(done.stdout.strip().splitlines()[-1])
    assert got.pop("onnxruntime imported") == []
    assert got == {what: [0, ""] for what in got} and len(got) == 5, got


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
