"""Optimizers and per-iteration learning-rate schedules (poly / cosine, optional linear warm-up).

The schedule is a `LambdaLR` driven by a small callable object rather than a closure, so its state
(and therefore the exact position in the schedule) survives `--resume` through `state_dict()`.
"""

from __future__ import annotations

import math
from typing import Any

from edgeseg.lazy import require
from edgeseg.training.config import TrainConfig


class LrFactor:
    """Multiplier of the base lr at iteration `step` (0-based) of `total` iterations."""

    def __init__(self, kind: str, total: int, warmup: int = 0, power: float = 0.9) -> None:
        self.kind = kind
        self.total = max(1, int(total))
        self.warmup = max(0, min(int(warmup), self.total - 1))
        self.power = float(power)

    def __call__(self, step: int) -> float:
        if step < self.warmup:
            return (step + 1) / (self.warmup + 1)
        span = max(1, self.total - self.warmup)
        t = min(1.0, (step - self.warmup) / span)
        if self.kind == "cosine":
            return 0.5 * (1.0 + math.cos(math.pi * t))
        return (1.0 - t) ** self.power


def build_optimizer(model: Any, cfg: TrainConfig) -> Any:
    """SGD (momentum, nesterov off) or AdamW; no weight decay on norms and biases."""
    torch = require("torch")
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        (no_decay if p.ndim <= 1 or name.endswith(".bias") else decay).append(p)
    groups = [{"params": decay, "weight_decay": cfg.decay}, {"params": no_decay, "weight_decay": 0.0}]
    if cfg.optimizer == "adamw":
        return torch.optim.AdamW(groups, lr=cfg.base_lr)
    return torch.optim.SGD(groups, lr=cfg.base_lr, momentum=cfg.momentum)


def build_scheduler(optimizer: Any, cfg: TrainConfig, total_iters: int) -> Any:
    torch = require("torch")
    return torch.optim.lr_scheduler.LambdaLR(optimizer, LrFactor(cfg.schedule, total_iters, cfg.warmup_iters))


def retarget(scheduler: Any, cfg: TrainConfig, total_iters: int) -> None:
    """After `load_state_dict` (which restores the saved LrFactor), apply this run's schedule length.

    Identical when resuming with the same settings; with a changed --epochs the schedule stretches
    from the current step instead of staying at the old end (lr 0).
    """
    fresh = LrFactor(cfg.schedule, total_iters, cfg.warmup_iters)
    for factor in scheduler.lr_lambdas:
        if isinstance(factor, LrFactor):
            factor.__dict__.update(fresh.__dict__)
