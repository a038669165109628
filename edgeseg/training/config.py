"""Training hyper-parameters as one plain dataclass, stored inside every checkpoint so `--resume`
rebuilds exactly the same optimizer and schedule."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Literal

from edgeseg.card import MIN_INPUT_SIDE
from edgeseg.errors import EdgesegError

DEFAULT_LR = {"sgd": 0.01, "adamw": 1e-3}
DEFAULT_WEIGHT_DECAY = {"sgd": 1e-4, "adamw": 1e-2}


@dataclass(frozen=True)
class TrainConfig:
    model: str
    data: str
    val_data: str | None = None  # None: the dataset's held-out split, or synth scenes from another seed
    epochs: int = 30
    batch_size: int = 8
    lr: float | None = None  # None: per-optimizer default (DEFAULT_LR)
    optimizer: Literal["sgd", "adamw"] = "sgd"
    schedule: Literal["poly", "cosine"] = "poly"
    warmup_iters: int = 0
    weight_decay: float | None = None
    momentum: float = 0.9
    height: int = 192  # training crop = the input size recorded in the card
    width: int = 384
    crop: tuple[int, int] | None = None  # random training crops (H, W) from the input-size image
    model_kwargs: dict[str, Any] = field(default_factory=dict)
    weights: str | None = None  # initial (e.g. ImageNet backbone) weights for create_model
    augment: bool = True
    seed: int = 0
    workers: int = 0
    device: str = "auto"
    amp: bool = True  # mixed precision, used on CUDA only
    val_limit: int | None = None  # evaluate on the first N validation images only

    def __post_init__(self) -> None:
        if self.optimizer not in DEFAULT_LR:
            raise EdgesegError(f"unknown optimizer {self.optimizer!r} (sgd, adamw)")
        if self.schedule not in ("poly", "cosine"):
            raise EdgesegError(f"unknown schedule {self.schedule!r} (poly, cosine)")
        for name in ("epochs", "batch_size"):
            if int(getattr(self, name)) < 1:
                raise EdgesegError(f"--{name.replace('_', '-')} must be at least 1")
        if min(int(self.height), int(self.width)) < MIN_INPUT_SIDE:  # export would refuse the model later
            raise EdgesegError(
                f"--height/--width must be at least {MIN_INPUT_SIDE} pixels (the smallest input edgeseg "
                f"exports), got {self.height}x{self.width}"
            )
        if self.crop is not None:
            object.__setattr__(self, "crop", (int(self.crop[0]), int(self.crop[1])))  # JSON gives lists
            if min(self.crop) < 1:
                raise EdgesegError("--crop sizes must be at least 1")
            if not self.augment:
                raise EdgesegError("--crop needs augmentation (drop --no-augment)")
        if self.warmup_iters < 0:
            raise EdgesegError("--warmup must be >= 0")
        if self.lr is not None and self.lr <= 0:
            raise EdgesegError("--lr must be positive")

    @property
    def base_lr(self) -> float:
        return float(self.lr if self.lr is not None else DEFAULT_LR[self.optimizer])

    @property
    def decay(self) -> float:
        return float(
            self.weight_decay if self.weight_decay is not None else DEFAULT_WEIGHT_DECAY[self.optimizer]
        )

    @property
    def input_size(self) -> tuple[int, int]:
        return (int(self.height), int(self.width))

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TrainConfig:
        known = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in known})
