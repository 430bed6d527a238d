"""SGD as MXNet's: weight decay inside the gradient, and per-variable learning-rate multipliers.

MXNet's SGD computes ``mom = momentum * mom - lr * mult * (grad + wd * w)``; Keras'
``weight_decay`` is decoupled from momentum instead, so the decay is added to
the gradient here. GluonCV trains the head and the auxiliary head at 10x the
backbone's rate (``lr_mult = 10``, ``scripts/segmentation/train.py``).
"""

from __future__ import annotations

from collections.abc import Mapping

import keras
from keras import ops


def head_lr_multipliers(model: keras.Model, multiplier: float = 10.0) -> dict[str, float]:
    """``{variable path: multiplier}`` for every trainable variable outside the backbone (``model.backbone``).

    Example:
        >>> model = kseg.models.build("fcn", "resnet18_v1b", num_classes=19, aux=True)
        >>> multipliers = head_lr_multipliers(model)
        >>> multipliers["head_conv/kernel"], multipliers["aux_classifier/bias"], len(multipliers)
        (10.0, 10.0, 10)
    """
    backbone = {id(v) for v in model.backbone.trainable_variables}
    return {v.path: float(multiplier) for v in model.trainable_variables if id(v) not in backbone}


@keras.saving.register_keras_serializable(package="kseg")
class GluonSGD(keras.optimizers.SGD):
    """SGD with momentum, coupled L2 weight decay and per-variable learning-rate multipliers.

    Args:
        learning_rate: a float or a schedule (GluonCV's: :class:`PolyLearningRate`).
        momentum: SGD momentum.
        l2_decay: weight decay added to the gradient, ``grad + l2_decay * w``, as MXNet's SGD does.
        lr_multipliers: ``{variable path: multiplier}`` (see :func:`head_lr_multipliers`); other
            variables train at 1x.

    Example:
        >>> from kseg.training import GluonSGD, PolyLearningRate, head_lr_multipliers
        >>> model = kseg.models.get("fcn_resnet50_ade", aux=True)
        >>> optimizer = GluonSGD(PolyLearningRate(0.01, total_steps=10_000), momentum=0.9, l2_decay=1e-4,
        ...                      lr_multipliers=head_lr_multipliers(model))
    """

    def __init__(
        self,
        learning_rate: float | keras.optimizers.schedules.LearningRateSchedule = 0.01,
        momentum: float = 0.9,
        l2_decay: float = 1e-4,
        lr_multipliers: Mapping[str, float] | None = None,
        **kwargs,
    ):
        super().__init__(learning_rate=learning_rate, momentum=momentum, **kwargs)
        self.l2_decay = float(l2_decay)
        self.lr_multipliers = dict(lr_multipliers or {})

    def build(self, variables):
        super().build(variables)
        # update_step sees backend variables; key the multipliers the way the optimizer keys its slots.
        self._multiplier_by_key = {self._var_key(v): self.lr_multipliers.get(v.path, 1.0) for v in variables}

    def update_step(self, gradient, variable, learning_rate):
        if self.l2_decay:
            gradient = gradient + ops.cast(self.l2_decay, gradient.dtype) * ops.cast(variable, gradient.dtype)
        multiplier = self._multiplier_by_key.get(self._var_key(variable), 1.0)
        if multiplier != 1.0:
            learning_rate = learning_rate * ops.cast(multiplier, learning_rate.dtype)
        super().update_step(gradient, variable, learning_rate)

    def get_config(self):
        return {**super().get_config(), "l2_decay": self.l2_decay, "lr_multipliers": self.lr_multipliers}
