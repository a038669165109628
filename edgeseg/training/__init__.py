"""edgeseg.training: `train(TrainConfig)` with checkpoints, resume and torchrun/DDP support."""

from edgeseg.training.config import TrainConfig
from edgeseg.training.slim import slim_checkpoint
from edgeseg.training.trainer import TrainResult, config_for_resume, find_resume, train

__all__ = ["TrainConfig", "TrainResult", "config_for_resume", "find_resume", "slim_checkpoint", "train"]
