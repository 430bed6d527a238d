"""DeepLabV3's ASPP head as GluonCV builds it (``_DeepLabHead``)."""

import keras

from kseg.models.heads.fcn import fcn_block
from kseg.models.layers import After, ResizeLike, conv_bn_relu

ASPP_RATES = (12, 24, 36)


def aspp_pooling(x, channels, name, sync_bn=False):
    """Image pooling: global average, 1x1 conv, BN, ReLU, broadcast back to ``x``'s size."""
    y = keras.layers.GlobalAveragePooling2D(keepdims=True, name=f"{name}_gap")(x)
    y = conv_bn_relu(y, channels, 1, name, sync_bn=sync_bn)
    return ResizeLike(name=f"{name}_resize")([y, x])


def aspp_branches(x, channels, rates, sync_bn=False):
    """The 1x1 branch, one 3x3 branch per rate, and image pooling."""
    branches = [conv_bn_relu(x, channels, 1, "aspp_branch0", sync_bn=sync_bn)]
    for index, rate in enumerate(rates, start=1):
        source = After(name=f"aspp_branch{index}_after")([x, branches[-1]])
        branches.append(conv_bn_relu(source, channels, 3, f"aspp_branch{index}", dilation=rate, sync_bn=sync_bn))
    pooled = aspp_pooling(x, channels, "aspp_pool", sync_bn)
    return branches, pooled


def deeplabv3_head(features, num_classes, channels=None, sync_bn=False):
    """ASPP (1x1, rates 12/24/36, pooling) -> project 1x1 + BN + ReLU + Dropout 0.5,
    then GluonCV's extra conv3x3 block with Dropout 0.1 and the classifier."""
    channels = channels or 256
    branches, pooled = aspp_branches(features["c5"], channels, ASPP_RATES, sync_bn)
    x = conv_bn_relu([*branches, pooled], channels, 1, "aspp_project", sync_bn=sync_bn)
    x = keras.layers.Dropout(0.5, name="aspp_project_dropout")(x)
    return fcn_block(x, num_classes, "head", channels, sync_bn)


__all__ = ["ASPP_RATES", "aspp_branches", "aspp_pooling", "deeplabv3_head"]
