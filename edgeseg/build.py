"""`edgeseg build`: the one place that decides what a build makes and in which order.

    export (FP32 ONNX) --fp16--> <name>.fp16.onnx                 (export/fp16.py: the one FP16 path)
                       --int8--> <name>.int8.cpu.onnx / .int8.qdq.onnx, gated on mIoU (calib/)
    --target tensorrt  -------> <name>.<precision>.engine + sidecar (export/tensorrt_build.py),
                                or, without TensorRT or a GPU, the hand-off to the device

Every artifact is scored against FP32 on held-out data (`calib.gate`): an INT8 form that loses more
than `max_miou_drop` moves its most sensitive layers back to float until it does not, or the build
reports the failure. TensorRT takes precision only from the graph (an FP16 graph or Q/DQ nodes), so
its engine is built from the same files. Options are checked when `BuildOptions` is made (a frozen
dataclass, validated once in `__post_init__`), so a mistake fails before any work starts.

The CLI (`edgeseg/cli/build.py`) parses options into `BuildOptions`, calls `build`, and prints.
"""

from __future__ import annotations

import dataclasses
import enum
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from edgeseg.artifacts import (
    INT8_FORMS,
    card_path,
    engine_path,
    int8_path,
    legacy_calib_cache_path,
    read_card,
)
from edgeseg.card import ModelCard
from edgeseg.defaults import CALIB_IMAGES, CPU_INT8_FORMAT, GATE_IMAGES, MAX_MIOU_DROP
from edgeseg.errors import EdgesegError
from edgeseg.progress import Progress

TARGETS = ("onnxruntime", "tensorrt")

if TYPE_CHECKING:  # the stages are imported when a build runs
    from edgeseg.calib.activation_ranges import CalibrationStats
    from edgeseg.calib.gate import GateFailed, GateResult, Score
    from edgeseg.export.tensorrt_build import EngineResult
    from edgeseg.export.tensorrt_plan import EngineOptions, Handoff


@dataclass(frozen=True)
class BuildOptions:
    """What to build, checked once when made. `engine` carries the TensorRT options (target tensorrt)."""

    target: str = "onnxruntime"
    fp16: bool = False
    int8: bool = False
    forms: tuple[str, ...] = INT8_FORMS  # onnxruntime target: cpu (ORT U8S8) and/or qdq (TensorRT form)
    calib_data: str | None = None
    calib_images: int = CALIB_IMAGES
    calib_method: str = "entropy"
    calib_seed: int = 0
    calib_cache: Path | None = None
    eval_data: str | None = None
    eval_images: int = GATE_IMAGES
    max_miou_drop: float = MAX_MIOU_DROP  # points
    max_fallback_layers: int | None = None
    cpu_format: str = CPU_INT8_FORMAT
    qdq_engine: str = "auto"
    threads: int | None = None  # ONNX Runtime threads for the gate's evaluations
    card: ModelCard | None = None  # for an ONNX made elsewhere (--card)
    engine: EngineOptions | None = None  # TensorRT: workspace, timing cache, DLA, shapes, ...
    output: Path | None = None  # TensorRT: the engine file (default <name>.<precision>.engine)
    cuda: str | None = None  # TensorRT: CUDA binding preference

    def __post_init__(self) -> None:
        """Every option mistake fails here, before minutes of evaluation, not after."""
        from edgeseg.calib.activation_ranges import METHODS
        from edgeseg.calib.quantize import CPU_FORMATS, QDQ_ENGINES

        if self.target not in TARGETS:
            raise EdgesegError(f"unknown --target {self.target!r}; choose {' or '.join(TARGETS)}")
        if not (self.fp16 or self.int8) and self.target == "onnxruntime":
            raise EdgesegError("nothing to build: pass --fp16 and/or --int8")
        unknown = [f for f in self.forms if f not in INT8_FORMS]
        if unknown or not self.forms:
            raise EdgesegError(f"unknown INT8 form(s) {unknown}; choose from {', '.join(INT8_FORMS)}")
        if self.max_miou_drop < 0:
            raise EdgesegError(f"--max-miou-drop must be >= 0, got {self.max_miou_drop}")
        if self.calib_method not in METHODS:
            raise EdgesegError(
                f"unknown calibration method {self.calib_method!r}; choose one of {', '.join(METHODS)}"
            )
        if self.cpu_format not in CPU_FORMATS:
            raise EdgesegError(f"unknown --cpu-format {self.cpu_format!r}; choose {' or '.join(CPU_FORMATS)}")
        if self.qdq_engine not in QDQ_ENGINES:
            raise EdgesegError(f"unknown --qdq-engine {self.qdq_engine!r}; choose {', '.join(QDQ_ENGINES)}")

    @property
    def legacy_calibrator(self) -> bool:
        return self.target == "tensorrt" and self.engine is not None and self.engine.legacy_calibrator

    def for_dla(self) -> BuildOptions:
        """INT8 for a DLA core takes TensorRT's implicit calibrator: DLA runs no Q/DQ network before
        TensorRT 11 (its layers would fall back to the GPU), so no Q/DQ file is made for it."""
        engine = self.engine
        if self.target != "tensorrt" or not self.int8 or engine is None or engine.dla_core is None:
            return self
        if engine.legacy_calibrator:
            return self
        engine = dataclasses.replace(engine, precision="int8", legacy_calibrator=True)
        return dataclasses.replace(self, engine=engine)


class PartialBuild(EdgesegError):
    """A build that failed after writing some files: `cause` is the failure (its exit code is this
    error's), `complete` the files written before it, each complete (written atomically, and scored).
    The one error line names them, so a set that looks half-made is explained."""

    def __init__(self, cause: EdgesegError, complete: tuple[Path, ...]) -> None:
        names = ", ".join(p.name for p in complete)
        super().__init__(f"{cause}; complete before the failure: {names}", exit_code=cause.exit_code)
        self.cause = cause
        self.complete = complete


@dataclass
class Row:
    """One artifact of the build, scored against FP32."""

    artifact: Path
    precision: str  # fp32 | fp16 | int8-cpu | int8-qdq
    size_bytes: int
    miou: float | None  # 0..1, like every other report
    drop: float | None  # points
    agreement: float | None  # 0..1
    note: str = ""
    runtime: str | None = None  # the runtime that scored it (the one that runs it: docs/runtime.md)

    def to_dict(self) -> dict[str, Any]:
        return {
            "artifact": str(self.artifact),
            "precision": self.precision,
            "runtime": self.runtime,
            "size_bytes": self.size_bytes,
            "miou": self.miou,
            "miou_drop_points": self.drop,
            "argmax_agreement": self.agreement,
            "note": self.note,
        }


@dataclass
class BuildResult:
    """What a build made: the scored ONNX artifacts, and for TensorRT the engine or the hand-off."""

    model: Path
    card: ModelCard
    rows: list[Row] = field(default_factory=list)
    stats: CalibrationStats | None = None
    gates: list[GateResult] = field(default_factory=list)
    eval_spec: str | None = None
    reference: str | None = None
    failure: GateFailed | None = None  # an INT8 form failed its gate (nothing new was written)
    engine: EngineResult | None = None
    handoff: Handoff | None = None

    def artifact(self, precision: str) -> Path | None:
        return next((r.artifact for r in self.rows if r.precision == precision), None)

    def to_dict(self) -> dict[str, Any]:
        return {
            "model": str(self.model),
            "eval_data": self.eval_spec,
            "reference": self.reference,
            "calibration": self.stats.describe() if self.stats else None,
            "artifacts": [r.to_dict() for r in self.rows],
            "gates": [g.to_dict(self.card.classes) for g in self.gates],
            "passed": self.failure is None,
            "error": str(self.failure) if self.failure else None,
        }


def build(model_path: Path, opts: BuildOptions, progress: Progress | None = None) -> BuildResult:
    """Make what `opts` asks for beside `model_path` (an FP32 export, or for TensorRT an FP16/Q/DQ ONNX
    to build as is). A failed INT8 gate is returned in `failure`, after its rows, so callers can show
    what was tried; nothing after it (the engine) is built."""
    opts = opts.for_dla()
    model_path = Path(model_path)
    own, carried = _carried(model_path)
    card = opts.card or own or read_card(model_path)  # the last raises the one-line "no card" error
    if opts.target == "tensorrt" and carried != "fp32":
        # an FP16 / Q/DQ ONNX made earlier (e.g. copied to the device): build the engine from it as is
        result = BuildResult(model=model_path, card=card)
        return _tensorrt(result, model_path, carried, opts, progress)
    if card.precision != "fp32" or carried != "fp32":
        already = carried if carried != "fp32" else card.precision
        raise EdgesegError(f"{model_path.name} is already {already}; build from the FP32 export")
    result = BuildResult(model=model_path, card=card)
    if opts.fp16 or (opts.int8 and not opts.legacy_calibrator):
        try:
            _onnx_variants(result, opts, progress)
        except EdgesegError as exc:
            complete = tuple(r.artifact for r in result.rows if r.precision != "fp32" and r.size_bytes)
            if complete:
                raise PartialBuild(exc, complete) from exc
            raise
        if result.failure is not None:
            return result
    if opts.target == "tensorrt":
        precision = "int8" if opts.int8 else "fp16" if opts.fp16 else "fp32"
        source = model_path
        if precision == "fp16":
            source = result.artifact("fp16") or model_path
        elif precision == "int8" and not opts.legacy_calibrator:
            source = result.artifact("int8-qdq") or model_path
        return _tensorrt(result, source, precision, opts, progress)
    return result


def _carried(path: Path) -> tuple[ModelCard | None, str]:
    """The file's own card (None for an ONNX made elsewhere) and the precision it carries: its card's,
    else what its graph shows (an FP16 graph or Q/DQ nodes)."""
    try:
        own = read_card(path)
    except EdgesegError:
        from edgeseg.export.graph import load_onnx
        from edgeseg.export.tensorrt_plan import inspect_onnx

        return None, inspect_onnx(load_onnx(path, load_external_data=False)).precision
    return own, own.precision


# ------------------------------------------------------------------------------------------ ONNX
def _onnx_variants(result: BuildResult, opts: BuildOptions, progress: Progress | None) -> None:
    """FP16 and INT8 files beside the export, each scored against FP32 by the same gate."""
    from edgeseg.calib.activation_ranges import calibrate
    from edgeseg.calib.data import open_calibration
    from edgeseg.calib.gate import Gate, GateFailed, forms_failed, gated_quantize, open_eval_data
    from edgeseg.export.fp16 import write_fp16

    model_path, card = result.model, result.card
    quantize = opts.int8 and not opts.legacy_calibrator
    # both data sets are opened before minutes of evaluation, so a wrong folder fails first
    calib = open_calibration(opts.calib_data, card, opts.calib_images, opts.calib_seed) if quantize else None
    same_source = calib is not None and (opts.eval_data or opts.calib_data) == opts.calib_data
    data = open_eval_data(opts.eval_data, card, opts.eval_images, fallback=opts.calib_data,
                          calibrated_on=calib.names if same_source and calib is not None else ())  # fmt: skip
    # each file is scored on the runtime that will run it: here by the CPU rule, ONNX Runtime standing
    # in for TensorRT (docs/int8.md)
    stand_in = "onnxruntime" if opts.target == "tensorrt" else None
    gate = Gate(model_path, card, data, threads=opts.threads, progress=progress, stand_in=stand_in)
    result.eval_spec, result.reference = data.spec, data.reference
    result.rows.append(_row(model_path, "fp32", gate.fp32, gate, note="reference"))

    if opts.fp16:
        if progress:
            progress("converting to FP16", 0, 1)
        fp16_path, _ = write_fp16(model_path, card=card)
        if progress:
            progress("converting to FP16", 1, 1)  # the bar completes, and logs get its end line
        result.rows.append(_row(fp16_path, "fp16", gate.score(fp16_path, "evaluating FP16"), gate))

    if calib is None:
        return
    forms = ("qdq",) if opts.target == "tensorrt" else opts.forms  # TensorRT reads INT8 from Q/DQ
    result.stats = calibrate(
        model_path,
        card,
        calib,
        method=opts.calib_method,
        seed=opts.calib_seed,
        cache_path=opts.calib_cache,
        progress=progress,
    )
    failures: list[GateFailed] = []
    for form in forms:
        target = int8_path(model_path, form)
        try:
            gated = gated_quantize(
                form,
                model_path,
                card,
                result.stats,
                target,
                gate,
                calib,
                max_drop=opts.max_miou_drop,
                max_fallback_layers=opts.max_fallback_layers,
                quantize_kwargs=(
                    {"cpu_format": opts.cpu_format}
                    if form == "cpu"
                    else {"engine": opts.qdq_engine, "calib": calib}
                ),
                progress=progress,
            )
        except GateFailed as failed:
            # The rejected model was never written under its name (calib.gate stages it).
            result.gates.append(failed.result)
            previous = _keep_previous(target)
            if previous is Previous.KEPT:  # the one error line says it too
                failed = failed.keeping(target)
            result.rows.append(_gate_row(failed.result, gate, previous.note(target), written=False))
            failures.append(failed)
            result.failure = forms_failed(failures)
            continue
        result.gates.append(gated)
        n_float = len(gated.artifact.excluded)  # never all of them: that is no INT8 (calib.gate)
        note = f"{n_float} layer(s) kept in float" if n_float else ""
        result.rows.append(_gate_row(gated, gate, note))


class Previous(enum.Enum):
    """What a failed gate leaves under the artifact's name."""

    NONE = "FAILED gate, not written"
    KEPT = "FAILED gate; kept the previous {name}, which passed its own gate"
    REMOVED = "FAILED gate; removed an unchecked {name}"

    def note(self, target: Path) -> str:
        return self.value.format(name=target.name)


def _keep_previous(target: Path) -> Previous:
    """After a failed gate: keep an earlier artifact whose own gate passed; remove one that carries
    no passed gate (an unchecked leftover must not look deployable)."""
    if not target.exists():
        return Previous.NONE
    try:
        passed = bool(read_card(target).extra.get("int8", {}).get("gate", {}).get("passed"))
    except EdgesegError:
        passed = False
    if passed:
        return Previous.KEPT
    target.unlink(missing_ok=True)
    card_path(target).unlink(missing_ok=True)
    return Previous.REMOVED


def _row(
    path: Path, precision: str, score: Score | None, gate: Any, note: str = "", written: bool = True
) -> Row:
    from edgeseg.calib.gate import fraction

    return Row(
        artifact=path,
        precision=precision,
        size_bytes=path.stat().st_size if written and path.exists() else 0,
        miou=fraction(score.miou) if score else None,
        drop=round(gate.drop_points(score), 3) if score else None,
        agreement=round(score.agreement, 5) if score else None,
        note=note,
        runtime=getattr(gate, "runtimes", {}).get(path),
    )


def _gate_row(gated: GateResult, gate: Any, note: str, written: bool = True) -> Row:
    row = _row(gated.artifact.path, f"int8-{gated.form}", gated.int8, gate, note, written)
    row.runtime = gated.runtime
    return row


# ------------------------------------------------------------------------------------------ TensorRT
def _tensorrt(
    result: BuildResult, source: Path, precision: str, opts: BuildOptions, progress: Progress | None
) -> BuildResult:
    """The engine from `source` here, or the hand-off when this machine has no TensorRT or GPU."""
    from edgeseg.export.graph import load_onnx
    from edgeseg.export.tensorrt_build import build_engine, tensorrt_unavailable_reason
    from edgeseg.export.tensorrt_plan import (
        EngineOptions,
        Handoff,
        describe_profile,
        handoff_commands,
        inspect_onnx,
        profile_shapes,
    )

    engine_opts = dataclasses.replace(opts.engine or EngineOptions(), precision=precision)
    legacy = engine_opts.legacy_calibrator
    engine_file = opts.output or engine_path(
        result.model, precision, legacy=legacy, dla_core=engine_opts.dla_core
    )
    if legacy:
        engine_opts = dataclasses.replace(
            engine_opts,
            calibration_cache=engine_opts.calibration_cache or legacy_calib_cache_path(result.model),
            calibration_batches=_calibration_batches(result.card, opts),
        )

    reason = tensorrt_unavailable_reason(opts.cuda)
    if reason is not None:
        graph = inspect_onnx(load_onnx(source, load_external_data=False))
        profiles = profile_shapes(graph, engine_opts, result.card)
        commands, notes = handoff_commands(
            source, engine_file, engine_opts, profiles, graph, calib_data=opts.calib_data
        )
        notes = describe_profile(profiles) + notes
        result.handoff = Handoff(
            reason, source, Path(engine_file), precision, commands, folder=source.parent, notes=notes
        )
        return result

    from edgeseg.runtime.cuda_mem import open_cuda

    cuda = open_cuda(opts.cuda)
    try:
        result.engine = build_engine(
            source, engine_file, engine_opts, card=result.card, cuda=cuda, progress=progress
        )
    finally:
        cuda.close()
    return result


def _calibration_batches(card: ModelCard, opts: BuildOptions) -> Callable[[], Iterable[np.ndarray]]:
    """Preprocessed calibration inputs for TensorRT's implicit-INT8 calibrator (the same selection and
    preprocessing as the Q/DQ path), produced only when the builder asks for them."""

    def batches() -> Iterable[np.ndarray]:
        from edgeseg.calib.data import open_calibration

        calib = open_calibration(opts.calib_data, card, n=opts.calib_images, seed=opts.calib_seed)
        return calib.batches(card)

    return batches
