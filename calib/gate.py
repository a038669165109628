"""The accuracy gate: INT8 ships only if its measured mIoU stays within `--max-miou-drop` of FP32.

1. FP32 and INT8 run through the runtime's `Segmenter` on held-out images (`--eval-data`, default
   generated scenes from the held-out seed); mIoU and per-class IoU come from one
   `edgeseg.metrics.ConfusionMatrix` each, plus the pixel agreement of the two class maps.
2. If the drop exceeds the limit, quantizable layers are ranked by sensitivity: each layer is quantized
   *alone* (all others float) and the error it causes at the net's output on a few calibration images
   is measured (argmax disagreement, then normalised logit MSE as tie-breaker). Isolation measures
   the layer's own damage instead of the error it inherits from earlier layers.
3. The most sensitive layers go back to float one at a time, re-quantizing from the same cached
   statistics (never recalibrating), until the drop is within the limit. If even that fails the gate
   raises `GateFailed` with every attempt, so the CLI can print what was tried and exit non-zero.

Every candidate (and every single-layer probe of step 2) is made and scored in memory: ONNX Runtime
reads the serialized model. Only the candidate that passes is written, once, under its final name,
the verdict already in its card; a failure, Ctrl-C or crash leaves the target as it was.

Without ground truth for the model's label set (eval data with other classes), FP32's own predictions
serve as the reference; the report says so.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from edgeseg.calib.activation_ranges import CalibrationStats
from edgeseg.calib.data import CalibrationSet
from edgeseg.calib.quantize import QuantizedArtifact, make_form, quantizable_nodes
from edgeseg.card import ModelCard
from edgeseg.defaults import GATE_IMAGES, MAX_MIOU_DROP
from edgeseg.errors import EdgesegError, ExitCode
from edgeseg.metrics import ConfusionMatrix, SegMetrics, drop_points
from edgeseg.runtime.backends import BackendOptions

PROBE_IMAGES = 4
EVAL_SEED = 1  # picks evaluation images from an image source apart from calibration's seed 0


@dataclass
class EvalData:
    """Held-out RGB images with masks (None when unlabelled) in the model's label space."""

    spec: str
    images: list[np.ndarray]
    masks: list[np.ndarray | None]
    reference: str  # "labels" (ground truth) or "fp32" (FP32 predictions as reference)

    def __len__(self) -> int:
        return len(self.images)


@dataclass
class Score:
    miou: float  # 0..1
    iou: list[float]
    agreement: float  # pixel agreement with FP32 class maps, 0..1
    metrics: SegMetrics | None = None


@dataclass
class Attempt:
    excluded: list[str]
    miou: float
    drop_points: float
    agreement: float
    passed: bool


@dataclass
class GateResult:
    form: str
    artifact: QuantizedArtifact
    fp32: Score
    int8: Score
    drop_points: float
    limit_points: float
    attempts: list[Attempt] = field(default_factory=list)
    sensitivity: list[tuple[str, float]] = field(default_factory=list)
    runtime: str | None = None  # the runtime that scored the INT8 file

    @property
    def passed(self) -> bool:
        return self.drop_points <= self.limit_points + 1e-9

    def to_dict(self, classes: list[str]) -> dict[str, Any]:
        return {
            "form": self.form,
            "artifact": str(self.artifact.path),
            "fp32_miou": fraction(self.fp32.miou),
            "int8_miou": fraction(self.int8.miou),
            "drop_points": round(self.drop_points, 3),
            "max_drop_points": self.limit_points,
            "argmax_agreement": round(self.int8.agreement, 5),
            "passed": self.passed,
            "runtime": self.runtime,
            "excluded_nodes": self.artifact.excluded,
            "per_class_iou": {
                c: {"fp32": fraction(a), "int8": fraction(b)}
                for c, a, b in zip(classes, self.fp32.iou, self.int8.iou)
            },
            "attempts": [a.__dict__ for a in self.attempts],
            "sensitivity": [{"node": n, "error": round(e, 6)} for n, e in self.sensitivity],
        }


ADVICE = (
    "raise --max-miou-drop, allow more layers in float with --max-fallback-layers where it stopped "
    "the fallback, calibrate with more or better --calib-data, or try another --calib-method"
)


class GateFailed(EdgesegError):
    """The drop stayed above the limit after every fallback step; carries the full report.
    `summary` is what failed in a few words ("cpu loses 3.10 mIoU points with 2 of 5 layers in float")
    for a message naming several failed forms. `kept_previous`: an earlier artifact of that name,
    which passed its own gate, stays in place (message and summary say so)."""

    def __init__(
        self, message: str, result: GateResult, summary: str = "", *, kept_previous: Path | None = None
    ) -> None:
        kept = f"kept the previous {kept_previous.name}, which passed its own gate" if kept_previous else ""
        super().__init__(f"{message}; {kept}" if kept else message, exit_code=ExitCode.GATE_FAILED)
        self.reason = message
        self.result = result
        self.kept_previous = kept_previous
        self.given_summary = summary
        self.summary = (summary or message) + (f", {kept}" if kept else "")

    def keeping(self, previous: Path) -> GateFailed:
        """The same failure, saying that `previous` (which passed its own gate) was kept."""
        return GateFailed(self.reason, self.result, self.given_summary, kept_previous=previous)


def forms_failed(failures: Sequence[GateFailed]) -> GateFailed:
    """One error for a build whose INT8 forms failed their gates: each form named, with what helps."""
    if len(failures) == 1:
        return failures[0]
    forms = " and ".join(f.result.form for f in failures)
    summaries = "; ".join(f.summary for f in failures)
    limit = failures[0].result.limit_points
    failed = GateFailed(
        f"INT8 {forms} both failed the gate (limit {limit:.2f} mIoU points): {summaries}; {ADVICE}",
        failures[-1].result,
    )
    return failed


def fraction(x: float) -> float | None:
    """An mIoU or IoU for reports: 0..1 like every report of edgeseg, None for NaN (not measured)."""
    return None if x != x else round(float(x), 5)


def open_eval_data(
    spec: str | None,
    card: ModelCard,
    default_n: int = GATE_IMAGES,
    *,
    fallback: str | None = None,
    calibrated_on: Collection[str] = (),
) -> EvalData:
    """`--eval-data`: 'synth[:N]', a labelled dataset folder, or unlabelled images (folder, video, glob);
    up to `default_n` images of it.

    Without SPEC: held-out generated scenes for a model of the street classes; for any other model the
    calibration data (`fallback`), else one clear error. Images named in `calibrated_on` (the
    calibration set's names, when both read the same source) are left out while others remain, so the
    gate measures images the ranges were not taken from. Labels count only when they are labels of the
    model's classes (generated scenes: the same names; a dataset: the same count, compared by index
    like `edgeseg eval`); otherwise FP32's own predictions on that data are the reference.
    """
    from edgeseg.calib.data import is_synth_spec, needs_data_error, open_images, try_dataset
    from edgeseg.data import open_dataset
    from edgeseg.data.synth import has_street_classes

    street = has_street_classes(card.classes)
    given = bool((spec or "").strip())  # ground truth the user chose must fit; a fallback may not
    if not given:
        if street:
            spec = f"synth:{default_n}"
        elif fallback:
            spec = fallback
        else:
            raise needs_data_error(card, "--calib-data (the gate then evaluates on it too) or --eval-data")
    spec = spec.strip()
    ds = None
    if is_synth_spec(spec):
        # held-out seed, at the net's input size unless the spec says synth:N@HxW
        h, w = card.input_size
        ds = open_dataset(spec, num=default_n, height=h, width=w)
        labelled = street
    else:
        path = Path(spec).expanduser()
        ds = try_dataset(path) if path.is_dir() else None
        count = len(getattr(ds, "classes", [])) if ds is not None else card.num_classes
        labelled = ds is not None and count == card.num_classes
        if count != card.num_classes and given:
            raise EdgesegError(
                f"--eval-data {spec}: the model predicts {card.num_classes} classes but the dataset has "
                f"{count}; its labels cannot score the model (give images without labels, a video or a "
                "glob, to compare INT8 with FP32's predictions)"
            )
    if ds is None:  # images without labels: a video, a glob, a plain folder
        images = open_images(spec, default_n, EVAL_SEED, what="evaluation data", exclude=calibrated_on)
        return EvalData(spec, [images.image(i) for i in range(len(images))], [None] * len(images), "fp32")
    if len(ds) == 0:
        raise EdgesegError(f"evaluation dataset {spec!r} is empty")
    if labelled and list(ds.classes) != list(card.classes) and not is_synth_spec(spec):
        from edgeseg.console import warn

        warn(f"class names differ between {card.model} and {spec}; the gate compares them by class index")
    items = [ds[i] for i in _spread_pick(ds, default_n, calibrated_on, spec)]
    return EvalData(
        spec=spec,
        images=[rgb for rgb, _ in items],
        masks=[m if labelled else None for _, m in items],
        reference="labels" if labelled else "fp32",
    )


def _spread_pick(ds: Any, n: int, exclude: Collection[str], spec: str) -> list[int]:
    """Up to `n` dataset indices spread evenly over the items not named in `exclude`."""
    from edgeseg.calib.data import held_out

    indices = list(range(len(ds)))
    names = [str(ds.name(i)) if hasattr(ds, "name") else str(i) for i in indices]
    free = held_out(names, exclude, spec, indices)
    return sorted({free[int(round(x))] for x in np.linspace(0, len(free) - 1, num=min(n, len(free)))})


def reference_warnings(
    card: ModelCard, data: EvalData, fp32: Score, fp32_labels: list[np.ndarray]
) -> list[str]:
    """Why the gate's FP32 reference may say little (issue 17): random weights, an FP32 mIoU no better
    than one class everywhere, or FP32 predictions that are one class on nearly every pixel."""
    notes = []
    if card.extra.get("random_weights"):
        notes.append(
            f"{card.model} was exported with random weights: the INT8 gate compares two versions of an "
            "untrained net, so its verdict says nothing about accuracy"
        )
    if data.reference == "labels" and fp32.metrics is not None and fp32.miou == fp32.miou:
        present = max(1, card.num_classes - len(fp32.metrics.absent))
        if fp32.miou < 1.0 / present:
            notes.append(
                f"FP32 scores mIoU {fp32.miou:.3f} on {data.spec}, less than predicting one class "
                f"everywhere could (1/{present} = {1 / present:.3f}): the model looks untrained or the data "
                "unlike its training data, so the INT8 drop measured against it says little"
            )
    if fp32_labels:
        counts = np.bincount(np.concatenate([m.ravel() for m in fp32_labels]), minlength=card.num_classes)
        top = int(counts.argmax())
        share = counts[top] / max(int(counts.sum()), 1)
        if share > 0.99:
            name = card.classes[top] if top < card.num_classes else str(top)
            notes.append(
                f"FP32 predicts {name!r} on {share:.1%} of the pixels of {data.spec}: agreement with it "
                "says little about INT8's accuracy"
            )
    return notes


def _segmenter(source: Path | QuantizedArtifact, options: BackendOptions):
    """A file, or a candidate in memory, opened with the gate's options: its card is the build's
    (given with --card for an ONNX made elsewhere, which carries none), its backend None: the runtime
    that runs the file here by default (runtime/backends/choice.py, the CPU rule)."""
    from edgeseg.runtime.segmenter import Segmenter

    if isinstance(source, QuantizedArtifact):
        return Segmenter(_in_memory(source, options))
    return Segmenter(source, options)


def _in_memory(art: QuantizedArtifact, options: BackendOptions):
    """A candidate that is not written anywhere, on the runtime that will run its file (`options.backend`,
    else the CPU rule by the file's name: OpenVINO for the Q/DQ form where installed, ONNX Runtime for
    the QOperator form); the rank of sensitive layers keeps ONNX Runtime."""
    from edgeseg.runtime.backends import choose_backend

    if options.backend is None:
        options = options.replace(backend=choose_backend(art.path).backend)
    data = art.model.SerializeToString()
    if options.backend == "openvino":
        from edgeseg.runtime.backends.openvino import OpenVINOBackend

        return OpenVINOBackend(art.path, options, model=data)
    from edgeseg.runtime.backends.onnxruntime import OnnxRuntimeBackend

    return OnnxRuntimeBackend(art.path, options, model=data)


class Gate:
    """Scores INT8 artifacts against FP32 on fixed held-out data; FP32 runs once and is reused."""

    def __init__(
        self,
        fp32_path: Path,
        card: ModelCard,
        data: EvalData,
        *,
        threads: int | None = None,
        progress: Callable[[str, int, int], Any] | None = None,
        stand_in: str | None = None,
    ) -> None:
        """`stand_in`: the runtime that scores every file when they will run on another (TensorRT:
        ONNX Runtime, bias kept in float as TensorRT keeps it); None: each file on the runtime that
        runs it here (the CPU rule: OpenVINO where installed, the QOperator form on ONNX Runtime)."""
        if len(data) == 0:
            raise EdgesegError("the accuracy gate needs at least one evaluation image")
        self.fp32_path = fp32_path
        self.card = card
        self.data = data
        self.threads = threads
        self.progress = progress
        self.stand_in = stand_in
        # how every file and candidate is opened: made once here, handed down whole
        self.options = BackendOptions(backend=stand_in, threads=threads or None, card=card)
        self.runtimes: dict[Path, str] = {}  # file -> the runtime that scored it
        self._bgr = [cv2.cvtColor(img, cv2.COLOR_RGB2BGR) for img in data.images]
        self.fp32_labels = self._predict(fp32_path, "evaluating FP32")
        self.targets = self.fp32_labels if data.reference == "fp32" else data.masks
        self.fp32 = self._score(self.fp32_labels)
        self.warnings = reference_warnings(card, data, self.fp32, self.fp32_labels)
        if self.warnings:
            from edgeseg.console import warn

            for note in self.warnings:
                warn(note)

    def _predict(self, source: Path | QuantizedArtifact, what: str) -> list[np.ndarray]:
        seg = _segmenter(source, self.options)
        self.runtimes[source.path if isinstance(source, QuantizedArtifact) else source] = seg.backend.name
        try:
            out = []
            for i, frame in enumerate(self._bgr):
                out.append(seg.infer(frame))
                if self.progress:
                    self.progress(what, i + 1, len(self._bgr))
            return out
        finally:
            seg.close()

    def _score(self, labels: list[np.ndarray]) -> Score:
        cm = ConfusionMatrix(self.card.num_classes)
        agree = 0
        total = 0
        for pred, target, ref in zip(labels, self.targets, self.fp32_labels):
            cm.update(pred, target)
            agree += int(np.count_nonzero(pred == ref))
            total += pred.size
        m = cm.compute()
        return Score(miou=m.miou, iou=m.iou, agreement=agree / max(total, 1), metrics=m)

    def score(self, source: Path | QuantizedArtifact, what: str = "evaluating INT8") -> Score:
        """Score a file, or a candidate in memory."""
        return self._score(self._predict(source, what))

    def drop_points(self, s: Score) -> float:
        if s.miou != s.miou or self.fp32.miou != self.fp32.miou:
            return 0.0 if s.agreement == 1.0 else drop_points(1.0, s.agreement)
        return drop_points(self.fp32.miou, s.miou)


def rank_sensitivity(
    form: str,
    model_path: Path,
    card: ModelCard,
    stats: CalibrationStats,
    probe: CalibrationSet,
    workdir: Path,
    *,
    threads: int | None = None,
    candidates: Sequence[str] | None = None,
    progress: Callable[[str, int, int], Any] | None = None,
    quantize_kwargs: dict[str, Any] | None = None,
) -> list[tuple[str, float]]:
    """(node, error) for each quantizable node, most sensitive first; each node quantized alone."""
    from edgeseg.calib.quantize import load_model, name_nodes

    nodes = (
        list(candidates)
        if candidates is not None
        else quantizable_nodes(name_nodes(load_model(model_path)), form)
    )
    batches = [b for _, b in zip(range(PROBE_IMAGES), probe.batches(card))]
    options = BackendOptions(backend="onnxruntime", threads=threads or None)  # each probe's card is its own
    ref = _raw_outputs(model_path, batches, options)
    scale = float(np.mean([np.var(r) for r in ref])) or 1.0
    scores = []
    for k, node in enumerate(nodes):
        alone = make_form(  # in memory: nothing is written for a probe
            form,
            model_path,
            card,
            stats,
            workdir / f".sensitivity.{form}.onnx",
            exclude=[n for n in nodes if n != node],
            **(quantize_kwargs or {}),
        )
        outs = _raw_outputs(alone, batches, options)
        disagree = float(np.mean([np.mean(_labels(o) != _labels(r)) for o, r in zip(outs, ref)]))
        mse = float(np.mean([np.mean((o.astype(np.float32) - r) ** 2) for o, r in zip(outs, ref)])) / scale
        scores.append((node, disagree + 1e-3 * mse))
        if progress:
            progress(f"ranking {form} layer sensitivity", k + 1, len(nodes))
    return sorted(scores, key=lambda t: -t[1])


def _labels(out: np.ndarray) -> np.ndarray:
    return out.argmax(axis=1) if out.ndim == 4 else out


def _raw_outputs(
    source: Path | QuantizedArtifact, batches: list[np.ndarray], options: BackendOptions
) -> list[np.ndarray]:
    from edgeseg.runtime.backends.onnxruntime import OnnxRuntimeBackend

    if isinstance(source, QuantizedArtifact):
        backend = _in_memory(source, options)
    else:
        backend = OnnxRuntimeBackend(source, options)
    try:
        return [np.asarray(backend.run(b), dtype=np.float32) for b in batches]
    finally:
        backend.close()


def gated_quantize(
    form: str,
    model_path: Path,
    card: ModelCard,
    stats: CalibrationStats,
    target: Path,
    gate: Gate,
    probe: CalibrationSet,
    *,
    max_drop: float = MAX_MIOU_DROP,
    max_fallback_layers: int | None = None,
    quantize_kwargs: dict[str, Any] | None = None,
    progress: Callable[[str, int, int], Any] | None = None,
    on_attempt: Callable[[Attempt], Any] | None = None,
) -> GateResult:
    """Quantize `form`, score it, and fall back layer by layer until the mIoU drop is <= `max_drop`.

    Every attempt is made and scored in memory; only a passing one is written, once, to `target`
    (atomically, its verdict already in its card). A failure, Ctrl-C or crash on the way leaves
    `target` as it was: the previous good artifact, or nothing."""
    from edgeseg.calib.quantize import load_model, name_nodes

    kw = dict(quantize_kwargs or {})
    # a form with every quantizable layer in float has no INT8 compute left: that is never a pass,
    # however small its drop, or a file named int8 would ship a float model
    quantizable = quantizable_nodes(name_nodes(load_model(model_path)), form)
    excluded: list[str] = []
    attempts: list[Attempt] = []
    ranking: list[tuple[str, float]] = []
    while True:
        art = make_form(form, model_path, card, stats, target, exclude=excluded, **kw)
        s = gate.score(art, f"evaluating INT8 {form}" + (f" ({len(excluded)} in float)" if excluded else ""))
        drop = gate.drop_points(s)
        attempt = Attempt(
            list(excluded),
            fraction(s.miou) or 0.0,
            round(drop, 3),
            round(s.agreement, 5),
            drop <= max_drop,
        )
        attempts.append(attempt)
        if on_attempt:
            on_attempt(attempt)
        result = GateResult(
            form, art, gate.fp32, s, drop, max_drop, attempts, ranking, gate.runtimes.get(art.path)
        )
        if result.passed and len(excluded) < len(quantizable):
            _record(result)
            art.save()  # the one write, under its final name
            art.model = None  # the file holds it now; a VGG-sized graph is not kept twice
            return result
        if not ranking and max_fallback_layers != 0:
            ranking = rank_sensitivity(
                form,
                model_path,
                card,
                stats,
                probe,
                target.parent,
                threads=gate.threads,
                progress=progress,
                quantize_kwargs=kw,
            )
            result.sensitivity = ranking
        remaining = [n for n, _ in ranking if n not in excluded]
        limit = len(ranking) if max_fallback_layers is None else max_fallback_layers
        capped = len(excluded) >= limit and len(remaining) > 1
        if len(remaining) <= 1 or capped:  # the last one in float would leave no INT8 compute
            _record(result)  # in memory: nothing is written for a failed gate
            art.model = None  # the report stays, the rejected graph goes
            raise _failed(form, result, len(quantizable), capped)
        excluded.append(remaining[0])


def _failed(form: str, result: GateResult, quantizable: int, capped: bool) -> GateFailed:
    """The one-line failure of one form: what it lost, how far the fallback went and why it stopped."""
    n = len(result.artifact.excluded)
    tried = ", ".join(f"{len(a.excluded)} in float: drop {a.drop_points:.2f}" for a in result.attempts)
    if quantizable == 0:
        why = "it has no layer to run in INT8"
    elif capped:
        why = f"--max-fallback-layers {n} stopped the fallback"
    else:
        why = "the next layer in float would leave no INT8 compute"
    summary = (
        f"{form} loses {result.drop_points:.2f} mIoU points with {n} of {quantizable} layers in float ({why})"
    )
    message = f"INT8 {summary}, limit {result.limit_points:.2f} [{tried}]; {ADVICE}"
    return GateFailed(message, result, summary)


def _record(result: GateResult) -> None:
    """Put the gate's verdict into the candidate's card (its sidecar and ONNX metadata once saved)."""
    card = result.artifact.card
    info = dict(card.extra.get("int8", {}))
    info["gate"] = {
        "fp32_miou": fraction(result.fp32.miou),
        "int8_miou": fraction(result.int8.miou),
        "drop_points": round(result.drop_points, 3),
        "max_drop_points": result.limit_points,
        "argmax_agreement": round(result.int8.agreement, 5),
        "passed": result.passed,
        "excluded_nodes": result.artifact.excluded,
        "attempts": len(result.attempts),
    }
    result.artifact.with_card(card.replace(extra={**card.extra, "int8": info}))
