"""The TensorRT API name lists committed under tests/data/tensorrt/ (see tools/extract_trt_names.py)."""

from __future__ import annotations

import functools
from pathlib import Path

DATA = Path(__file__).resolve().parent.parent / "data" / "tensorrt"
VERSIONS = ("8.6.1", "10.3.0", "11.4.0.106")


class NameList:
    """Names present in one TensorRT version's bindings.

    A name counts as present if it is a stored string or the tail of one: the linker merges a short
    string into the end of a longer one (`INT8` is stored only inside `UINT8`).
    """

    def __init__(self, version: str, names: set[str]) -> None:
        self.version = version
        self.names = names
        self._suffixes = {n[i:] for n in names for i in range(len(n))}

    def __contains__(self, name: str) -> bool:
        return name in self._suffixes

    def exact(self, name: str) -> bool:
        return name in self.names


@functools.cache
def load_names(version: str) -> NameList:
    path = DATA / f"trt-{version}.txt"
    lines = path.read_text().splitlines()
    return NameList(version, {ln.strip() for ln in lines if ln.strip() and not ln.startswith("#")})
