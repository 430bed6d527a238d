"""GluonCV's ``_FCNHead``: the FCN head and the auxiliary head of every model."""

import keras

from kseg.models.layers import conv_bn_relu


def fcn_block(x, num_classes, name, channels=None, sync_bn=False):
    """conv3x3 -> ``channels`` (default: input channels / 4), BN, ReLU, Dropout 0.1, conv1x1 -> classes.

    ``x`` may be a list of tensors: the block then convolves their channel concatenation.
    """
    channels = channels or sum(t.shape[-1] for t in (x if isinstance(x, (list, tuple)) else [x])) // 4
    x = conv_bn_relu(x, channels, 3, name, sync_bn=sync_bn)
    x = keras.layers.Dropout(0.1, name=f"{name}_dropout")(x)
    return keras.layers.Conv2D(num_classes, 1, name=f"{name}_classifier")(x)


def fcn_head(features, num_classes, channels=None, sync_bn=False):
    """FCN-8s-style head on ``c5`` (2048 -> 512 -> classes)."""
    return fcn_block(features["c5"], num_classes, "head", channels, sync_bn)
