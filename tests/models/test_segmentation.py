"""Tiny FCN/PSP/DeepLabV3/DeepLabV3+ models through the shared harness."""

import numpy as np
import pytest
from test_case import ModelTestHarness, random_images

from kseg.models import ResNetV1Backbone, SemanticSegmenter, WideResNet38Backbone


def tiny_resnet(variant="v1s", block="bottleneck", output_stride=8):
    return ResNetV1Backbone(
        depth=None, variant=variant, block=block, stage_depths=(1, 1, 2, 1), base_width=8, output_stride=output_stride
    )


def tiny_model(head, aux=True):
    if head == "deeplabv3plus":
        return SemanticSegmenter(WideResNet38Backbone(width_divisor=32), head=head, num_classes=5, head_channels=16)
    return SemanticSegmenter(tiny_resnet(), head=head, num_classes=5, aux=aux, head_channels=16)


HEADS = ["fcn", "psp", "deeplabv3", "deeplabv3plus"]


@pytest.mark.parametrize("head", HEADS)
class TestSemanticSegmenter(ModelTestHarness):
    def test_output_shapes(self, head):
        self.run_output_shape_test(tiny_model(head), num_classes=5)

    def test_config_roundtrip(self, head):
        self.run_config_roundtrip_test(tiny_model(head))

    def test_saving(self, head, tmp_path):
        self.run_saving_test(tiny_model(head), tmp_path, random_images(2, 45, 61))

    def test_jit_equals_eager(self, head):
        self.run_jit_test(tiny_model(head), random_images(2, 57, 71))


def test_aux_off_returns_a_tensor():
    model = tiny_model("psp", aux=False)
    out = model(random_images(1, 40, 40), training=False)
    assert tuple(out.shape) == (1, 40, 40, 5)


def test_vplr_rejects_aux():
    with pytest.raises(ValueError, match="no auxiliary head"):
        SemanticSegmenter(WideResNet38Backbone(width_divisor=32), head="deeplabv3plus", num_classes=3, aux=True)


def test_unknown_head():
    with pytest.raises(ValueError, match="Unknown head 'unet'"):
        SemanticSegmenter(tiny_resnet(), head="unet", num_classes=3)


def test_dropout_is_active_only_in_training():
    model = tiny_model("deeplabv3")
    images = random_images(1, 48, 48)
    a = model(images, training=False)["logits"]
    b = model(images, training=False)["logits"]
    np.testing.assert_array_equal(a, b)
