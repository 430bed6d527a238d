"""Training as library code: a typed :class:`TrainConfig`, ``train(config)``, and its building blocks.

The building blocks are GluonCV's: SGD with coupled weight decay and the
heads' 10x learning rate (:class:`GluonSGD`), the poly schedule
(:class:`PolyLearningRate`), and a resumable data stream and checkpoints.

Example:
    >>> from kseg.training import TrainConfig, train
    >>> report = train(TrainConfig(model="fcn", backbone="resnet18_v1b", dataset="citys", dataset_dir="data",
    ...                            synthetic_data=True, epochs=2, batch_size=4, base_size=112, crop_size=96))
    >>> report.metrics["pixAcc"]
"""

from kseg.training.config import TrainConfig
from kseg.training.optimizer import GluonSGD, head_lr_multipliers
from kseg.training.schedules import PolyLearningRate
from kseg.training.trainer import TrainReport, config_flags, train

__all__ = ["GluonSGD", "PolyLearningRate", "TrainConfig", "TrainReport", "config_flags", "head_lr_multipliers", "train"]
