"""The Mask R-CNN model: parameter counts as GluonCV's, batches, XLA, the dynamic mask branch, weights files."""

import math
import re
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf

import kseg
from kseg.models.mask_rcnn import MaskRCNN, MaskRCNNConfig

PARAM_NAMES = Path(__file__).resolve().parents[3] / "shared" / "reference" / "gluoncv-param-names"


def small(name="mask_rcnn_fpn_resnet18_v1b_coco"):
    architecture = kseg.presets.get_preset(name).architecture
    config = MaskRCNNConfig(**{**architecture, "rpn_pre_nms": 500, "rpn_post_nms": 64, "max_detections": 50})
    tf.keras.utils.set_random_seed(0)
    return MaskRCNN(config)


@pytest.mark.parametrize("name", kseg.models.list_models("instance"))
def test_parameter_count_is_gluoncvs(name):
    if not (PARAM_NAMES / f"{name}.txt").is_file():
        pytest.skip(f"no GluonCV parameter listing for {name} in {PARAM_NAMES}")
    total = 0
    for line in (PARAM_NAMES / f"{name}.txt").read_text().splitlines():
        if "anchor_generator" not in line:
            total += math.prod(int(d) for d in re.findall(r"\d+", line.split(" (", 1)[1]))
    assert kseg.models.get(name).count_params() == kseg.presets.get_preset(name).metadata.num_params == total


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


def test_fine_tuning_keeps_every_weight_but_the_class_layers(tmp_path, monkeypatch):
    """``kseg.models.get(mask_rcnn, weights=GluonCV's file, classes=[...])``: class and box predictors and the
    mask predictor start afresh for the new classes; every other array is the file's."""
    import dataclasses

    from kseg.presets import PRESETS, WeightsSource, get_preset
    from kseg.weights.gluoncv_rcnn import CLASS_LAYERS, gluoncv_rcnn_arrays
    from kseg.weights.mxnet_params import params_to_bytes
    from kseg.weights.transfer import weighted_layers

    name = "mask_rcnn_finetune_probe"
    preset = dataclasses.replace(
        get_preset("mask_rcnn_fpn_resnet18_v1b_coco"), name=name, weights=WeightsSource(name, "0" * 40, "gluoncv_rcnn")
    )
    monkeypatch.setitem(PRESETS, name, preset)
    tf.keras.utils.set_random_seed(5)
    source = kseg.models.build_published(preset)
    params = tmp_path / f"{name}.params"
    params.write_bytes(params_to_bytes(gluoncv_rcnn_arrays(source)))
    tuned = kseg.models.get(name, weights=params, classes=["cat", "dog"])
    assert tuned.metadata.classes == ("cat", "dog") and tuned.num_classes == 2
    expected = dict(weighted_layers(source))
    fresh = []
    for path, layer in weighted_layers(tuned):
        if path.rsplit("/", 1)[-1] in CLASS_LAYERS:
            fresh.append(path)
            continue
        for ours, theirs in zip(layer.weights, expected[path].weights, strict=True):
            np.testing.assert_array_equal(ours.numpy(), theirs.numpy(), err_msg=path)
    assert len(fresh) == 3
    assert tuned.box_head.get_layer("class_predictor").kernel.shape[-1] == 3  # background + 2
    with pytest.raises(ValueError, match="would leave the class layers untrained"):
        kseg.models.get(name, weights=params, classes=["cat", "dog"], strict=True)


def test_mixed_bfloat16_runs_the_detection_ops_in_float32():
    from test_case import global_policy

    with global_policy("mixed_bfloat16"):
        model = small()
    outputs = model(tf.random.stateless_normal([1, 96, 128, 3], seed=[1, 2]))
    assert outputs["boxes"].dtype == tf.float32 and outputs["masks"].shape == (1, 50, 14, 14)
    assert int(outputs["num_detections"][0]) > 0 and np.isfinite(outputs["masks"].numpy()).all()
