"""The Mask R-CNN model: parameter counts as GluonCV's, batches, XLA, the dynamic mask branch, weights files."""

import dataclasses
import math
import re
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf

from kseg.models.mask_rcnn import MASK_RCNN_ZOO, MaskRCNN

PARAM_NAMES = Path(__file__).resolve().parents[3] / "shared" / "reference" / "gluoncv-param-names"


def small(name="mask_rcnn_fpn_resnet18_v1b_coco"):
    config = dataclasses.replace(MASK_RCNN_ZOO[name], rpn_pre_nms=500, rpn_post_nms=64, max_detections=50)
    tf.keras.utils.set_random_seed(0)
    return MaskRCNN(config)


@pytest.mark.parametrize("name", list(MASK_RCNN_ZOO))
def test_parameter_count_is_gluoncvs(name):
    if not (PARAM_NAMES / f"{name}.txt").is_file():
        pytest.skip(f"no GluonCV parameter listing for {name} in {PARAM_NAMES}")
    total = 0
    for line in (PARAM_NAMES / f"{name}.txt").read_text().splitlines():
        if "anchor_generator" not in line:
            total += math.prod(int(d) for d in re.findall(r"\d+", line.split(" (", 1)[1]))
    assert MaskRCNN(name).count_params() == total


def test_a_batch_equals_its_images_one_by_one():
    model = small()
    images = tf.random.stateless_normal([2, 96, 128, 3], seed=[1, 2])
    batch = model(images)
    for i in range(2):
        alone = model(images[i : i + 1])
        assert int(alone["num_detections"][0]) == int(batch["num_detections"][i]) > 0
        np.testing.assert_array_equal(alone["class_ids"][0], batch["class_ids"][i])
        np.testing.assert_allclose(alone["scores"][0], batch["scores"][i], atol=1e-5)
        np.testing.assert_allclose(alone["boxes"][0], batch["boxes"][i], atol=1e-3)
        np.testing.assert_allclose(alone["masks"][0], batch["masks"][i], atol=1e-4)


def test_xla_equals_graph_and_valid_masks_only():
    model = small("mask_rcnn_resnet18_v1b_coco")
    images = tf.random.stateless_normal([1, 96, 128, 3], seed=[3, 4])
    graph = tf.function(lambda x: model(x, valid_masks_only=True))(images)
    xla = tf.function(model.call, jit_compile=True)(images)
    valid = graph["class_ids"][0].numpy() >= 0
    np.testing.assert_array_equal(graph["class_ids"], xla["class_ids"])
    np.testing.assert_allclose(graph["scores"], xla["scores"], atol=1e-5)
    np.testing.assert_allclose(graph["masks"][0].numpy()[valid], xla["masks"][0].numpy()[valid], atol=1e-4)
    assert not graph["masks"][0].numpy()[~valid].any()
    # Masks for the stronger detections only: the same masks there, zeros below the threshold.
    threshold = float(np.median(graph["scores"][0].numpy()[valid]))
    strong = tf.function(lambda x: model(x, valid_masks_only=True, mask_score_threshold=threshold))(images)
    kept = valid & (strong["scores"][0].numpy() >= threshold)
    assert 0 < kept.sum() < valid.sum()
    np.testing.assert_allclose(strong["masks"][0].numpy()[kept], xla["masks"][0].numpy()[kept], atol=1e-4)
    assert not strong["masks"][0].numpy()[~kept].any()


def test_weights_file_round_trip(tmp_path):
    model = small()
    path = tmp_path / "mask_rcnn.weights.h5"
    model.save_weights(path)
    other = MaskRCNN(model.config)
    other.load_weights(path)
    for a, b in zip(model.weights, other.weights, strict=True):
        np.testing.assert_array_equal(a.numpy(), b.numpy())
