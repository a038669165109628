"""`edgeseg bench`: every artifact of a model this machine can run, on the same frames, side by side.

Each artifact runs in its own fresh process (spawned), so peak memory is its own, thread settings
cannot leak between runs, and a crashing backend cannot take the comparison down. The frames are the
same for all: the child re-opens the same deterministic dataset spec.

Reported per artifact: throughput (FPS) and latency percentiles of `Segmenter.infer` (preprocess +
inference + postprocess, i.e. what an application calling us sees), mIoU on the frames where they
carry ground truth of the model's classes (`open_frames`), file size, peak RSS, and speed-up over
PyTorch eager.
"""

from __future__ import annotations

import multiprocessing
import os
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from edgeseg.artifacts import backend_for, read_card, variant_of, variants_beside
from edgeseg.card import ModelCard
from edgeseg.defaults import MAX_THREADS
from edgeseg.errors import EdgesegError, first_line

if TYPE_CHECKING:
    from edgeseg.runtime.backends import BackendOptions

UNLABELLED_FRAMES = 32  # frames read from unlabelled images or a video (spread over the source)


@dataclass(frozen=True)
class BenchConfig:
    data: str = "synth:16"  # a dataset spec (frames + ground truth) or unlabelled images / a video
    height: int | None = None  # frame size for generated data (default: the model's input size)
    width: int | None = None
    threads: int | None = 2
    warmup: int = 3
    iterations: int = 30
    providers: str = "cpu"
    input_size: tuple[int, int] | str | None = None  # a --dynamic-hw model's inference size (BackendOptions)
    allow_other_gpu: bool = False  # TensorRT: an engine built on another module of the same GPU family

    def __post_init__(self) -> None:
        if self.iterations < 1:
            raise EdgesegError(f"--iterations must be at least 1, got {self.iterations}")
        if self.warmup < 0:
            raise EdgesegError(f"--warmup must be 0 or more, got {self.warmup}")
        if self.threads is not None and self.threads < 1:
            raise EdgesegError(f"--threads must be at least 1, got {self.threads}")
        if self.threads is not None and self.threads > MAX_THREADS:
            raise EdgesegError(f"--threads must be at most {MAX_THREADS}, got {self.threads}")


@dataclass
class Artifact:
    label: str
    path: Path
    kind: str  # the backend: torch | onnxruntime | openvino | tensorrt
    precision: str
    card: ModelCard | None = None  # given for a file made elsewhere (--card); else the file's own


@dataclass
class BenchResult:
    label: str
    artifact: str
    kind: str
    precision: str
    size_mb: float
    fps: float | None = None
    latency_ms: dict[str, float] = field(default_factory=dict)
    miou: float | None = None
    peak_rss_mb: float | None = None
    speedup_vs_eager: float | None = None
    error: str | None = None


# --- discovery -------------------------------------------------------------------------------------
def describe_artifact(path: Path, card: ModelCard | None = None) -> Artifact:
    """Label, backend and precision of one artifact file (its card says the precision)."""
    backend = backend_for(path)
    if backend == "torch":
        return Artifact("PyTorch eager", path, "torch", "fp32")
    try:
        precision = read_card(path, card).precision
    except EdgesegError:  # no card: the file name's variant still tells the precision
        precision = variant_of(path).split("-")[0]
    if backend == "tensorrt":
        return Artifact(f"TensorRT {precision}", path, "tensorrt", precision, card)
    form = {"int8-qdq": " (TensorRT Q/DQ form)", "int8-cpu": " (CPU form)"}.get(variant_of(path), "")
    label = f"ONNX Runtime {precision}{form if precision == 'int8' else ''}"
    return Artifact(label, path, "onnxruntime", precision, card)


def on_openvino(artifact: Artifact) -> Artifact | None:
    """The same ONNX on OpenVINO, when it is installed and can read the file (not the QOperator CPU
    form): a row beside ONNX Runtime's."""
    import importlib.util

    if artifact.kind != "onnxruntime" or variant_of(artifact.path) == "int8-cpu":
        return None
    if importlib.util.find_spec("openvino") is None:
        return None
    label = artifact.label.replace("ONNX Runtime", "OpenVINO").replace("TensorRT Q/DQ", "Q/DQ")
    return Artifact(label, artifact.path, "openvino", artifact.precision, artifact.card)


def discover(base_onnx: Path, checkpoint: Path | None, card: ModelCard | None = None) -> list[Artifact]:
    """The base export, its precision variants and engines beside it, and the eager checkpoint; each
    ONNX on ONNX Runtime and, where installed, OpenVINO."""
    found = [describe_artifact(checkpoint)] if checkpoint is not None else []
    listed = [describe_artifact(base_onnx, card), *(describe_artifact(p) for p in variants_beside(base_onnx))]
    for art in listed:
        found += [a for a in (art, on_openvino(art)) if a is not None]
    return found


# --- measurement (runs in a child process) ---------------------------------------------------------
def _percentiles(samples_ms: list[float]) -> dict[str, float]:
    a = np.asarray(samples_ms)
    return {
        "mean": float(a.mean()),
        "p50": float(np.percentile(a, 50)),
        "p95": float(np.percentile(a, 95)),
        "p99": float(np.percentile(a, 99)),
    }


@dataclass
class Frames:
    """The frames every artifact runs on (BGR), with ground truth only where it scores the model."""

    images: list[np.ndarray]
    masks: list[np.ndarray] | None  # None: no mIoU, FPS/latency/size only
    no_miou: str | None = None  # why there is no mIoU, in one line

    def __len__(self) -> int:
        return len(self.images)


def open_frames(cfg: BenchConfig, card: ModelCard) -> Frames:
    """`--data` for `card`'s model: a dataset (synth:N or a recognised folder layout) whose labels are
    the model's classes gives mIoU; one with another label set (the check `eval` makes), or images
    and videos without labels, give speed only."""
    import cv2

    from edgeseg.data import detect_format, open_dataset
    from edgeseg.data.synthset import is_synth_spec
    from edgeseg.evaluate import class_mismatch

    spec = cfg.data.strip()
    if is_synth_spec(spec):
        h = cfg.height or card.input_size[0]
        w = cfg.width or card.input_size[1]
        ds = open_dataset(spec, height=h, width=w)
    elif Path(spec).expanduser().is_dir() and _layout(Path(spec).expanduser(), detect_format):
        ds = open_dataset(spec)
    else:
        return _unlabelled(spec)
    if len(ds) == 0:
        raise EdgesegError(f"no frames in {spec}")
    items = [ds[i] for i in range(len(ds))]
    images = [cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR) for rgb, _ in items]
    problem = class_mismatch(card.classes, list(ds.classes))
    if problem is not None:
        return Frames(images, None, f"{problem.replace('the dataset', spec)}: FPS, latency and size only")
    return Frames(images, [mask for _, mask in items])


def _layout(path: Path, detect: Any) -> bool:
    try:
        detect(path)
    except EdgesegError:  # a folder of plain images: frames without labels
        return False
    return True


def _unlabelled(spec: str) -> Frames:
    """Images (folder, glob, one file) or a video: frames for timing, no ground truth."""
    import cv2

    from edgeseg.calib.data import open_images

    picked = open_images(spec, UNLABELLED_FRAMES, seed=0, what="benchmark data")
    images = [cv2.cvtColor(picked.image(i), cv2.COLOR_RGB2BGR) for i in range(len(picked))]
    return Frames(images, None, f"{spec} has no ground truth: FPS, latency and size only")


def peak_rss_mb() -> float:
    """This process's own peak RSS. Linux's ru_maxrss survives fork+exec, so a spawned child would
    report at least its parent's size; VmHWM belongs to the current address space only."""
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def options_for(artifact: Artifact, cfg: BenchConfig) -> BackendOptions:
    """How the child process opens `artifact`: its own backend, the bench's threads and providers."""
    from edgeseg.runtime.backends import BackendOptions

    card, size = artifact.card, cfg.input_size
    if size is not None and artifact.kind == "torch":
        # the eager model takes any size: its row runs at the size the exported files are asked to
        from edgeseg.artifacts import read_card
        from edgeseg.card import NATIVE

        card = card or read_card(artifact.path)
        card = (
            card.replace(dynamic=True, native_size=True) if size == NATIVE else card.replace(input_size=size)
        )
        size = None
    return BackendOptions(
        backend=artifact.kind,
        threads=cfg.threads,
        providers=cfg.providers,
        card=card,
        input_size=size,
        allow_other_gpu=cfg.allow_other_gpu,
    )


def measure(artifact: Artifact, options: BackendOptions, cfg: BenchConfig) -> dict[str, Any]:
    """Time `Segmenter.infer` on the frames and score them where they carry ground truth for the
    model. Meant to run in a fresh process, which gets the options made in the parent."""
    from edgeseg.metrics import ConfusionMatrix
    from edgeseg.runtime import Segmenter

    seg = Segmenter(artifact.path, options)
    frames = open_frames(cfg, seg.card)
    confusion = ConfusionMatrix(seg.card.num_classes) if frames.masks is not None else None

    def score(i: int, labels: np.ndarray) -> None:
        if confusion is not None and frames.masks is not None:
            confusion.update(labels, frames.masks[i])

    for i in range(cfg.warmup):
        seg.infer(frames.images[i % len(frames)])
    samples = []
    start = time.perf_counter()
    for i in range(cfg.iterations):
        t0 = time.perf_counter()
        labels = seg.infer(frames.images[i % len(frames)])
        samples.append((time.perf_counter() - t0) * 1e3)
        if i < len(frames):
            score(i, labels)
    wall = time.perf_counter() - start
    if confusion is not None:
        for i in range(cfg.iterations, len(frames)):  # score frames the timed loop did not reach
            score(i, seg.infer(frames.images[i]))
    seg.close()
    return {
        "fps": len(samples) / wall,
        "latency_ms": _percentiles(samples),
        "miou": confusion.compute().miou if confusion is not None else None,
        "peak_rss_mb": peak_rss_mb(),
    }


def run_bench(artifacts: list[Artifact], cfg: BenchConfig, progress: Any = None) -> list[BenchResult]:
    """Measure each artifact in its own spawned process; failures are recorded, not fatal."""
    results = []
    for art in artifacts:
        res = BenchResult(art.label, str(art.path), art.kind, art.precision, art.path.stat().st_size / 2**20)
        if progress is not None:
            progress(art)
        try:
            out = in_own_process(measure, art, options_for(art, cfg), cfg)
        except ChildFailed as exc:
            res.error = str(exc)
        else:
            res.fps = out["fps"]
            res.latency_ms = out["latency_ms"]
            res.miou = out["miou"]
            res.peak_rss_mb = out["peak_rss_mb"]
        results.append(res)
    eager = next((r.fps for r in results if r.kind == "torch" and r.fps), None)
    for r in results:
        if eager and r.fps:
            r.speedup_vs_eager = r.fps / eager
    return results


class ChildFailed(Exception):
    """The measuring child raised or died; the message is the row's reason for being skipped."""


def in_own_process(work: Callable[..., Any], *args: Any) -> Any:
    """`work(*args)` in a fresh spawned process, its return value sent back. Ctrl-C or SIGTERM end the
    child now (it would otherwise finish every iteration) and go on to the CLI (exit 130/143). What the
    child raised comes back as ChildFailed: an EdgesegError's message as it is, anything else (a
    backend refusing a damaged file) as its type and first line; a child that dies without a word (a
    backend's segfault) as "the backend process crashed"."""
    ctx = multiprocessing.get_context("spawn")
    receive, send = ctx.Pipe(duplex=False)
    child = ctx.Process(
        target=_child_main, args=(send, os.getpid(), work, args), name="edgeseg-bench-measure"
    )
    child.start()
    send.close()  # the child holds the only writing end: its death is EOF here
    try:
        try:
            ok, value = receive.recv()
        except EOFError:
            ok, value = False, "the backend process crashed"
        child.join()
    except KeyboardInterrupt:
        child.terminate()
        child.join(timeout=5)
        if child.is_alive():
            child.kill()
        raise
    finally:
        receive.close()
    if not ok:
        raise ChildFailed(value)
    return value


def _child_main(send: Any, parent: int, work: Callable[..., Any], args: tuple[Any, ...]) -> None:
    """The measuring child: run `work`, send (True, result) or (False, the reason it failed). Ctrl-C in
    a terminal reaches the whole process group: the parent ends this child, which says nothing."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    _end_with_parent(parent)
    try:
        outcome = (True, work(*args))
    except EdgesegError as exc:
        outcome = (False, str(exc))
    except Exception as exc:  # noqa: BLE001 - a backend refusing a damaged file: that row is skipped
        outcome = (False, f"{type(exc).__name__}: {first_line(exc)[:160]}".rstrip(": "))
    send.send(outcome)
    send.close()


def _end_with_parent(parent: int) -> None:
    """In the measuring child: exit when `parent` is gone. A bench killed outright (SIGKILL, the OOM
    killer) cannot end its child, which would otherwise measure every iteration on an orphaned core."""

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(0.5)
        os._exit(1)

    threading.Thread(target=watch, name="end-with-parent", daemon=True).start()


def nothing_measured(results: list[BenchResult]) -> EdgesegError | None:
    """A bench where every artifact was skipped compared nothing: that is a failure, not a table."""
    if results and all(r.error for r in results):
        return EdgesegError(
            f"no artifact could be measured ({len(results)} skipped; first: {results[0].label}: "
            f"{results[0].error})"
        )
    return None


# --- reporting -------------------------------------------------------------------------------------
COLUMNS = ["artifact", "FPS", "p50 ms", "p95 ms", "p99 ms", "mIoU", "size MB", "peak RSS MB", "x eager"]


def rows(results: list[BenchResult]) -> list[list[Any]]:
    out = []
    for r in results:
        if r.error:
            out.append([r.label, f"skipped: {r.error}", None, None, None, None, r.size_mb, None, None])
            continue
        lat = r.latency_ms
        out.append(
            [
                r.label,
                r.fps,
                lat.get("p50"),
                lat.get("p95"),
                lat.get("p99"),
                r.miou,
                r.size_mb,
                r.peak_rss_mb,
                None if r.speedup_vs_eager is None else f"{r.speedup_vs_eager:.2f}x",
            ]
        )
    return out


def to_markdown(results: list[BenchResult]) -> str:
    from edgeseg.console import fmt

    lines = ["| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    for row in rows(results):
        lines.append("| " + " | ".join(fmt(v) for v in row) + " |")
    return "\n".join(lines) + "\n"


def to_json(results: list[BenchResult], cfg: BenchConfig, machine: dict, no_miou: str | None = None) -> dict:
    return {
        "config": asdict(cfg),
        "machine": machine,
        "no_miou": no_miou,
        "results": [asdict(r) for r in results],
    }


def plot(results: list[BenchResult], out_png: Path) -> Path:
    """FPS vs mIoU, one labelled point per artifact."""
    from edgeseg.plots import fps_vs_miou

    return fps_vs_miou([(r.label, r.fps, r.miou) for r in results], out_png)


# --- what to benchmark -----------------------------------------------------------------------------
def default_checkpoint(root: Path, base_onnx: Path) -> Path | None:
    """The eager baseline: the newest training run of the exported model, looked up in the workspace
    the export lives in (whichever way it was named) and in `root`."""
    from edgeseg import workspace

    try:
        card = read_card(base_onnx)
    except EdgesegError:
        return None
    for where in dict.fromkeys((workspace.root_of(base_onnx), Path(root).resolve())):
        found = workspace.newest_checkpoint(where, card.model)
        if found is not None:
            return found
    return None
