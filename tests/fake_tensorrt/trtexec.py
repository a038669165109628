"""FAKE trtexec command-line parsing: which build options each TensorRT version's trtexec accepts.

trtexec rejects an option it does not know ("Unknown option: ..." and exit), so a printed hand-off line
carrying one option too new for a version its label names fails on the device. The tables list only
the options edgeseg prints, per version, from NVIDIA/TensorRT `samples/common/sampleOptions.cpp`:
  - 8.5.2: `--onnx`, `--saveEngine`, `--memPoolSize`, `--timingCacheFile`, `--useDLACore`,
    `--allowGPUFallback`, `--minShapes/--optShapes/--maxShapes`, `--fp16`, `--int8`, `--calib`;
    no `--builderOptimizationLevel`, `--versionCompatible` or `--stronglyTyped`.
  - 8.6.1: adds `--builderOptimizationLevel` and `--versionCompatible` (with `--hardwareCompatibilityLevel`).
  - 10.x: adds `--stronglyTyped`.
  - 11.x: `--fp16`, `--int8` and `--calib` are gone with the weak typing and the calibrators (TensorRT 11
    migration guide); `--stronglyTyped` is kept as a deprecated no-op.
"""

from __future__ import annotations

import shlex

_85 = frozenset(
    {"--onnx", "--saveEngine", "--memPoolSize", "--timingCacheFile", "--useDLACore", "--allowGPUFallback",
     "--minShapes", "--optShapes", "--maxShapes", "--fp16", "--int8", "--calib"}
)  # fmt: skip
_86 = _85 | {"--builderOptimizationLevel", "--versionCompatible"}
_10 = _86 | {"--stronglyTyped"}
_11 = _10 - {"--fp16", "--int8", "--calib"}
OPTIONS = {"8.5": _85, "8.6": _86, "10": _10, "11": _11}

# the TensorRT versions each hand-off label names (edgeseg.export.tensorrt_plan.HANDOFF_LABELS)
VERSIONS_OF_LABEL = {
    "trtexec_8": ("8.5", "8.6"),
    "trtexec_8_5": ("8.5",),
    "trtexec_8_6": ("8.6",),
    "trtexec_10": ("10",),
    "trtexec_11": ("11",),
}


def unknown_options(command: str, version: str) -> list[str]:
    """The options of a `trtexec ...` line that `version`'s trtexec would reject as unknown."""
    words = shlex.split(command)
    assert words[0] == "trtexec", command
    return [w.split("=", 1)[0] for w in words[1:] if w.split("=", 1)[0] not in OPTIONS[version]]
