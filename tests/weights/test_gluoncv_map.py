"""The GluonCV name maps: every array used exactly once, clear errors otherwise."""

import numpy as np
import pytest
from test_case import random_images

from kseg.models import ResNetV1Backbone, SemanticSegmenter, WideResNet38Backbone
from kseg.weights.gluoncv import gluoncv_arrays, gluoncv_layer_map, load_gluoncv_params
from kseg.weights.mxnet_params import params_to_bytes


def tiny(head, variant="v1s", aux=True, num_classes=4):
    if head == "deeplabv3plus":
        backbone = WideResNet38Backbone(width_divisor=32, name="backbone")
        return SemanticSegmenter(backbone, head=head, num_classes=num_classes, head_channels=16)
    backbone = ResNetV1Backbone(
        depth=None,
        variant=variant,
        block="bottleneck",
        stage_depths=(1, 2, 1, 1),
        base_width=8,
        output_stride=8,
        name="backbone",
    )
    return SemanticSegmenter(backbone, head=head, num_classes=num_classes, aux=aux, head_channels=16)


@pytest.mark.parametrize(
    "head,variant",
    [("fcn", "v1s"), ("psp", "v1s"), ("deeplabv3", "v1s"), ("fcn", "v1b"), ("fcn", "v1d"), ("deeplabv3plus", None)],
)
def test_roundtrip_through_gluoncv_bytes(head, variant):
    source = tiny(head, variant)
    data = params_to_bytes(gluoncv_arrays(source))
    target = tiny(head, variant)
    load_gluoncv_params(target, data)
    images = random_images(2, 37, 45)
    out_a, out_b = source(images, training=False), target(images, training=False)
    out_a = out_a if isinstance(out_a, dict) else {"logits": out_a}
    out_b = out_b if isinstance(out_b, dict) else {"logits": out_b}
    for key in out_a:
        np.testing.assert_allclose(out_b[key], out_a[key], atol=1e-6)


def test_map_names_follow_gluoncv():
    mapping = gluoncv_layer_map(tiny("deeplabv3"))
    assert mapping["backbone/stem_conv1"] == "conv1.0"
    assert mapping["backbone/stem_bn3"] == "bn1"
    assert mapping["backbone/layer2_block1_bn3"] == "layer2.1.bn3"
    assert mapping["backbone/layer1_block0_downsample_conv"] == "layer1.0.downsample.0"
    assert mapping["aspp_pool_conv"] == "head.aspp.concurent.4.gap.1"
    assert mapping["head_classifier"] == "head.block.4"
    assert mapping["aux_conv"] == "auxlayer.block.0"
    assert len(set(mapping.values())) == len(mapping)


def test_missing_unused_and_misshaped_arrays_are_named():
    arrays = gluoncv_arrays(tiny("psp"))
    del arrays["head.psp.conv2.1.gamma"]
    arrays["head.extra.weight"] = np.zeros(3, "float32")
    arrays["head.block.4.weight"] = np.zeros((5, 16, 1, 1), "float32")
    with pytest.raises(ValueError) as info:
        load_gluoncv_params(tiny("psp"), arrays)
    message = str(info.value)
    assert "missing array(s): head.psp.conv2.1.gamma" in message
    assert "unused array(s): head.extra.weight" in message
    assert "head.block.4.weight: GluonCV shape (5, 16, 1, 1)" in message


def test_model_is_untouched_when_loading_fails():
    model = tiny("fcn")
    before = [w.numpy().copy() for w in model.weights]
    arrays = gluoncv_arrays(tiny("fcn"))
    del arrays["layer1.0.conv1.weight"]
    with pytest.raises(ValueError):
        load_gluoncv_params(model, arrays)
    for old, new in zip(before, model.weights, strict=True):
        np.testing.assert_array_equal(old, new.numpy())


def test_aux_arrays_are_dropped_on_purpose_without_aux():
    arrays = gluoncv_arrays(tiny("fcn", aux=True))
    load_gluoncv_params(tiny("fcn", aux=False), arrays)
    with pytest.raises(ValueError, match="missing array"):
        load_gluoncv_params(tiny("fcn", aux=True), {k: v for k, v in arrays.items() if not k.startswith("auxlayer.")})


def test_skip_classifier_for_new_classes():
    arrays = gluoncv_arrays(tiny("fcn", num_classes=4))
    model = tiny("fcn", num_classes=7)
    with pytest.raises(ValueError, match="mis-shaped"):
        load_gluoncv_params(model, arrays)
    load_gluoncv_params(model, arrays, skip_classifier=True)
    np.testing.assert_array_equal(
        model.backbone.get_layer("stem_conv1").kernel.numpy(), np.transpose(arrays["conv1.0.weight"], (2, 3, 1, 0))
    )
