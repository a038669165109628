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
    from edgeseg.runtime.backends.torch import TorchBackend

    n = min(limit, len(dataset)) if limit else len(dataset)
    indices = range(dist.rank, n, dist.world_size)
    cm = confusion(TorchBackend.from_model(model, card), dataset, indices=indices)
    total = distributed.all_sum(dist, torch.from_numpy(cm.matrix.copy()))
    return metrics_from_confusion(total.numpy())


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
    torch = require("torch")
    from edgeseg.checkpoint import load_checkpoint, save_checkpoint
    from edgeseg.models import create_model
    from edgeseg.runtime.backends.torch import resolve_device

    dist = distributed.from_env()
    device = distributed.setup(dist, resolve_device(cfg.device))
    root = workspace.workdir(workdir)
    if not dist.is_main:
        progress = log = None

    try:
        resume_path = find_resume(resume, root, cfg.model) if resume else None
        payload = load_checkpoint(resume_path) if resume_path else None
        train_set, val_set = open_datasets(cfg, train_set, val_set)
        _seed_all(cfg.seed)  # identical initial weights on every rank
        weights = None if payload is not None else cfg.weights
        model = create_model(
            cfg.model, num_classes=len(train_set.classes), weights=weights, **cfg.model_kwargs
        )
        if weights is not None and log is not None and dist.is_main:
            log(f"initial weights: {weights} ({getattr(model, 'edgeseg_weights', 'loaded')})")
        model = model.to(device)
        card = make_card(cfg, train_set, getattr(model, "edgeseg_kwargs", None))
        if payload is not None and list(payload["card"].classes) != card.classes:
            raise EdgesegError(f"--resume: {resume_path} was trained on other classes than {cfg.data!r}")
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
        iters = len(loader)
        optimizer = build_optimizer(model, cfg)
        scheduler = build_scheduler(optimizer, cfg, iters * cfg.epochs)
        use_amp = bool(cfg.amp and device.startswith("cuda"))
        scaler = torch.amp.GradScaler("cuda", enabled=use_amp)

        start_epoch, best_miou, best_epoch, history = 0, -1.0, -1, []
        if payload is not None:
            state = payload["train_state"]
            model.load_state_dict(payload["model"])
            optimizer.load_state_dict(state["optimizer"])
            scheduler.load_state_dict(state["scheduler"])
            retarget(scheduler, cfg, iters * cfg.epochs)
            if state.get("scaler"):
                scaler.load_state_dict(state["scaler"])
            start_epoch = int(state["epoch"])
            best_miou = float(state.get("best_miou", -1.0))
            best_epoch = int(state.get("best_epoch", -1))
            history = list(state.get("history", []))
            if state.get("iters_per_epoch") not in (None, iters):
                from edgeseg.console import warn

                warn(f"iterations per epoch changed ({state['iters_per_epoch']} -> {iters}); schedule shifts")
            if start_epoch >= cfg.epochs:
                raise EdgesegError(
                    f"--resume: {resume_path} already finished {start_epoch} epochs; pass --epochs > {start_epoch}"
                )
            run_dir = resume_path.parent
        else:
            run_dir = workspace.new_run_dir(root, cfg.model) if dist.is_main else None
        run_dir = Path(distributed.broadcast_object(dist, str(run_dir) if run_dir else None))

        net = model
        if dist.enabled:
            ids = [torch.device(device).index] if device.startswith("cuda") else None
            net = torch.nn.parallel.DistributedDataParallel(model, device_ids=ids)
        criterion = torch.nn.CrossEntropyLoss(ignore_index=IGNORE_INDEX)
        best_path, last_path = run_dir / "best.pt", run_dir / "last.pt"
        metrics: SegMetrics | None = None
        best_metrics: SegMetrics | None = None

        timer = StepTimer(iters * (cfg.epochs - start_epoch))
        epoch_seconds: list[float] = []
        if log:
            for line in header_lines(
                cfg, train_set, val_set, batch=batch, steps_per_epoch=iters, world_size=dist.world_size,
                device=device, start_epoch=start_epoch, origin=size_origin,
            ):  # fmt: skip
                log(line)
        for epoch in range(start_epoch, cfg.epochs):
            epoch_seed = (cfg.seed * 1_000_003 + epoch) * 64 + dist.rank
            _seed_all(epoch_seed)
            tset.reseed(epoch_seed)
            sampler.set_epoch(epoch)
            net.train()
            what = f"epoch {epoch + 1}/{cfg.epochs}"
            loss_sum, seen, lr, started = 0.0, 0, optimizer.param_groups[0]["lr"], time.perf_counter()
            epoch_start = started
            for x, y in loader:
                x = x.to(device, non_blocking=True)
                y = y.to(device, non_blocking=True)
                with torch.autocast(device_type="cuda", dtype=torch.float16, enabled=use_amp):
                    out = net(x)
                    if isinstance(out, dict):
                        out = out["out"]
                    loss = criterion(out.float(), y)
                if not torch.isfinite(loss):
                    raise EdgesegError(
                        f"loss became {loss.item()} at epoch {epoch + 1}; lower --lr or check the labels"
                    )
                optimizer.zero_grad(set_to_none=True)
                scaler.scale(loss).backward()
                scaler.step(optimizer)
                scaler.update()
                lr = optimizer.param_groups[0]["lr"]
                scheduler.step()
                loss_sum += float(loss.item())
                seen += 1
                if progress:
                    ips = seen / max(time.perf_counter() - started, 1e-9)
                    progress(what, seen, iters, f"loss {loss_sum / seen:.4f}  lr {lr:.2e}  {ips:.2f} it/s")
                estimate = timer.step()
                if log and estimate:
                    log(estimate)

            distributed.sync_buffers(dist, model)  # BN running stats: rank 0's, on every rank
            metrics = validate(model, card, val_set, dist, cfg.val_limit)
            improved = metrics.miou > best_miou
            if improved:
                best_miou, best_epoch, best_metrics = float(metrics.miou), epoch + 1, metrics
            row = {
                "epoch": epoch + 1,
                "loss": loss_sum / max(1, seen),
                "lr": lr,  # the rate of the epoch's last step
                "val_miou": metrics.miou,
                "val_pixel_accuracy": metrics.pixel_accuracy,
            }
            history.append(row)
            if dist.is_main:
                train_state = {
                    "config": cfg.to_dict(),
                    "epoch": epoch + 1,
                    "iters_per_epoch": iters,
                    "global_step": (epoch + 1) * iters,
                    "optimizer": optimizer.state_dict(),
                    "scheduler": scheduler.state_dict(),
                    "scaler": scaler.state_dict() if use_amp else {},
                    "best_miou": best_miou,
                    "best_epoch": best_epoch,
                    "history": history,
                    "world_size": dist.world_size,
                }
                summary = {"epoch": epoch + 1, **metrics.to_dict(card.classes)}
                data_hash = _listing_hash(train_set)
                state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
                save_checkpoint(
                    last_path, state, card, train_state=train_state, metrics=summary, data_hash=data_hash
                )
                if improved:
                    save_checkpoint(
                        best_path,
                        state,
                        card,
                        train_state=train_state,
                        metrics=summary,
                        data_hash=data_hash,
                    )
                from edgeseg.atomic import write_json

                write_json(run_dir / "history.json", {"config": cfg.to_dict(), "history": history})
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
        return TrainResult(
            run_dir=run_dir,
            best=best_path if best_path.is_file() else None,
            last=last_path if last_path.is_file() else None,
            best_miou=best_miou,
            best_epoch=best_epoch,
            metrics=metrics,
            best_metrics=best_metrics,
            classes=card.classes,
            card=card,
            history=history,
            model=model,
            is_main=dist.is_main,
        )
    finally:
        distributed.cleanup(dist)


def _listing_hash(dataset: Any) -> str | None:
    fn = getattr(dataset, "listing_hash", None)
    return str(fn()) if callable(fn) else None
