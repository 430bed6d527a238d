"""Training as library code: a typed :class:`TrainConfig`, ``train(config)``, and its building blocks.

The building blocks are GluonCV's: SGD with coupled weight decay, the
heads' 10x learning rate and no decay on detection biases (:class:`GluonSGD`),
the poly schedule (:class:`PolyLearningRate`) and the detection step schedule
(:class:`StepWarmupSchedule`), and a resumable data stream and checkpoints.
Mask R-CNN's training model is :class:`kseg.training.mask_rcnn.MaskRCNNTraining`.

Example:
    >>> from kseg.training import TrainConfig, train
    >>> report = train(TrainConfig(model="fcn", backbone="resnet18_v1b", dataset="citys", dataset_dir="data",
    ...                            synthetic_data=True, epochs=2, batch_size=4, base_size=112, crop_size=96))
    >>> report.metrics["pixAcc"]
"""

from kseg.training.config import TrainConfig
from kseg.training.optimizer import GluonSGD, bias_l2_multipliers, head_lr_multipliers
from kseg.training.schedules import PolyLearningRate, StepWarmupSchedule
from kseg.training.trainer import TrainReport, config_flags, train

__all__ = [
    "GluonSGD",
    "PolyLearningRate",
    "StepWarmupSchedule",
    "TrainConfig",
    "TrainReport",
    "bias_l2_multipliers",
    "config_flags",
    "head_lr_multipliers",
    "train",
]
