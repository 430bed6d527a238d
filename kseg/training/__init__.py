"""Training building blocks: GluonCV's SGD, the poly schedule, head learning rates."""

from kseg.training.optimizer import GluonSGD, head_lr_multipliers
from kseg.training.schedules import PolyLearningRate

__all__ = ["GluonSGD", "PolyLearningRate", "head_lr_multipliers"]
