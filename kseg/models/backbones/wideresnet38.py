"""WideResNet38-A2 (mapillary's in-place ABN network) as GluonCV's VPLR model uses it.

Pre-activation blocks: ``a = ReLU(BN(x))``; the shortcut is a 1x1 projection of
``a`` (carrying the stride) when the shape changes, otherwise ``x``; the block
returns ``convs(a) + shortcut`` with nothing after it. The segmentation model
drops the final ``bn_out``, so ``c5`` is the raw sum of mod7. The max pools see
unrectified inputs, hence ``-inf`` padding.

Features: ``c1`` = mod2 (stride 2, 128 ch, the decoder's low-level input),
``c2`` = mod3, ``c3`` = mod4, ``c4`` = mod5, ``c5`` = mod7 (4096 ch).
"""

from __future__ import annotations

import keras

from kseg.models.inputs import ImageModel
from kseg.models.layers import PaddedMaxPooling2D, batch_norm, conv2d, dtype_policy_scope, policy_name, relu

# (module name, blocks, channels, dropout) for mod2..mod7
WRN38_MODULES = (
    ("mod2", 3, (128, 128), None),
    ("mod3", 3, (256, 256), None),
    ("mod4", 6, (512, 512), None),
    ("mod5", 3, (512, 1024), None),
    ("mod6", 1, (512, 1024, 2048), 0.3),
    ("mod7", 1, (1024, 2048, 4096), 0.5),
)


def _identity_residual_block(x, in_channels, channels, strides, dilation, dropout, name, sync_bn):
    bottleneck = len(channels) == 3
    a = relu(batch_norm(x, f"{name}_bn1", sync_bn), f"{name}_relu1")
    if strides != 1 or in_channels != channels[-1]:
        shortcut = conv2d(a, channels[-1], 1, f"{name}_proj_conv", strides=strides)
    else:
        shortcut = x
    if bottleneck:
        out = conv2d(a, channels[0], 1, f"{name}_conv1", strides=strides)
        out = relu(batch_norm(out, f"{name}_bn2", sync_bn), f"{name}_relu2")
        out = conv2d(out, channels[1], 3, f"{name}_conv2", dilation=dilation)
        out = relu(batch_norm(out, f"{name}_bn3", sync_bn), f"{name}_relu3")
        if dropout:
            out = keras.layers.Dropout(dropout, name=f"{name}_dropout")(out)
        out = conv2d(out, channels[2], 1, f"{name}_conv3")
    else:
        out = conv2d(a, channels[0], 3, f"{name}_conv1", strides=strides, dilation=dilation)
        out = relu(batch_norm(out, f"{name}_bn2", sync_bn), f"{name}_relu2")
        if dropout:
            out = keras.layers.Dropout(dropout, name=f"{name}_dropout")(out)
        out = conv2d(out, channels[1], 3, f"{name}_conv2", dilation=dilation)
    return keras.layers.Add(name=f"{name}_add")([out, shortcut])


@keras.saving.register_keras_serializable(package="kseg")
class WideResNet38Backbone(ImageModel, keras.Model):
    """WideResNet38-A2, dilated to output stride 8 (or 32 with ``dilated=False``).

    Returns ``{"c1": ..., "c5": ...}`` (see the module docstring for which module each is).

    Args:
        dilated: output stride 8 (mod4 strided, mod5-mod7 dilated 2, 4, 4), as the
            VPLR model; False: output stride 32, no dilation.
        width_divisor: divides every width, for tiny test models (1: the real network).
        sync_bn: use ``BatchNormalization(synchronized=True)``.

    Example:
        >>> import numpy as np
        >>> backbone = WideResNet38Backbone(width_divisor=16)
        >>> features = backbone(np.zeros((1, 64, 64, 3), "float32"))
        >>> features["c5"].shape  # stride 8, mod7's 4096 channels / 16
        TensorShape([1, 8, 8, 256])
    """

    def __init__(self, dilated: bool = True, width_divisor: int = 1, sync_bn: bool = False, **kwargs):
        def width(c):
            return max(1, c // width_divisor)

        dtype = kwargs.pop("dtype", None)
        with dtype_policy_scope(dtype):
            inputs, outputs = self._build(dilated, width, sync_bn)
        super().__init__(inputs=inputs, outputs=outputs, **kwargs)
        if dtype is not None:  # a functional model takes no dtype argument: its layers were built under it
            self.dtype_policy = dtype
        self.dilated = dilated
        self.width_divisor = width_divisor
        self.sync_bn = sync_bn
        self.feature_channels = {
            "c1": width(128),
            "c2": width(256),
            "c3": width(512),
            "c4": width(1024),
            "c5": width(4096),
        }

    @staticmethod
    def _build(dilated, width, sync_bn):
        inputs = keras.Input(shape=(None, None, 3), name="images")
        x = conv2d(inputs, width(64), 3, "mod1_conv")
        in_channels = width(64)
        features = {}
        for mod_id, (mod, blocks, channels, dropout) in enumerate(WRN38_MODULES):
            channels = tuple(width(c) for c in channels)
            if mod in ("mod2", "mod3"):
                x = PaddedMaxPooling2D(3, 2, 1, name=f"pool{mod_id + 2}")(x)
            for block in range(blocks):
                if dilated:
                    dilation = {3: 2, 4: 4, 5: 4}.get(mod_id, 1)
                    strides = 2 if block == 0 and mod_id == 2 else 1
                else:
                    dilation = 1
                    strides = 2 if block == 0 and 2 <= mod_id <= 4 else 1
                x = _identity_residual_block(
                    x, in_channels, channels, strides, dilation, dropout, f"{mod}_block{block}", sync_bn
                )
                in_channels = channels[-1]
            features[mod] = x

        outputs = {
            "c1": features["mod2"],
            "c2": features["mod3"],
            "c3": features["mod4"],
            "c4": features["mod5"],
            "c5": features["mod7"],
        }
        return inputs, outputs

    def get_config(self):
        return {
            "name": self.name,
            "trainable": self.trainable,
            "dtype": policy_name(self),
            "dilated": self.dilated,
            "width_divisor": self.width_divisor,
            "sync_bn": self.sync_bn,
        }

    @classmethod
    def from_config(cls, config):
        return cls(**config)
