"""PSPNet's pyramid pooling head (GluonCV ``_PSPHead``)."""

from kseg.models.heads.fcn import fcn_block
from kseg.models.layers import AdaptiveAveragePooling2D, ResizeLike, conv_bn_relu

PSP_BINS = (1, 2, 3, 6)


def psp_head(features, num_classes, channels=None, sync_bn=False):
    """Pool ``c5`` to 1/2/3/6 bins, 1x1 conv each to C/4, upsample, classify the concatenation.

    ``channels`` is the width of the 3x3 block after the concatenation (512).
    """
    x = features["c5"]
    branch_channels = x.shape[-1] // 4
    branches = [x]
    for index, bins in enumerate(PSP_BINS, start=1):
        name = f"psp_branch{index}"
        y = AdaptiveAveragePooling2D(bins, name=f"{name}_pool")(x)
        y = conv_bn_relu(y, branch_channels, 1, name, sync_bn=sync_bn)
        branches.append(ResizeLike(name=f"{name}_resize")([y, x]))
    return fcn_block(branches, num_classes, "head", channels or 512, sync_bn)
