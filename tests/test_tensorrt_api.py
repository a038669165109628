"""Every TensorRT name edgeseg uses exists in the versions we support, or is used behind a hasattr guard.

Evidence: the name lists extracted from NVIDIA's bindings wheels (tests/data/tensorrt/, made by
tools/extract_trt_names.py). The sources are parsed with `ast`, so a new TensorRT call that is not in
`TRT_API` (and therefore not checked) fails here.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
from fake_tensorrt.cuda import FakeGpu
from fake_tensorrt.names import VERSIONS, load_names
from fake_tensorrt.trt import make_fake_trt

from edgeseg.export.tensorrt_features import GUARDED, REQUIRED, TRT_API

ROOT = Path(__file__).resolve().parent.parent
SOURCES = [ROOT / "export" / "tensorrt_build.py", ROOT / "export" / "tensorrt_plan.py", ROOT / "export" / "tensorrt_features.py",
           ROOT / "runtime" / "backends" / "tensorrt.py"]  # fmt: skip
# variables that hold TensorRT objects in those sources (the module, builder, network, ...)
TRT_VARS = {"trt", "builder", "network", "config", "parser", "trt_parser", "profile", "engine", "context",
            "runtime", "err", "ncf", "flags", "ctx"}  # fmt: skip


def _root(node: ast.AST) -> ast.AST:
    while isinstance(node, (ast.Attribute, ast.Call, ast.Subscript)):
        node = node.func if isinstance(node, ast.Call) else node.value
    return node


def _is_trt_object(node: ast.AST) -> bool:
    """`trt.X`, `config.X`, `self.engine.X`, `builder.create_network(...).X` ..."""
    while isinstance(node, (ast.Call, ast.Subscript)):
        node = node.func if isinstance(node, ast.Call) else node.value
    chain = []
    while isinstance(node, ast.Attribute):
        chain.append(node.attr)
        node = node.value
    if not isinstance(node, ast.Name):
        return False
    if node.id == "self":
        return bool(chain) and chain[-1] in {"trt", "engine", "context", "runtime"}
    return node.id in TRT_VARS


def used_names() -> dict[str, set[str]]:
    """name -> source files using it: attributes on TensorRT objects, hasattr/getattr strings, flag names."""
    found: dict[str, set[str]] = {}
    for path in SOURCES:
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            name = None
            if isinstance(node, ast.Attribute) and _is_trt_object(node.value):
                name = node.attr
            elif (isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in ("hasattr", "getattr")
                  and len(node.args) >= 2 and isinstance(node.args[1], ast.Constant) and _is_trt_object(node.args[0])):  # fmt: skip
                name = node.args[1].value
            elif (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "append"
                  and node.args and isinstance(node.args[0], ast.Constant) and isinstance(node.args[0].value, str)
                  and node.args[0].value.isupper() and "flags" in ast.unparse(node.func.value)):  # fmt: skip
                name = node.args[
                    0
                ].value  # plan.builder_flags.append("FP16") -> getattr(trt.BuilderFlag, ...)
            if name and not name.startswith("__"):
                found.setdefault(name, set()).add(path.name)
    return found


def guarded_names() -> set[str]:
    """String names tested with hasattr(...) somewhere in our TensorRT sources."""
    out = set()
    for path in SOURCES:
        for node in ast.walk(ast.parse(path.read_text())):
            if (isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "hasattr"
                    and isinstance(node.args[1], ast.Constant)):  # fmt: skip
                out.add(node.args[1].value)
    return out


def test_every_used_name_is_registered():
    unregistered = {n: sorted(f) for n, f in used_names().items() if n not in TRT_API}
    assert not unregistered, f"TensorRT names used but missing from TRT_API: {unregistered}"


def test_registry_has_no_stale_entries():
    used = used_names()
    stale = sorted(n for n in TRT_API if n not in used)
    assert not stale, f"TRT_API lists names the code no longer uses: {stale}"


@pytest.mark.parametrize("version", VERSIONS)
def test_required_names_exist_in_every_version(version):
    names = load_names(version)
    missing = sorted(n for n, (kind, _) in TRT_API.items() if kind == REQUIRED and n not in names)
    assert not missing, f"TensorRT {version} lacks {missing}: guard them with hasattr and mark GUARDED"


def test_guarded_names_are_guarded_and_real():
    guarded = guarded_names()
    for name, (kind, where) in TRT_API.items():
        if kind != GUARDED:
            continue
        assert name in guarded, f"{name} ({where}) is marked GUARDED but no hasattr(..., {name!r}) guards it"
        assert any(name in load_names(v) for v in VERSIONS), f"{name} exists in no supported TensorRT version"


def test_lists_confirm_the_version_differences_we_rely_on():
    v85, v8, v10, v11 = (load_names(v) for v in VERSIONS)
    for name in ("VERSION_COMPATIBLE", "builder_optimization_level", "engine_host_code_allowed"):
        assert name not in v85 and name in v8 and name in v10 and name in v11, name
    assert "set_calibration_profile" in v85 and "set_calibration_profile" in v10
    assert "set_calibration_profile" not in v11  # removed with the calibrators
    assert "serialize" in v85  # ITimingCache.serialize, stored only as the tail of an 8.6-only string
    assert "EXPLICIT_BATCH" in v8 and "EXPLICIT_BATCH" in v10 and "EXPLICIT_BATCH" not in v11
    assert "STRONGLY_TYPED" not in v8 and "STRONGLY_TYPED" in v10 and "STRONGLY_TYPED" in v11
    assert "IInt8EntropyCalibrator2" in v8 and "IInt8EntropyCalibrator2" in v10
    assert "IInt8EntropyCalibrator2" not in v11 and "int8_calibrator" not in v11
    assert "IProgressMonitor" not in v8 and "IProgressMonitor" in v10
    assert "node_name" not in v8 and "node_name" in v10
    assert "execute_async_v2" in v8 and "execute_async_v2" not in v10  # why we use v3 everywhere
    assert "INT8" in v8 and not v8.exact("INT8")  # only stored inside "UINT8": the suffix rule matters


@pytest.mark.parametrize("version", VERSIONS)
def test_fakes_expose_only_names_of_their_version(version):
    names = load_names(version)
    trt = make_fake_trt(version, FakeGpu())
    extra = []
    for attr in ("Builder", "OnnxParser", "ICudaEngine", "IExecutionContext", "Runtime", "IOptimizationProfile",
                 "BuilderFlag", "NetworkDefinitionCreationFlag", "MemoryPoolType", "DeviceType", "TensorIOMode"):  # fmt: skip
        assert attr in names
        cls = getattr(trt, attr)
        extra += [f"{attr}.{m}" for m in vars(cls) if not m.startswith("_") and m not in names]
    assert not extra, f"fake {version} exposes names the real one lacks: {extra}"
