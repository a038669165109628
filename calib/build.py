"""`edgeseg build` for ONNX Runtime: FP16 and gated INT8 artifacts beside the export.

    <wd>/<name>/<name>.onnx              FP32 export (input)
    <wd>/<name>/<name>.fp16.onnx         FP16 graph, FP32 I/O (edgeseg.export.fp16.to_fp16)
    <wd>/<name>/<name>.int8.cpu.onnx     ONNX Runtime CPU INT8 (U8S8)
    <wd>/<name>/<name>.int8.qdq.onnx     TensorRT-form Q/DQ INT8 (S8S8 symmetric), runs in ORT too
    <wd>/<name>/<name>.calib.json        calibration statistics cache

The CLI (`edgeseg/cli/build.py`) only parses options and prints; everything else is here.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edgeseg.calib.data import open_calibration, require_calibration_data
from edgeseg.calib.gate import Gate, GateFailed, GateResult, Score, gated_quantize, open_eval_data
from edgeseg.calib.quantize import (
    CPU_FORMATS,
    DEFAULT_CPU_FORMAT,
    FORMS,
    QDQ_ENGINES,
    artifact_path,
    load_model,
)
from edgeseg.calib.stats import METHODS, CalibrationStats, calibrate
from edgeseg.card import ModelCard
from edgeseg.errors import EdgesegError

Progress = Callable[[str, int, int], Any]


@dataclass
class BuildOptions:
    fp16: bool = False
    int8: bool = True
    forms: tuple[str, ...] = FORMS
    calib_data: str | None = None
    calib_images: int = 64
    calib_method: str = "entropy"
    calib_seed: int = 0
    calib_cache: Path | None = None
    eval_data: str | None = None
    eval_images: int = 16
    max_miou_drop: float = 1.0
    max_fallback_layers: int | None = None
    cpu_format: str = DEFAULT_CPU_FORMAT
    qdq_engine: str = "auto"
    threads: int | None = None


@dataclass
class Row:
    artifact: Path
    precision: str
    size_bytes: int
    miou: float | None  # percent
    drop: float | None  # points
    agreement: float | None  # 0..1
    note: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {
            "artifact": str(self.artifact),
            "precision": self.precision,
            "size_bytes": self.size_bytes,
            "miou": self.miou,
            "miou_drop_points": self.drop,
            "argmax_agreement": self.agreement,
            "note": self.note,
        }


@dataclass
class BuildReport:
    model: Path
    card: ModelCard
    rows: list[Row] = field(default_factory=list)
    stats: CalibrationStats | None = None
    gates: list[GateResult] = field(default_factory=list)
    eval_spec: str | None = None
    reference: str | None = None
    failure: GateFailed | None = None

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


def _pct(x: float) -> float | None:
    return None if x != x else round(100.0 * x, 3)


def _row(
    path: Path, precision: str, score: Score | None, fp32: Score | None, gate: Gate | None, note=""
) -> Row:
    return Row(
        artifact=path,
        precision=precision,
        size_bytes=path.stat().st_size if path.exists() else 0,
        miou=_pct(score.miou) if score else None,
        drop=round(gate.drop_points(score), 3) if (score and gate and fp32) else None,
        agreement=round(score.agreement, 5) if score else None,
        note=note,
    )


def artifact_precision(path: Path) -> str:
    """The precision an edgeseg ONNX carries in its card ("fp32" when it has no card)."""
    import onnx

    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception:  # the full load in build_onnxruntime gives the one-line error
        return "fp32"
    props = {p.key: p.value for p in model.metadata_props}
    try:
        return ModelCard.from_metadata_props(props).precision
    except EdgesegError:
        return "fp32"


def build_onnxruntime(model_path: Path, opts: BuildOptions, progress: Progress | None = None) -> BuildReport:
    """FP16 and/or INT8 artifacts for ONNX Runtime, each scored against FP32 on the held-out data.

    Raises `GateFailed` (after writing the report's rows) when an INT8 form cannot meet the limit.
    """
    if not (opts.fp16 or opts.int8):
        raise EdgesegError("nothing to build: pass --fp16 and/or --int8")
    unknown = [f for f in opts.forms if f not in FORMS]
    if unknown:
        raise EdgesegError(f"unknown INT8 form(s) {unknown}; choose from {', '.join(FORMS)}")
    if opts.max_miou_drop < 0:
        raise EdgesegError(f"--max-miou-drop must be >= 0, got {opts.max_miou_drop}")
    # option mistakes fail before minutes of evaluation, not after
    if opts.calib_method not in METHODS:
        raise EdgesegError(
            f"unknown calibration method {opts.calib_method!r}; choose one of {', '.join(METHODS)}"
        )
    if opts.cpu_format not in CPU_FORMATS:
        raise EdgesegError(f"unknown --cpu-format {opts.cpu_format!r}; choose {' or '.join(CPU_FORMATS)}")
    if opts.qdq_engine not in QDQ_ENGINES:
        raise EdgesegError(f"unknown --qdq-engine {opts.qdq_engine!r}; choose {', '.join(QDQ_ENGINES)}")
    model_path = Path(model_path)
    model = load_model(model_path)
    try:
        card = ModelCard.from_metadata_props({p.key: p.value for p in model.metadata_props})
    except EdgesegError:
        sidecar = model_path.with_suffix(".card.json")
        if not sidecar.is_file():
            raise
        card = ModelCard.load_json(sidecar)
    del model
    if card.precision != "fp32":
        raise EdgesegError(f"{model_path.name} is already {card.precision}; build from the FP32 export")

    if opts.int8:
        require_calibration_data(opts.calib_data, card)  # before minutes of FP32 evaluation
    data = open_eval_data(opts.eval_data, card, opts.eval_images, fallback=opts.calib_data)
    gate = Gate(model_path, card, data, threads=opts.threads, progress=progress)
    report = BuildReport(model=model_path, card=card, eval_spec=data.spec, reference=data.reference)
    report.rows.append(_row(model_path, "fp32", gate.fp32, gate.fp32, gate, note="reference"))

    if opts.fp16:
        from edgeseg.export.fp16 import to_fp16

        fp16_path = model_path.with_name(f"{model_path.stem}.fp16.onnx")
        if progress:
            progress("converting to FP16", 0, 1)
        to_fp16(model_path, fp16_path)
        score = gate.score(fp16_path, "evaluating FP16")
        report.rows.append(_row(fp16_path, "fp16", score, gate.fp32, gate))

    if opts.int8:
        calib = open_calibration(opts.calib_data, card, opts.calib_images, opts.calib_seed)
        stats = calibrate(
            model_path,
            card,
            calib,
            method=opts.calib_method,
            seed=opts.calib_seed,
            cache_path=opts.calib_cache,
            progress=progress,
        )
        report.stats = stats
        for form in opts.forms:
            target = artifact_path(model_path, form)
            try:
                result = gated_quantize(
                    form,
                    model_path,
                    card,
                    stats,
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
                # A rejected INT8 model must not lie around looking deployable.
                report.gates.append(failed.result)
                report.rows.append(_gate_row(failed.result, gate, "FAILED gate, removed"))
                target.unlink(missing_ok=True)
                target.with_suffix(".card.json").unlink(missing_ok=True)
                report.failure = failed
                continue
            report.gates.append(result)
            n_float = len(result.artifact.excluded)
            note = f"{n_float} layer(s) kept in float" if n_float else ""
            if n_float and n_float == len(result.sensitivity):
                note = f"all {n_float} layers kept in float: no INT8 compute left"
            report.rows.append(_gate_row(result, gate, note))
    return report


def _gate_row(result: GateResult, gate: Gate, note: str) -> Row:
    form = "int8-qdq" if result.form == "qdq" else "int8-cpu"
    return _row(result.artifact.path, form, result.int8, gate.fp32, gate, note)
