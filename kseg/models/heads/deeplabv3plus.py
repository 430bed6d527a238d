"""The VPLR DeepLabV3+ decoder (GluonCV ``deeplabv3b_plus._DeepLabHead``).

It differs from the paper's DeepLabV3+: the ASPP concatenates
``[pool, 1x1, r12, r24, r36]`` and projects with a bare 1x1 convolution (no
BN, ReLU or dropout); the low-level path is a bare 1x1 conv to 48 channels;
the classifier has no bias.
"""

from kseg.models.heads.aspp import ASPP_RATES, aspp_branches
from kseg.models.layers import ResizeLike, conv2d, conv_bn_relu


def vplr_deeplabv3plus_head(features, num_classes, channels=None, sync_bn=False):
    """ASPP on ``c5``, upsampled to ``c1`` (stride 2), fused with 48 low-level channels."""
    channels = channels or 256
    low_level = features["c1"]
    branches, pooled = aspp_branches(features["c5"], channels, ASPP_RATES, sync_bn)
    x = conv2d([pooled, *branches], channels, 1, "aspp_project_conv")
    x = ResizeLike(name="aspp_resize")([x, low_level])
    low_level = conv2d(low_level, max(1, channels * 48 // 256), 1, "decoder_low_level_conv")
    x = conv_bn_relu([low_level, x], channels, 3, "decoder_block1", sync_bn=sync_bn)
    x = conv_bn_relu(x, channels, 3, "decoder_block2", sync_bn=sync_bn)
    return conv2d(x, num_classes, 1, "decoder_classifier")
