"""`edgeseg demo`: the newcomer's first five minutes, the whole chain in one command.

    scenes -> train briefly (or start from the shipped default with --quick) -> export ONNX
    -> FP16 + INT8 (gated on mIoU) -> stream the synthetic video through each -> one table

Every number in the final table is measured in this run on this machine: the same held-out
synthetic video is streamed through every artifact by the real pipeline, with ground truth.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edgeseg.defaults import CALIB_IMAGES, GATE_IMAGES, MAX_MIOU_DROP
from edgeseg.errors import EdgesegError
from edgeseg.progress import Progress

Step = Callable[[str], None]


@dataclass(frozen=True)
class DemoConfig:
    out: Path = Path("edgeseg-demo")
    quick: bool = False  # start from the shipped default instead of training
    model: str | None = None  # architecture to train (default: the shipped default's)
    train_images: int = 320
    epochs: int = 8  # ~2 minutes of training on 2 CPU cores
    lr: float = 3e-3  # AdamW peak rate: a from-scratch net on a short schedule
    height: int = 128  # training / export size when training (small: this is a demo on a CPU)
    width: int = 256
    frames: int = 60  # length of the synthetic stream per artifact
    threads: int = 2
    max_miou_drop: float = MAX_MIOU_DROP
    calib_images: int = CALIB_IMAGES
    eval_images: int = GATE_IMAGES

    def __post_init__(self) -> None:
        """Every option mistake fails before minutes of scene generation and training, not after."""
        counts = {"--frames": self.frames, "--threads": self.threads, "--calib-images": self.calib_images,
                  "--eval-images": self.eval_images}  # fmt: skip
        if not self.quick:
            counts.update({"--epochs": self.epochs, "--train-images": self.train_images})
        for option, value in counts.items():
            if value < 1:
                raise EdgesegError(f"{option} must be at least 1, got {value}")
        if self.max_miou_drop < 0:
            raise EdgesegError(f"--max-miou-drop must be >= 0, got {self.max_miou_drop}")


@dataclass
class DemoRow:
    artifact: str
    precision: str
    path: Path
    size_mb: float
    fps: float | None = None
    infer_p50_ms: float | None = None
    latency_p50_ms: float | None = None
    latency_p95_ms: float | None = None
    miou: float | None = None
    note: str = ""
    runtime: str = "onnxruntime"

    def to_dict(self) -> dict[str, Any]:
        return {**self.__dict__, "path": str(self.path)}


@dataclass
class DemoResult:
    out: Path
    rows: list[DemoRow] = field(default_factory=list)
    video: Path | None = None
    plots: list[Path] = field(default_factory=list)
    seconds: float = 0.0
    steps: dict[str, float] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "out": str(self.out),
            "rows": [r.to_dict() for r in self.rows],
            "video": str(self.video) if self.video else None,
            "plots": [str(p) for p in self.plots],
            "seconds": round(self.seconds, 1),
            "steps_seconds": {k: round(v, 1) for k, v in self.steps.items()},
        }


def _default_card():
    from edgeseg.artifacts import read_card
    from edgeseg.defaults import default_model_path

    return read_card(default_model_path("onnx"))


def _train(cfg: DemoConfig, root: Path, say: Step, progress: Progress | None) -> Path:
    """Write a small generated dataset to disk and train the demo model on it briefly."""
    from edgeseg.data.synth import TRAIN_SEED, write_dataset
    from edgeseg.training.config import TrainConfig
    from edgeseg.training.trainer import train

    data_dir = cfg.out / "data" / "train"
    if not (data_dir / "classes.json").is_file():
        say(f"generating {cfg.train_images} scenes ({cfg.height}x{cfg.width}) in {data_dir}")
        write_dataset(data_dir, cfg.train_images, cfg.height, cfg.width, seed=TRAIN_SEED)
    card = _default_card()
    model = cfg.model or card.model
    kwargs = card.model_kwargs if model == card.model else {}
    # The only ImageNet backbone available offline (a pip package): start from it when the design uses it.
    weights = "imagenet" if kwargs.get("backbone") == "efficientnet_lite0" else None
    say(f"training {model} for {cfg.epochs} epochs on CPU")
    tcfg = TrainConfig(
        model=model,
        data=str(data_dir),
        val_data=f"synth:24@{cfg.height}x{cfg.width}",
        epochs=cfg.epochs,
        batch_size=8,
        optimizer="adamw",
        lr=cfg.lr,
        schedule="cosine",
        height=cfg.height,
        width=cfg.width,
        model_kwargs=dict(kwargs),
        weights=weights,
        device="cpu",
    )
    result = train(tcfg, workdir=root, progress=progress, log=say)
    ckpt = result.best or result.last
    if ckpt is None:
        raise EdgesegError("training wrote no checkpoint")
    return ckpt


def _stream(
    path: Path, cfg: DemoConfig, size: tuple[int, int], save: Path | None, backend: str = "onnxruntime"
) -> Any:
    """Run the real threaded pipeline over the held-out synthetic video, planned as `edgeseg run` plans
    a file-like source, on `backend`; return its RunStats."""
    from edgeseg.runtime.backends import BackendOptions
    from edgeseg.runtime.plan import RunPlan
    from edgeseg.runtime.sinks import VideoSink
    from edgeseg.runtime.sources import SyntheticSource

    plan = RunPlan(
        model=path,
        sources=(SyntheticSource(cfg.frames, height=size[0], width=size[1]),),
        sinks=[VideoSink(save)] if save else [],
        backend_options=BackendOptions(backend=backend, threads=cfg.threads),
    )
    return plan.open().driver.run()


def run_demo(cfg: DemoConfig, say: Step = print, progress: Progress | None = None) -> DemoResult:
    from edgeseg import workspace
    from edgeseg.build import BuildOptions, build
    from edgeseg.defaults import default_model_path
    from edgeseg.export.onnx_export import export_onnx

    t_start = time.perf_counter()
    cfg.out.mkdir(parents=True, exist_ok=True)
    root = cfg.out / "work"
    result = DemoResult(out=cfg.out)

    t = time.perf_counter()
    if cfg.quick:
        ckpt = default_model_path("pt")
        say(f"--quick: starting from the shipped default model ({ckpt.name})")
        size = _default_card().input_size
    else:
        ckpt = _train(cfg, root, say, progress)
        size = (cfg.height, cfg.width)
    result.steps["train"] = time.perf_counter() - t

    t = time.perf_counter()
    name = "demo"
    say("exporting to ONNX (parity-checked against PyTorch)")
    export = export_onnx(ckpt, workspace.export_path(root, name), height=size[0], width=size[1])
    result.steps["export"] = time.perf_counter() - t

    t = time.perf_counter()
    say(f"building FP16 and INT8 (gate: mIoU drop <= {cfg.max_miou_drop} points)")
    built = build(
        export.path,
        BuildOptions(
            fp16=True,
            int8=True,
            calib_images=cfg.calib_images,
            eval_images=cfg.eval_images,
            max_miou_drop=cfg.max_miou_drop,
            threads=cfg.threads,
        ),
        progress=progress,
    )
    result.steps["build"] = time.perf_counter() - t

    t = time.perf_counter()
    best_video: Path | None = None
    per_class: dict[str, Any] = {}
    for label, precision, path, note, backend in demo_runs(built.rows):
        save = None
        if precision in ("int8-cpu", "fp32") and best_video is None:
            save = cfg.out / "overlay.mp4"
        say(f"streaming {cfg.frames} synthetic frames through {label}")
        stats = _stream(Path(path), cfg, size, save, backend)
        report = stats.to_dict()
        if precision in ("fp32", "int8-cpu") and backend == "onnxruntime":
            per_class[label] = stats.metrics()
        if save is not None and save.is_file():
            best_video = save
        lat = report["latency_ms"]["capture_to_result"]
        metrics = report.get("metrics") or {}
        result.rows.append(
            DemoRow(
                artifact=label,
                precision=precision,
                path=Path(path),
                size_mb=Path(path).stat().st_size / 2**20,
                fps=report["steady_fps"],
                infer_p50_ms=report["latency_ms"]["stages"].get("inference", {}).get("p50"),
                latency_p50_ms=lat.get("p50"),
                latency_p95_ms=lat.get("p95"),
                miou=metrics.get("miou"),
                note=note,
                runtime=backend,
            )
        )
    result.steps["stream"] = time.perf_counter() - t
    result.video = best_video
    if built.failure is not None:
        say(f"note: {built.failure}")

    result.plots = _plots(result, per_class, built.card, cfg.out)
    from edgeseg.atomic import write_bytes, write_json

    result.seconds = time.perf_counter() - t_start
    write_json(cfg.out / "report.json", result.to_dict())
    write_bytes(cfg.out / "model.card.json", export.card_path.read_bytes())
    return result


RUNTIME_LABELS = {"onnxruntime": "ONNX Runtime", "openvino": "OpenVINO"}
PRECISION_LABELS = {"fp32": "FP32", "fp16": "FP16", "int8-cpu": "INT8 (CPU form)", "int8-qdq": "INT8 Q/DQ"}


def demo_runs(rows: list[Any]) -> list[tuple[str, str, Path, str, str]]:
    """(label, precision, file, note, runtime) for every built file on every CPU runtime that reads it:
    ONNX Runtime, and OpenVINO beside it where installed (not the QOperator CPU form, which it cannot
    read); on ONNX Runtime the Q/DQ file is the TensorRT form, slow on a CPU by design, so it comes last."""
    import importlib.util

    runtimes = ["onnxruntime"] + (["openvino"] if importlib.util.find_spec("openvino") else [])
    order = {"fp32": 0, "fp16": 1, "int8-cpu": 2, "int8-qdq": 3}
    runs = []
    for r in sorted((r for r in rows if Path(r.artifact).is_file()), key=lambda r: order.get(r.precision, 9)):
        for runtime in runtimes:
            if runtime == "openvino" and r.precision == "int8-cpu":
                continue
            what = PRECISION_LABELS.get(r.precision, r.precision)
            if runtime == "onnxruntime" and r.precision == "int8-qdq":
                what += " (TensorRT form)"
            runs.append((f"{RUNTIME_LABELS[runtime]} {what}", r.precision, Path(r.artifact), r.note, runtime))
    return sorted(
        runs, key=lambda run: (run[1] == "int8-qdq" and run[4] == "onnxruntime", order.get(run[1], 9))
    )


def _plots(result: DemoResult, per_class: dict[str, Any], card: Any, out: Path) -> list[Path]:
    """FPS vs mIoU for all artifacts, and per-class IoU bars for FP32 and the CPU INT8 form."""
    from edgeseg import plots

    made = [plots.fps_vs_miou([(r.artifact, r.fps, r.miou) for r in result.rows], out / "fps_vs_miou.png")]
    for label, metrics in per_class.items():
        if metrics is None:
            continue
        slug = "int8" if "INT8" in label else "fp32"
        made.append(plots.iou_bars(metrics, card.classes, out / f"iou_{slug}.png", card.palette, title=label))
    return made


COLUMNS = ["artifact", "FPS", "infer ms", "latency p50", "latency p95", "mIoU", "MB", "note"]


def table_rows(result: DemoResult) -> list[list[Any]]:
    return [
        [r.artifact, r.fps, r.infer_p50_ms, r.latency_p50_ms, r.latency_p95_ms, r.miou, r.size_mb, r.note]
        for r in result.rows
    ]
