"""GluonCV's poly learning rate, per iteration, with an optional linear warm-up."""

import keras
from keras import ops


@keras.saving.register_keras_serializable(package="kseg")
class PolyLearningRate(keras.optimizers.schedules.LearningRateSchedule):
    """``base_lr * (1 - t / (N - 1)) ** power`` (GluonCV's ``LRScheduler('poly')``).

    ``warmup_steps`` ramps linearly from ``base_lr * warmup_ratio`` to the poly
    value over the first steps. The rate is clipped at 0 past ``total_steps``.
    """

    def __init__(self, base_lr, total_steps, power=0.9, warmup_steps=0, warmup_ratio=1 / 3):
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
