"""GluonCV's learning-rate schedules, per iteration: poly (segmentation) and step with warm-up (detection)."""

from __future__ import annotations

import math
from collections.abc import Sequence

import keras
from keras import ops


@keras.saving.register_keras_serializable(package="kseg")
class PolyLearningRate(keras.optimizers.schedules.LearningRateSchedule):
    """``base_lr * (1 - t / (N - 1)) ** power`` (GluonCV's ``LRScheduler('poly')``, ``gluoncv/utils/lr_scheduler.py``).

    ``t`` is the step and ``N`` is ``total_steps``. ``warmup_steps`` ramps linearly
    from ``base_lr * warmup_ratio`` to the poly value over the first steps. The
    rate is clipped at 0 past ``total_steps``.

    Example:
        >>> schedule = PolyLearningRate(0.01, total_steps=101)
        >>> [round(float(schedule(step)), 5) for step in (0, 50, 100)]
        [0.01, 0.00536, 0.0]
    """

    def __init__(
        self,
        base_lr: float,
        total_steps: int,
        power: float = 0.9,
        warmup_steps: int = 0,
        warmup_ratio: float = 1 / 3,
    ):
        if total_steps < 2:
            raise ValueError(f"total_steps must be at least 2, got {total_steps}")
        self.base_lr = float(base_lr)
        self.total_steps = int(total_steps)
        self.power = float(power)
        self.warmup_steps = int(warmup_steps)
        self.warmup_ratio = float(warmup_ratio)

    def __call__(self, step):
        step = ops.cast(step, "float32")
        progress = ops.clip(step / (self.total_steps - 1), 0.0, 1.0)
        lr = self.base_lr * ops.power(1.0 - progress, self.power)
        if self.warmup_steps:
            ramp = self.warmup_ratio + (1.0 - self.warmup_ratio) * ops.minimum(step / self.warmup_steps, 1.0)
            lr = lr * ramp
        return lr

    def get_config(self):
        return {
            "base_lr": self.base_lr,
            "total_steps": self.total_steps,
            "power": self.power,
            "warmup_steps": self.warmup_steps,
            "warmup_ratio": self.warmup_ratio,
        }


@keras.saving.register_keras_serializable(package="kseg")
class StepWarmupSchedule(keras.optimizers.schedules.LearningRateSchedule):
    """GluonCV's detection schedule (``train_mask_rcnn.py``): a linear warm-up by iteration, then x``decay`` at
    the start of each decay epoch.

    While the global iteration ``t <= warmup_steps``: ``base_lr * (f (1 - a) + a)``, ``a = t / warmup_steps``
    (``f = warmup_factor``; exactly ``base_lr`` at ``t = warmup_steps``). At the first epoch at or past each
    entry of ``decay_epochs`` the current rate is multiplied by ``decay``, from that epoch's first
    iteration on. As GluonCV's loop: after the warm-up the rate is the last one it set, and a decay due
    while the warm-up still runs is overwritten by it.

    Example:
        >>> schedule = StepWarmupSchedule(0.01, steps_per_epoch=100, decay_epochs=(17, 23), warmup_steps=1000)
        >>> [round(float(schedule(step)), 6) for step in (0, 1000, 1699, 1700, 2300)]
        [0.003333, 0.01, 0.01, 0.001, 0.0001]
    """

    def __init__(
        self,
        base_lr: float,
        steps_per_epoch: int,
        decay_epochs: Sequence[float] = (17, 23),
        decay: float = 0.1,
        warmup_steps: float = 1000,
        warmup_factor: float = 1 / 3,
    ):
        if steps_per_epoch < 1:
            raise ValueError(f"steps_per_epoch must be at least 1, got {steps_per_epoch}")
        self.base_lr = float(base_lr)
        self.steps_per_epoch = int(steps_per_epoch)
        self.decay_epochs = tuple(float(e) for e in decay_epochs)
        self.decay = float(decay)
        self.warmup_steps = float(warmup_steps)
        self.warmup_factor = float(warmup_factor)

    def _warm(self, step):
        alpha = step / self.warmup_steps
        return self.base_lr * (self.warmup_factor * (1.0 - alpha) + alpha)

    def __call__(self, step):
        step = ops.cast(step, "float32")
        epoch = ops.floor(step / self.steps_per_epoch)
        # A decay counts when its epoch starts after the warm-up (otherwise the warm-up overwrites it).
        counted = [math.ceil(e) for e in self.decay_epochs if math.ceil(e) * self.steps_per_epoch > self.warmup_steps]
        decays = sum((ops.cast(epoch >= e, "float32") for e in counted), ops.zeros_like(step))
        if self.warmup_steps <= 0:
            return self.base_lr * ops.power(self.decay, decays)
        after_warmup = self._warm(math.floor(self.warmup_steps)) * ops.power(self.decay, decays)
        return ops.where(step <= self.warmup_steps, self._warm(step), after_warmup)

    def get_config(self):
        return {
            "base_lr": self.base_lr,
            "steps_per_epoch": self.steps_per_epoch,
            "decay_epochs": list(self.decay_epochs),
            "decay": self.decay,
            "warmup_steps": self.warmup_steps,
            "warmup_factor": self.warmup_factor,
        }
