"""The TensorRT API name lists committed under tests/data/tensorrt/ (see tools/extract_trt_names.py).

TensorRT 8.5 (JetPack 5.1.x ships 8.5.2) has no bindings wheel on PyPI, so its list is the 8.6.1 list
minus the names TensorRT 8.6 added: the names registered in the pybind sources of NVIDIA/TensorRT tag
v8.6.1 (`python/src/**`) but not in tags 8.5.2 / 8.5.3 (identical to each other). Every name 8.5 binds
is also bound by 8.6, so removing the difference gives 8.5's surface. `ADDED_IN_8_6` lists those API
names (generic keyword-argument strings such as "handle" or "builder" are left out: the 8.6 wheel may
store them for other reasons).
"""

from __future__ import annotations

import functools
from pathlib import Path

DATA = Path(__file__).resolve().parent.parent / "data" / "tensorrt"
WHEEL_VERSIONS = ("8.6.1", "10.3.0", "11.4.0.106")  # lists extracted from NVIDIA's bindings wheels
VERSIONS = ("8.5.2", *WHEEL_VERSIONS)  # 8.5.2: derived from 8.6.1 (see ADDED_IN_8_6)

# pybind names in NVIDIA/TensorRT v8.6.1 python/src but not in 8.5.2/8.5.3 (API names only)
ADDED_IN_8_6 = frozenset(
    {
        "VERSION_COMPATIBLE", "EXCLUDE_LEAN_RUNTIME", "builder_optimization_level",
        "hardware_compatibility_level", "HardwareCompatibilityLevel", "AMPERE_PLUS",
        "engine_host_code_allowed", "max_aux_streams", "plugins_to_serialize", "TempfileControlFlag",
        "tempfile_control_flags", "temporary_directory", "ALLOW_IN_MEMORY_FILES", "ALLOW_TEMPORARY_FILES",
        "OnnxParserFlag", "NATIVE_INSTANCENORM", "load_runtime", "get_used_vc_plugin_libraries",
        "ICastLayer", "add_cast", "INormalizationLayer", "add_normalization", "IReverseSequenceLayer",
        "add_reverse_sequence", "FP8", "PROFILE_SHARING_0806", "TACTIC_DRAM", "DHWC", "aux_streams",
        "set_aux_streams", "num_aux_streams",
    }
)  # fmt: skip


class NameList:
    """Names present in one TensorRT version's bindings.

    A name counts as present if it is a stored string or the tail of one: the linker merges a short
    string into the end of a longer one (`INT8` is stored only inside `UINT8`). `absent` names are
    missing whatever the strings say (a list derived from another version's).
    """

    def __init__(self, version: str, names: set[str], absent: frozenset[str] = frozenset()) -> None:
        self.version = version
        self.names = names - absent
        self.absent = absent
        # suffixes of every stored string, removed ones included: a name merged into the tail of a
        # removed 8.6-only string (`serialize` in `plugins_to_serialize`) is still bound in 8.5
        self._suffixes = {n[i:] for n in names for i in range(len(n))}

    def __contains__(self, name: str) -> bool:
        return name not in self.absent and name in self._suffixes

    def exact(self, name: str) -> bool:
        return name in self.names


@functools.lru_cache(maxsize=None)  # noqa: UP033 - functools.cache is 3.9+: the fakes run on 3.8 too
def load_names(version: str) -> NameList:
    if version == "8.5.2":
        base = load_names("8.6.1")
        return NameList(version, set(base.names), ADDED_IN_8_6)
    path = DATA / f"trt-{version}.txt"
    lines = path.read_text().splitlines()
    return NameList(version, {ln.strip() for ln in lines if ln.strip() and not ln.startswith("#")})
