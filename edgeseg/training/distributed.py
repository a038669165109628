"""torchrun / DDP support: detect the launcher's environment, set up the process group (NCCL on CUDA,
gloo on CPU) and give the trainer a few collective helpers. Single-process runs go through the same
code with world_size 1 and no process group."""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

from edgeseg.errors import EdgesegError
from edgeseg.lazy import require


@dataclass(frozen=True)
class DistInfo:
    world_size: int = 1
    rank: int = 0
    local_rank: int = 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def from_env(env: dict[str, str] | None = None) -> DistInfo:
    """Read WORLD_SIZE / RANK / LOCAL_RANK as set by torchrun (absent: a single process)."""
    env = os.environ if env is None else env
    try:
        world = int(env.get("WORLD_SIZE", "1"))
        rank = int(env.get("RANK", env.get("LOCAL_RANK", "0")))
        local = int(env.get("LOCAL_RANK", "0"))
    except ValueError:
        raise EdgesegError("WORLD_SIZE / RANK / LOCAL_RANK must be integers (set by torchrun)") from None
    if world < 1 or not 0 <= rank < world:
        raise EdgesegError(f"inconsistent torchrun environment: RANK={rank}, WORLD_SIZE={world}")
    return DistInfo(world, rank, local)


def setup(info: DistInfo, device: str) -> str:
    """Initialise the process group if needed; returns the device this rank trains on."""
    torch = require("torch")
    if device.startswith("cuda") and info.enabled:
        device = f"cuda:{info.local_rank}"
        torch.cuda.set_device(info.local_rank)
    if info.enabled and not torch.distributed.is_initialized():
        backend = "nccl" if device.startswith("cuda") else "gloo"
        torch.distributed.init_process_group(backend=backend, rank=info.rank, world_size=info.world_size)
    return device


def cleanup(info: DistInfo) -> None:
    torch = require("torch")
    if info.enabled and torch.distributed.is_initialized():
        torch.distributed.destroy_process_group()


def barrier(info: DistInfo) -> None:
    if info.enabled:
        require("torch").distributed.barrier()


def all_sum(info: DistInfo, value: Any) -> Any:
    """Sum a tensor over ranks (in place) and return it."""
    if info.enabled:
        require("torch").distributed.all_reduce(value)
    return value


def broadcast_object(info: DistInfo, obj: Any) -> Any:
    """Rank 0's value of `obj` on every rank (e.g. the run directory it created)."""
    if not info.enabled:
        return obj
    box = [obj]
    require("torch").distributed.broadcast_object_list(box, src=0)
    return box[0]


def sync_buffers(info: DistInfo, model: Any) -> None:
    """Copy rank 0's buffers (BatchNorm running statistics) to every rank.

    DDP keeps parameters in lock-step but each rank updates running statistics from its own last batch,
    so without this the ranks would validate (and could save) slightly different models.
    """
    if not info.enabled:
        return
    dist = require("torch").distributed
    for buf in model.buffers():
        dist.broadcast(buf, src=0)
