"""Training: the recipe (``trainer``), configs, checkpoints, distributed setup, logging."""

from __future__ import annotations

from mullm.train.config import TrainConfig, load_train_config
from mullm.train.trainer import Trainer, TrainingError, train

__all__ = ["TrainConfig", "Trainer", "TrainingError", "load_train_config", "train"]
