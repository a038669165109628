"""The training loop: cross-entropy (ignore 255), SGD/AdamW, poly/cosine per-iteration schedule, AMP on
CUDA, validation mIoU each epoch through the deployed inference path, best/last checkpoints written
atomically by rank 0 only, exact `--resume`, and DDP when launched by torchrun.

Reproducibility: every epoch reseeds torch/numpy/random and the augmentation from (seed, epoch, rank),
and the sampler shuffles from (seed, epoch); together with the optimizer/scheduler state in `last.pt`,
a resumed run replays the uninterrupted one from the next epoch boundary.
"""

from __future__ import annotations

import random
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from edgeseg import workspace
from edgeseg.card import IGNORE_INDEX, ModelCard
from edgeseg.errors import EdgesegError
from edgeseg.lazy import require
from edgeseg.metrics import SegMetrics, metrics_from_confusion
from edgeseg.progress import Progress
from edgeseg.training import distributed
from edgeseg.training.config import TrainConfig
from edgeseg.training.data import TRAIN_AUGMENT
from edgeseg.training.header import DEFAULT_SIZE_ORIGIN, StepTimer, header_lines, time_left
from edgeseg.training.schedule import build_optimizer, build_scheduler, retarget

# Generated-scene validation seed: neither the training seed (0) nor the held-out evaluation seed.
SYNTH_VAL_SEED = 2_000_003
SYNTH_VAL_COUNT = 64

# fields that define the optimisation trajectory: on resume they come from the checkpoint
SCHEDULE_FIELDS = (
    "model", "model_kwargs", "optimizer", "schedule", "lr", "warmup_iters", "weight_decay",
    "momentum", "batch_size", "height", "width", "crop", "augment", "seed", "epochs",
)  # fmt: skip


@dataclass
class TrainResult:
    run_dir: Path
    best: Path | None
    last: Path | None
    best_miou: float
    best_epoch: int
    metrics: SegMetrics | None  # validation metrics of the final epoch
    best_metrics: SegMetrics | None
    classes: list[str]
    card: ModelCard
    history: list[dict[str, Any]] = field(default_factory=list)
    model: Any = None  # the trained nn.Module (unwrapped), for callers that keep going in-process
    is_main: bool = True

    def to_dict(self) -> dict[str, Any]:
        return {
            "run_dir": str(self.run_dir),
            "best": str(self.best) if self.best else None,
            "last": str(self.last) if self.last else None,
            "best_miou": self.best_miou,
            "best_epoch": self.best_epoch,
            "final": self.metrics.to_dict(self.classes) if self.metrics else None,
            "best_metrics": self.best_metrics.to_dict(self.classes) if self.best_metrics else None,
            "history": self.history,
        }


def find_resume(spec: str | Path, root: Path, model: str) -> Path:
    """`auto` -> the newest run's last.pt for `model`; else the given checkpoint (or run directory)."""
    if str(spec) == "auto":
        base = workspace.train_root(root, model)
        runs = sorted((p for p in base.glob("*/last.pt")), key=lambda p: (p.stat().st_mtime, p.parent.name))
        if not runs:
            raise EdgesegError(f"--resume auto: no previous run of {model!r} with a last.pt in {base}")
        return runs[-1]
    path = Path(spec)
    if path.is_dir():
        path = path / "last.pt"
    if not path.is_file():
        raise EdgesegError(f"--resume: checkpoint not found: {path}")
    return path


def resume_run_dir(resume_path: Path) -> Path | None:
    """Where a run resumed from `resume_path` writes: its own folder when it is a run's `last.pt` (the
    run continues in place, as `--resume auto` and a run folder do), else None, a new run folder:
    continuing from best.pt in place would replace the later last.pt, and a checkpoint kept elsewhere
    is not a run folder whose last.pt, best.pt and history.json edgeseg may replace."""
    return resume_path.parent if resume_path.name == "last.pt" else None


def check_run_apart(resume_path: Path | None, inputs: list[tuple[str, str | Path | None]]) -> None:
    """Refuse (one line, exit 2, before any work) a resumed run whose folder is or holds an input
    (`--data`, `--val-data`, `--weights`): its checkpoints and history would replace it. A new run's
    folder is made fresh, so it holds nothing."""
    from edgeseg.output_checks import check_apart

    run_dir = resume_run_dir(resume_path) if resume_path is not None else None
    if run_dir is None:
        return
    option = "the resumed run's folder"
    check_apart([(option, run_dir)], inputs, folders={option}, remedy="resume a copy of the run folder")


def config_for_resume(path: Path, overrides: dict[str, Any]) -> TrainConfig:
    """The saved run's config, with explicitly passed options on top (warning when they bend the schedule)."""
    from edgeseg.checkpoint import load_checkpoint

    saved = load_checkpoint(path).get("train_state", {}).get("config")
    if not isinstance(saved, dict):
        raise EdgesegError(f"{path} has no training state (is it an exported or stripped checkpoint?)")
    merged = {**saved, **{k: v for k, v in overrides.items() if v is not None}}
    changed = [
        k
        for k in SCHEDULE_FIELDS
        if k in overrides and overrides[k] is not None and saved.get(k) != overrides[k]
    ]
    if "model" in changed:
        raise EdgesegError(
            f"--resume: checkpoint is a {saved.get('model')!r} run, not {overrides['model']!r}"
        )
    if changed:
        from edgeseg.console import warn

        warn(f"resuming with changed {', '.join(changed)}: the run will not match an uninterrupted one")
    return TrainConfig.from_dict(merged)


def open_datasets(cfg: TrainConfig, train_set: Any = None, val_set: Any = None) -> tuple[Any, Any]:
    """Training and validation datasets from the specs (val: --val-data, else the spec's held-out split)."""
    if train_set is None or val_set is None:
        from edgeseg.data import open_dataset

        if train_set is None:
            train_set = open_dataset(cfg.data, split="train")
        if val_set is None:
            if cfg.val_data:
                val_set = open_dataset(cfg.val_data, split="val")
            elif getattr(train_set, "format", None) == "synth":
                # model selection on a third seed, so held-out `synth:N` scores stay unbiased
                size = {"height": train_set.height, "width": train_set.width}
                val_set = open_dataset("synth", split="val", num=SYNTH_VAL_COUNT, seed=SYNTH_VAL_SEED, **size)
            else:
                val_set = open_dataset(cfg.data, split="val")
    if len(train_set) == 0:
        raise EdgesegError(f"training data {cfg.data!r} is empty")
    if len(val_set) == 0:
        raise EdgesegError("validation data is empty")
    if list(train_set.classes) != list(val_set.classes):
        raise EdgesegError("training and validation data have different classes; pass a matching --val-data")
    return train_set, val_set


def make_card(cfg: TrainConfig, dataset: Any, model_kwargs: dict[str, Any] | None = None) -> ModelCard:
    """The card every checkpoint of this run carries (resolved model options, so it rebuilds exactly)."""
    return ModelCard(
        model=cfg.model,
        classes=list(dataset.classes),
        palette=[tuple(c) for c in dataset.palette],
        input_size=cfg.input_size,
        model_kwargs=dict(cfg.model_kwargs if model_kwargs is None else model_kwargs),
        extra={"trained_on": cfg.data, "epochs": cfg.epochs},
    )


def _seed_all(seed: int) -> None:
    torch = require("torch")
    s = int(seed) % (2**31)
    random.seed(s)
    np.random.seed(s)
    torch.manual_seed(s)


def validate(
    model: Any, card: ModelCard, dataset: Any, dist: distributed.DistInfo, limit: int | None
) -> SegMetrics:
    """mIoU through Segmenter + TorchBackend (the same path `edgeseg eval` takes); ranks split the images."""
    torch = require("torch")
    from edgeseg.evaluate import confusion
    from edgeseg.runtime.backends import BackendOptions
    from edgeseg.runtime.backends.torch import TorchBackend

    n = min(limit, len(dataset)) if limit else len(dataset)
    indices = range(dist.rank, n, dist.world_size)
    live = TorchBackend.from_model(model, BackendOptions(card=card, device=None))  # stays on its device
    cm = confusion(live, dataset, indices=indices)
    total = distributed.all_sum(dist, torch.from_numpy(cm.matrix.copy()))
    return metrics_from_confusion(total.numpy())


@dataclass
class _Fit:
    """What a run steps through: the net (DDP-wrapped as `net` when distributed), its data and the
    optimisation state, and where the run's checkpoints go."""

    model: Any
    net: Any
    tset: Any
    sampler: Any
    loader: Any
    optimizer: Any
    scheduler: Any
    scaler: Any
    use_amp: bool
    device: str
    run_dir: Path = Path()

    @property
    def iters(self) -> int:
        return len(self.loader)


@dataclass
class _Record:
    """Where a run stands: the next epoch, the best validation so far, the history of epochs."""

    start_epoch: int = 0
    best_miou: float = -1.0
    best_epoch: int = -1
    history: list[dict[str, Any]] = field(default_factory=list)
    metrics: SegMetrics | None = None  # the last epoch's
    best_metrics: SegMetrics | None = None


def train(
    cfg: TrainConfig,
    *,
    workdir: str | Path | None = None,
    resume: str | Path | None = None,
    train_set: Any = None,
    val_set: Any = None,
    progress: Progress | None = None,
    log: Any = None,
    on_epoch: Any = None,
    size_origin: str = DEFAULT_SIZE_ORIGIN,
) -> TrainResult:
    """Train `cfg.model` on `cfg.data`; returns where the checkpoints went and the validation metrics.

    `progress` gets each step (rank 0); `log(str)` receives the header (data, sizes, steps, then a time
    estimate after the first steps) and one line per epoch on rank 0; `on_epoch(row)` is called on
    every rank after each epoch's checkpoints are written; `size_origin` says in the header where the
    input size came from (`header.size_origin`).
    """
    from edgeseg.checkpoint import load_checkpoint
    from edgeseg.runtime.backends.torch import resolve_device

    dist = distributed.from_env()
    device = distributed.setup(dist, resolve_device(cfg.device))
    root = workspace.workdir(workdir)
    if not dist.is_main:
        progress = log = None

    try:
        resume_path = find_resume(resume, root, cfg.model) if resume else None
        inputs = [("--data", cfg.data), ("--val-data", cfg.val_data), ("--weights", cfg.weights)]
        check_run_apart(resume_path, inputs)
        payload = load_checkpoint(resume_path) if resume_path else None
        train_set, val_set = open_datasets(cfg, train_set, val_set)
        _seed_all(cfg.seed)  # identical initial weights on every rank
        model, card = _make_model(cfg, train_set, payload, resume_path, device, log if dist.is_main else None)
        fit = _prepare(cfg, model, card, train_set, dist, device)
        rec = _restore(fit, payload, cfg, resume_path) if payload is not None else _Record()
        fit.run_dir = _run_dir(resume_path, root, cfg.model, dist, log)
        if dist.enabled:
            torch = require("torch")
            ids = [torch.device(device).index] if device.startswith("cuda") else None
            fit.net = torch.nn.parallel.DistributedDataParallel(model, device_ids=ids)
        timer = StepTimer(fit.iters * (cfg.epochs - rec.start_epoch))
        epoch_seconds: list[float] = []
        if log:
            for line in header_lines(
                cfg, train_set, val_set, batch=fit.loader.batch_size, steps_per_epoch=fit.iters,
                world_size=dist.world_size, device=device, start_epoch=rec.start_epoch, origin=size_origin,
            ):  # fmt: skip
                log(line)
        for epoch in range(rec.start_epoch, cfg.epochs):
            epoch_start = time.perf_counter()
            loss, lr = _train_epoch(fit, cfg, epoch, dist, progress, timer, log)
            distributed.sync_buffers(dist, model)  # BN running stats: rank 0's, on every rank
            metrics = rec.metrics = validate(model, card, val_set, dist, cfg.val_limit)
            improved = metrics.miou > rec.best_miou
            if improved:
                rec.best_miou, rec.best_epoch, rec.best_metrics = float(metrics.miou), epoch + 1, metrics
            row = {
                "epoch": epoch + 1,
                "loss": loss,
                "lr": lr,  # the rate of the epoch's last step
                "val_miou": metrics.miou,
                "val_pixel_accuracy": metrics.pixel_accuracy,
            }
            rec.history.append(row)
            if dist.is_main:
                _save_epoch(
                    fit, cfg, card, train_set, _train_state(fit, rec, cfg, dist, epoch), metrics, improved
                )
                epoch_seconds.append(time.perf_counter() - epoch_start)
                if log:
                    log(
                        f"epoch {epoch + 1}/{cfg.epochs}  loss {row['loss']:.4f}  val mIoU {metrics.miou:.4f}"
                        f"  pixel acc {metrics.pixel_accuracy:.4f}{'  (best)' if improved else ''}"
                        f"{time_left(epoch_seconds, cfg.epochs - epoch - 1)}"
                    )
            distributed.barrier(dist)
            if on_epoch is not None:
                on_epoch(row)
        best_path, last_path = fit.run_dir / "best.pt", fit.run_dir / "last.pt"
        return TrainResult(
            run_dir=fit.run_dir,
            best=best_path if best_path.is_file() else None,
            last=last_path if last_path.is_file() else None,
            best_miou=rec.best_miou,
            best_epoch=rec.best_epoch,
            metrics=rec.metrics,
            best_metrics=rec.best_metrics,
            classes=card.classes,
            card=card,
            history=rec.history,
            model=model,
            is_main=dist.is_main,
        )
    finally:
        distributed.cleanup(dist)


def _run_dir(resume_path: Path | None, root: Path, model: str, dist: distributed.DistInfo, log: Any) -> Path:
    """Where this run writes: a run's own last.pt continues in its folder (`resume_run_dir`), anything
    else in a new run folder, made on rank 0 and told to every rank."""
    run_dir = resume_run_dir(resume_path) if resume_path is not None else None
    if run_dir is None and dist.is_main:
        run_dir = workspace.new_run_dir(root, model)
        if resume_path is not None and log:
            log(
                f"resuming from {resume_path} in a new run folder, {run_dir} (only a last.pt continues in place)"
            )
    return Path(distributed.broadcast_object(dist, str(run_dir) if run_dir else None))


def _make_model(
    cfg: TrainConfig, train_set: Any, payload: Any, resume_path: Path | None, device: str, log: Any
) -> tuple[Any, ModelCard]:
    """The net on `device` (with --weights unless resuming) and the card every checkpoint carries."""
    from edgeseg.models import create_model

    weights = None if payload is not None else cfg.weights
    model = create_model(cfg.model, num_classes=len(train_set.classes), weights=weights, **cfg.model_kwargs)
    if weights is not None and log is not None:
        log(f"initial weights: {weights} ({getattr(model, 'edgeseg_weights', 'loaded')})")
    model = model.to(device)
    card = make_card(cfg, train_set, getattr(model, "edgeseg_kwargs", None))
    if payload is not None and list(payload["card"].classes) != card.classes:
        raise EdgesegError(f"--resume: {resume_path} was trained on other classes than {cfg.data!r}")
    return model, card


def _prepare(
    cfg: TrainConfig, model: Any, card: ModelCard, train_set: Any, dist: distributed.DistInfo, device: str
) -> _Fit:
    """The augmented, distributed data loader, optimizer, per-iteration schedule and AMP scaler."""
    torch = require("torch")
    from edgeseg.data.torch_dataset import SegmentationTorchDataset, worker_init_fn

    tset = SegmentationTorchDataset(
        train_set,
        cfg.input_size,
        augment=TRAIN_AUGMENT if cfg.augment else False,
        mean=card.mean,
        std=card.std,
        seed=cfg.seed,
        crop=cfg.crop,
    )
    sampler = torch.utils.data.DistributedSampler(
        tset, num_replicas=dist.world_size, rank=dist.rank, shuffle=True, seed=cfg.seed
    )
    batch = min(cfg.batch_size, len(sampler))
    loader = torch.utils.data.DataLoader(
        tset,
        batch_size=batch,
        sampler=sampler,
        num_workers=cfg.workers,
        drop_last=len(sampler) > batch,  # no ragged last batch (BatchNorm on 1 sample fails)
        worker_init_fn=worker_init_fn if cfg.workers else None,
        pin_memory=device.startswith("cuda"),
    )
    optimizer = build_optimizer(model, cfg)
    scheduler = build_scheduler(optimizer, cfg, len(loader) * cfg.epochs)
    use_amp = bool(cfg.amp and device.startswith("cuda"))
    scaler = torch.amp.GradScaler("cuda", enabled=use_amp)
    return _Fit(model, model, tset, sampler, loader, optimizer, scheduler, scaler, use_amp, device)


def _restore(fit: _Fit, payload: dict[str, Any], cfg: TrainConfig, resume_path: Path) -> _Record:
    """Load a `--resume` checkpoint's weights and optimisation state into `fit`; returns where the run
    stood."""
    state = payload["train_state"]
    fit.model.load_state_dict(payload["model"])
    fit.optimizer.load_state_dict(state["optimizer"])
    fit.scheduler.load_state_dict(state["scheduler"])
    retarget(fit.scheduler, cfg, fit.iters * cfg.epochs)
    if state.get("scaler"):
        fit.scaler.load_state_dict(state["scaler"])
    start_epoch = int(state["epoch"])
    if state.get("iters_per_epoch") not in (None, fit.iters):
        from edgeseg.console import warn

        warn(f"iterations per epoch changed ({state['iters_per_epoch']} -> {fit.iters}); schedule shifts")
    if start_epoch >= cfg.epochs:
        raise EdgesegError(
            f"--resume: {resume_path} already finished {start_epoch} epochs; pass --epochs > {start_epoch}"
        )
    return _Record(
        start_epoch=start_epoch,
        best_miou=float(state.get("best_miou", -1.0)),
        best_epoch=int(state.get("best_epoch", -1)),
        history=list(state.get("history", [])),
    )


def _train_state(fit: _Fit, rec: _Record, cfg: TrainConfig, dist: distributed.DistInfo, epoch: int) -> dict:
    """What `--resume` needs to continue exactly after `epoch` (stored in every checkpoint)."""
    return {
        "config": cfg.to_dict(),
        "epoch": epoch + 1,
        "iters_per_epoch": fit.iters,
        "global_step": (epoch + 1) * fit.iters,
        "optimizer": fit.optimizer.state_dict(),
        "scheduler": fit.scheduler.state_dict(),
        "scaler": fit.scaler.state_dict() if fit.use_amp else {},
        "best_miou": rec.best_miou,
        "best_epoch": rec.best_epoch,
        "history": rec.history,
        "world_size": dist.world_size,
    }


def _train_epoch(
    fit: _Fit,
    cfg: TrainConfig,
    epoch: int,
    dist: distributed.DistInfo,
    progress: Any,
    timer: StepTimer,
    log: Any,
) -> tuple[float, float]:
    """One pass over the training data, reseeded from (seed, epoch, rank); returns (mean loss, the
    learning rate of its last step)."""
    torch = require("torch")
    criterion = torch.nn.CrossEntropyLoss(ignore_index=IGNORE_INDEX)
    epoch_seed = (cfg.seed * 1_000_003 + epoch) * 64 + dist.rank
    _seed_all(epoch_seed)
    fit.tset.reseed(epoch_seed)
    fit.sampler.set_epoch(epoch)
    fit.net.train()
    what = f"epoch {epoch + 1}/{cfg.epochs}"
    loss_sum, seen, lr, started = 0.0, 0, fit.optimizer.param_groups[0]["lr"], time.perf_counter()
    for x, y in fit.loader:
        x = x.to(fit.device, non_blocking=True)
        y = y.to(fit.device, non_blocking=True)
        with torch.autocast(device_type="cuda", dtype=torch.float16, enabled=fit.use_amp):
            out = fit.net(x)
            if isinstance(out, dict):
                out = out["out"]
            loss = criterion(out.float(), y)
        if not torch.isfinite(loss):
            raise EdgesegError(
                f"loss became {loss.item()} at epoch {epoch + 1}; lower --lr or check the labels"
            )
        fit.optimizer.zero_grad(set_to_none=True)
        fit.scaler.scale(loss).backward()
        fit.scaler.step(fit.optimizer)
        fit.scaler.update()
        lr = fit.optimizer.param_groups[0]["lr"]
        fit.scheduler.step()
        loss_sum += float(loss.item())
        seen += 1
        if progress:
            ips = seen / max(time.perf_counter() - started, 1e-9)
            progress(what, seen, fit.iters, f"loss {loss_sum / seen:.4f}  lr {lr:.2e}  {ips:.2f} it/s")
        estimate = timer.step()
        if log and estimate:
            log(estimate)
    return loss_sum / max(1, seen), lr


def _save_epoch(
    fit: _Fit,
    cfg: TrainConfig,
    card: ModelCard,
    train_set: Any,
    train_state: dict[str, Any],
    metrics: SegMetrics,
    improved: bool,
) -> None:
    """Rank 0: `last.pt`, `best.pt` when the epoch improved, and the run's history.json."""
    from edgeseg.atomic import write_json
    from edgeseg.checkpoint import save_checkpoint

    summary = {"epoch": train_state["epoch"], **metrics.to_dict(card.classes)}
    data_hash = _listing_hash(train_set)
    state = {k: v.detach().cpu() for k, v in fit.model.state_dict().items()}
    names = ["last.pt", "best.pt"] if improved else ["last.pt"]
    for name in names:
        save_checkpoint(
            fit.run_dir / name, state, card, train_state=train_state, metrics=summary, data_hash=data_hash
        )
    write_json(fit.run_dir / "history.json", {"config": cfg.to_dict(), "history": train_state["history"]})


def _listing_hash(dataset: Any) -> str | None:
    fn = getattr(dataset, "listing_hash", None)
    return str(fn()) if callable(fn) else None
