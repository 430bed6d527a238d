"""Backbone strides, dilation rule and widths."""

import keras
import numpy as np
import pytest
from test_case import random_images

from kseg.models import ResNetV1Backbone, WideResNet38Backbone


def spatial(features, name):
    return tuple(features[name].shape[1:3])


@pytest.mark.parametrize("output_stride,expected", [(8, (8, 8, 8)), (16, (8, 16, 16)), (32, (8, 16, 32))])
def test_resnet_output_stride(output_stride, expected):
    backbone = ResNetV1Backbone(
        depth=None, block="basic", stage_depths=(1, 1, 1, 1), base_width=8, output_stride=output_stride
    )
    features = backbone(random_images(1, 64, 96))
    assert spatial(features, "c1") == (32, 48)
    assert spatial(features, "c2") == (16, 24)
    for name, stride in zip(("c3", "c4", "c5"), expected, strict=True):
        assert spatial(features, name) == (64 // stride, 96 // stride), name


def test_resnet_odd_sizes_follow_floor_arithmetic():
    backbone = ResNetV1Backbone(
        depth=None, block="bottleneck", stage_depths=(1, 1, 1, 1), base_width=8, output_stride=8
    )
    features = backbone(random_images(2, 97, 131))
    # conv 3x3/2 pad 1 -> 49x66, max pool 3/2/1 -> 25x33, layer2 stride 2 -> 13x17
    assert spatial(features, "c1") == (49, 66)
    assert spatial(features, "c2") == (25, 33)
    assert spatial(features, "c5") == (13, 17)


def _dilations(backbone, stage):
    rates = {}
    for layer in backbone.layers:
        if (
            isinstance(layer, keras.layers.Conv2D)
            and layer.name.startswith(f"layer{stage}_")
            and layer.kernel_size == (3, 3)
        ):
            rates[layer.name] = layer.dilation_rate[0]
    return rates


@pytest.mark.large
def test_resnet101_v1s_dilation_rule_as_gluoncv():
    """layer3: first block dilation 1, then 2; layer4: first block 2, then 4."""
    backbone = ResNetV1Backbone(depth=101, variant="v1s", output_stride=8)
    layer3 = _dilations(backbone, 3)
    assert layer3.pop("layer3_block0_conv2") == 1
    assert set(layer3.values()) == {2} and len(layer3) == 22
    layer4 = _dilations(backbone, 4)
    assert layer4 == {"layer4_block0_conv2": 2, "layer4_block1_conv2": 4, "layer4_block2_conv2": 4}
    assert backbone.get_layer("stem_conv1").filters == 64
    assert backbone.get_layer("stem_conv3").filters == 128


def test_basic_block_second_conv_uses_stage_dilation():
    backbone = ResNetV1Backbone(depth=None, block="basic", stage_depths=(1, 1, 2, 2), base_width=8, output_stride=8)
    assert backbone.get_layer("layer4_block0_conv1").dilation_rate == (2, 2)
    assert backbone.get_layer("layer4_block0_conv2").dilation_rate == (4, 4)
    assert backbone.get_layer("layer3_block0_conv1").dilation_rate == (1, 1)
    assert backbone.get_layer("layer3_block0_conv2").dilation_rate == (2, 2)


def test_v1d_average_pool_shortcut_on_odd_sizes():
    backbone = ResNetV1Backbone(depth=None, variant="v1d", block="bottleneck", stage_depths=(1, 1, 1, 1), base_width=8)
    features = backbone(random_images(1, 75, 53))
    assert spatial(features, "c5") == (3, 2)
    assert "layer2_block0_downsample_pool" in [layer.name for layer in backbone.layers]


def test_wideresnet38_strides_and_widths():
    backbone = WideResNet38Backbone(width_divisor=32)
    features = backbone(random_images(1, 64, 80))
    assert spatial(features, "c1") == (32, 40)
    assert spatial(features, "c3") == (8, 10)
    assert spatial(features, "c5") == (8, 10)
    assert features["c5"].shape[-1] == 4096 // 32


@pytest.mark.parametrize(
    "kwargs,message",
    [({"variant": "v2"}, "Unknown ResNet variant"), ({"output_stride": 4}, "output_stride"), ({"depth": 77}, "depth")],
)
def test_backbone_argument_errors(kwargs, message):
    with pytest.raises(ValueError, match=message):
        ResNetV1Backbone(**kwargs)


def test_backbone_features_finite():
    backbone = WideResNet38Backbone(width_divisor=32)
    features = backbone(random_images(1, 31, 29))
    assert all(np.all(np.isfinite(v)) for v in features.values())
