#!/usr/bin/env python3
"""Extract the TensorRT Python API names from NVIDIA's bindings wheels into committed test data.

Neither TensorRT nor a GPU can be installed here, but the bindings wheels download from PyPI and their
`tensorrt.so` stores every pybind11-registered name (classes, methods, properties, enum values) as a
NUL-terminated string. That is hard evidence of what each version offers, so tests check every
TensorRT name edgeseg uses against these lists (tests/test_tensorrt_api.py) and the fake `tensorrt`
modules expose only names found here (tests/fake_tensorrt/).

    python tools/extract_trt_names.py                       # download the three wheels with pip
    python tools/extract_trt_names.py --wheel a.whl --wheel b.whl

Output: tests/data/tensorrt/trt-<version>.txt, one identifier per line, sorted, after a `#` header.
Only identifier-shaped strings are kept (docstrings and C++ mangled symbols are dropped). The linker
may merge a short string into the tail of a longer one (`INT8` lives inside `UINT8`), so readers must
treat a name that is a suffix of a stored string as present (`tests/fake_tensorrt/names.py` does).
Python-level helpers defined in the wheel's `__init__.py` (`nptype`, `volume`, `__version__`) are
added from its source.
"""

from __future__ import annotations

import argparse
import ast
import hashlib
import re
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

WHEELS = [
    "tensorrt-bindings==8.6.1",  # JetPack 5 generation
    "tensorrt-cu12-bindings==10.3.0",  # JetPack 6 ships 10.3
    "tensorrt-cu13-bindings==11.4.0.106",  # strongly typed only
]
IDENT = re.compile(rb"[A-Za-z][A-Za-z0-9_]{1,80}")
DEFAULT_OUT = Path(__file__).resolve().parent.parent / "tests" / "data" / "tensorrt"


def download(specs: list[str], dest: Path) -> list[Path]:
    """Fetch the wheels with pip (no dependencies: the -libs wheels only redirect to NVIDIA's index)."""
    for spec in specs:
        subprocess.run(
            [sys.executable, "-m", "pip", "download", "-q", "--no-deps", "-d", str(dest), spec], check=True
        )
    return sorted(dest.glob("*.whl"))


def so_names(blob: bytes) -> set[str]:
    """Identifier-shaped NUL-terminated strings of a shared object (like `strings -n 3`, filtered)."""
    names = set()
    for chunk in blob.split(b"\0"):
        if 3 <= len(chunk) <= 80 and IDENT.fullmatch(chunk):
            names.add(chunk.decode("ascii"))
    return names


def init_names(source: str) -> tuple[set[str], str | None]:
    """Top-level functions and assignments of the wheel's `tensorrt/__init__.py`, and its __version__."""
    tree = ast.parse(source)
    names: set[str] = set()
    version = None
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.ClassDef)):
            names.add(node.name)
        elif isinstance(node, ast.Assign):
            for target in node.targets:
                if isinstance(target, ast.Name):
                    names.add(target.id)
                    if target.id == "__version__" and isinstance(node.value, ast.Constant):
                        version = str(node.value.value)
    return names, version


def extract(wheel: Path) -> tuple[str, list[str], str]:
    """(version, sorted names, sha256 of the wheel)."""
    digest = hashlib.sha256(wheel.read_bytes()).hexdigest()
    with zipfile.ZipFile(wheel) as zf:
        members = zf.namelist()
        so = [m for m in members if m.endswith("/tensorrt.so") or re.search(r"/tensorrt\..*\.so$", m)]
        init = [m for m in members if m.count("/") == 1 and m.endswith("/__init__.py")]
        if not so or not init:
            raise SystemExit(f"{wheel.name}: no tensorrt.so / __init__.py inside; is this a bindings wheel?")
        names = so_names(zf.read(so[0]))
        extra, version = init_names(zf.read(init[0]).decode())
    if version is None:
        raise SystemExit(f"{wheel.name}: no __version__ in __init__.py")
    names |= {n for n in extra if not n.startswith("_") or n == "__version__"}
    return version, sorted(names), digest


def write_list(out_dir: Path, wheel: Path, version: str, names: list[str], digest: str) -> Path:
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / f"trt-{version}.txt"
    header = [
        f"# TensorRT {version} Python API names, extracted by tools/extract_trt_names.py",
        f"# from {wheel.name} (sha256 {digest})",
        "# a name that is a suffix of a listed string counts as present (linker string merging)",
    ]
    path.write_text("\n".join(header + names) + "\n")
    return path


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--wheel", action="append", type=Path, help="a downloaded bindings wheel (repeatable)")
    ap.add_argument("--out", type=Path, default=DEFAULT_OUT, help=f"output folder (default {DEFAULT_OUT})")
    args = ap.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        wheels = args.wheel or download(WHEELS, Path(tmp))
        for wheel in wheels:
            version, names, digest = extract(wheel)
            path = write_list(args.out, wheel, version, names, digest)
            print(f"{wheel.name}: TensorRT {version}, {len(names)} names -> {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
