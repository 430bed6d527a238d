"""The models' own door: float RGB NHWC images only, a clear one-line error otherwise, and an empty batch
gives empty outputs (as the served models do, tests/export/test_serving_fuzz.py)."""

import numpy as np
import pytest
import tensorflow as tf

from kseg.evaluation import InstancePredictor, Predictor
from kseg.models import ResNetV1Backbone, SemanticSegmenter
from kseg.models.mask_rcnn import MaskRCNN, MaskRCNNConfig


@pytest.fixture(scope="module")
def semantic():
    return SemanticSegmenter(ResNetV1Backbone(18, "v1b", base_width=8, output_stride=8), head="fcn", num_classes=3)


@pytest.fixture(scope="module")
def instance():
    return MaskRCNN(MaskRCNNConfig(depth=18, fpn=True, roi_size=7, mask_convs=2, rpn_pre_nms=64, rpn_post_nms=8,
                                   max_detections=4))


BAD = [
    (np.zeros((1, 16, 16, 3), np.uint8), TypeError, "must be float images normalised"),
    (np.zeros((16, 16, 3), np.float32), ValueError, r"must be RGB, \[B, H, W, 3\], got shape \(16, 16, 3\)"),
    (np.zeros((1, 16, 16, 4), np.float32), ValueError, "got shape|incompatible"),
    (np.zeros((1, 1, 16, 16, 3), np.float32), ValueError, "got shape|incompatible"),
]


@pytest.mark.parametrize("value, error, message", BAD)
def test_semantic_model_refuses_what_it_cannot_take(semantic, value, error, message):
    with pytest.raises(error, match=message):
        semantic(value)


@pytest.mark.parametrize("value, error, message", BAD)
def test_mask_rcnn_refuses_what_it_cannot_take(instance, value, error, message):
    with pytest.raises(error, match=message):
        instance(value)


def test_an_empty_batch_is_an_empty_answer(semantic, instance):
    assert semantic(np.zeros((0, 16, 24, 3), np.float32)).shape == (0, 16, 24, 3)
    outputs = instance(np.zeros((0, 64, 64, 3), np.float32))
    assert outputs["masks"].shape == (0, 4, 14, 14) and outputs["num_detections"].shape == (0,)
    assert Predictor(semantic, jit_compile=False).predict(np.zeros((0, 16, 24, 3), np.float32)).shape == (0, 16, 24)


def test_an_empty_batch_of_unknown_size_in_a_graph(semantic):
    """Traced for any batch (as the SavedModels and predictors are), the model answers 0 images and 2 alike."""
    images = np.random.default_rng(0).normal(size=(2, 16, 24, 3)).astype("float32")
    call = tf.function(lambda x: semantic(x, training=False), input_signature=[tf.TensorSpec([None, 16, 24, 3])])
    assert call(images[:0]).shape == (0, 16, 24, 3)
    np.testing.assert_allclose(call(images).numpy(), semantic(images).numpy(), rtol=1e-6, atol=1e-6)


def test_no_detection_is_an_empty_result(instance):
    """Nothing above the threshold: empty arrays of the right shapes, not a crash (C4 and FPN alike)."""
    for model in (instance, MaskRCNN(MaskRCNNConfig(depth=18, rpn_pre_nms=64, rpn_post_nms=8, max_detections=4))):
        found = InstancePredictor(model, short=64, max_size=96, score_threshold=1.01, exact_masks=False).predict(
            np.zeros((50, 70, 3), np.uint8))
        assert len(found) == 0 and found.masks.shape == (0, 50, 70) and found.boxes.shape == (0, 4)
        assert found.labels() == []
