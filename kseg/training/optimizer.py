"""SGD as MXNet's: weight decay inside the gradient, and per-variable learning-rate multipliers.

MXNet's SGD computes ``mom = momentum * mom - lr * mult * (grad + wd * w)``; Keras'
``weight_decay`` is decoupled from momentum instead, so the decay is added to
the gradient here. GluonCV trains the head and the auxiliary head at 10x the
backbone's rate (``lr_mult = 10``, ``scripts/segmentation/train.py``).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

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


def bias_l2_multipliers(variables: Iterable[keras.Variable]) -> dict[str, float]:
    """``{path: 0.0}`` for every bias among ``variables``: GluonCV's detection scripts decay no bias
    (``collect_params('.*bias')`` gets ``wd_mult = 0``).

    Example:
        >>> layer = keras.layers.Dense(2)
        >>> layer.build((None, 3))
        >>> bias_l2_multipliers(layer.trainable_variables)
        {'dense/bias': 0.0}
    """
    return {v.path: 0.0 for v in variables if v.path.rsplit("/", 1)[-1] == "bias"}


@keras.saving.register_keras_serializable(package="kseg")
class GluonSGD(keras.optimizers.SGD):
    """SGD with momentum, coupled L2 weight decay and per-variable learning-rate multipliers.

    Args:
        learning_rate: a float or a schedule (GluonCV's: :class:`PolyLearningRate`).
        momentum: SGD momentum.
        l2_decay: weight decay added to the gradient, ``grad + l2_decay * w``, as MXNet's SGD does.
        lr_multipliers: ``{variable path: multiplier}`` (see :func:`head_lr_multipliers`); other
            variables train at 1x.
        l2_multipliers: ``{variable path: multiplier}`` of ``l2_decay`` (MXNet's ``wd_mult``; GluonCV's
            Mask R-CNN sets 0 on every bias, see :func:`bias_l2_multipliers`); others 1.

    MXNet's ``clip_gradient`` (elementwise, before the decay is added) is Keras' ``clipvalue``.

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
        l2_multipliers: Mapping[str, float] | None = None,
        **kwargs,
    ):
        super().__init__(learning_rate=learning_rate, momentum=momentum, **kwargs)
        self.l2_decay = float(l2_decay)
        self.lr_multipliers = dict(lr_multipliers or {})
        self.l2_multipliers = dict(l2_multipliers or {})

    def build(self, variables):
        super().build(variables)
        # update_step sees backend variables; key the multipliers the way the optimizer keys its slots.
        self._multiplier_by_key = {self._var_key(v): self.lr_multipliers.get(v.path, 1.0) for v in variables}
        self._decay_by_key = {self._var_key(v): self.l2_decay * self.l2_multipliers.get(v.path, 1.0) for v in variables}

    def update_step(self, gradient, variable, learning_rate):
        decay = self._decay_by_key.get(self._var_key(variable), self.l2_decay)
        if decay:
            gradient = gradient + ops.cast(decay, gradient.dtype) * ops.cast(variable, gradient.dtype)
        multiplier = self._multiplier_by_key.get(self._var_key(variable), 1.0)
        if multiplier != 1.0:
            learning_rate = learning_rate * ops.cast(multiplier, learning_rate.dtype)
        super().update_step(gradient, variable, learning_rate)

    def get_config(self):
        return {
            **super().get_config(),
            "l2_decay": self.l2_decay,
            "lr_multipliers": self.lr_multipliers,
            "l2_multipliers": self.l2_multipliers,
        }
