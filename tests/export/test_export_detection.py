"""Mask R-CNN SavedModels: detection signatures, reloaded in a fresh process, equal to the Keras model."""

import dataclasses
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf

import kseg
from kseg.data.preprocessing import normalize_image
from kseg.evaluation.instance import resize_image
from kseg.export import export_saved_model, read_metadata
from kseg.models.mask_rcnn import MaskRCNN, MaskRCNNConfig
from kseg.ops.masks import paste_masks
from kseg.presets import Preprocessing, ShortSideResize

SERVE = r"""
import sys
import numpy as np
import tensorflow as tf
served = tf.saved_model.load(sys.argv[1])
image = np.load(sys.argv[2])
outputs = served.signatures["serving_default"](images=tf.constant(image[None]))
np.savez(sys.argv[3], **{key: value.numpy() for key, value in outputs.items()})
"""


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    tf.keras.utils.set_random_seed(3)
    preset = kseg.presets.get_preset("mask_rcnn_fpn_resnet18_v1b_coco")
    config = MaskRCNNConfig(**{**preset.architecture, "rpn_pre_nms": 600, "rpn_post_nms": 100, "max_detections": 100})
    small = Preprocessing(resize=ShortSideResize(96, 128))
    metadata = dataclasses.replace(preset.model_metadata(), preprocessing=small)
    model = MaskRCNN(config, metadata=metadata)
    path = export_saved_model(model, tmp_path_factory.mktemp("serving") / "mask_rcnn", max_detections=20)
    return model, path


def test_signatures_in_saved_model_cli(exported):
    _, path = exported
    cli = subprocess.run([sys.executable, "-m", "tensorflow.python.tools.saved_model_cli", "show", "--dir", str(path),
                          "--all"], capture_output=True, text=True)
    assert cli.returncode == 0, cli.stderr[-2000:]
    for name in ("serving_default", "serving_bytes", "detection_boxes", "detection_masks", "num_detections"):
        assert name in cli.stdout
    metadata = read_metadata(path)
    assert metadata["task"] == "instance_segmentation" and len(metadata["classes"]) == 80
    assert metadata["format"] == "kseg-saved-model/2" and metadata["classes"][0] == "person"
    assert metadata["preprocessing"]["resize"] == {"policy": "short_side", "short": 96, "max_size": 128}
    assert metadata["max_detections"] == 20 and metadata["canvas"] == 128
    # Static canvas shapes, yet no XLA attribute (kseg.ops.conv stays out of exports): stock TF-Serving runs it.
    assert b"_XlaMustCompile" not in (path / "saved_model.pb").read_bytes()


def test_fresh_process_equals_keras(exported, tmp_path):
    model, path = exported
    rng = np.random.default_rng(0)
    image = rng.integers(0, 255, (75, 101, 3), dtype=np.uint8)
    np.save(tmp_path / "image.npy", image)
    result = subprocess.run([sys.executable, "-c", SERVE, str(path), str(tmp_path / "image.npy"),
                             str(tmp_path / "out.npz")], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-3000:]
    served = np.load(tmp_path / "out.npz")

    resized, scale = resize_image(image, 96, 128)
    canvas = tf.image.pad_to_bounding_box(normalize_image(resized)[None], 0, 0, 128, 128)
    expected = {k: np.asarray(v)[0] for k, v in model(canvas, image_hw=tf.constant([resized.shape[:2]])).items()}
    count = int(served["num_detections"][0])
    assert count == min(20, int(expected["num_detections"])) and count > 0
    np.testing.assert_array_equal(served["detection_classes"][0, :count], expected["class_ids"][:count])
    np.testing.assert_allclose(served["detection_scores"][0, :count], expected["scores"][:count], atol=1e-5)
    np.testing.assert_allclose(served["detection_boxes"][0, :count], expected["boxes"][:count] / scale, atol=1e-3)
    masks = served["detection_masks"][0, :count]
    assert masks.shape == (count, 75, 101) and masks.dtype == np.uint8
    reference = paste_masks(expected["masks"][:count], expected["boxes"][:count] / scale, (101, 75), fast_fill=False)
    ious = [np.logical_and(a, b).sum() / np.logical_or(a, b).sum()
            for a, b in zip(masks, reference, strict=True) if np.logical_or(a, b).sum() > 200]
    assert ious, "no mask large enough to compare"
    assert min(ious) > 0.9 and np.mean(ious) > 0.95, ious  # tiny masks differ by a boundary pixel
