"""GluonCV's poly learning rate, per iteration, with an optional linear warm-up."""

from __future__ import annotations

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
