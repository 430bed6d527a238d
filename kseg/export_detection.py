"""SavedModels of the Mask R-CNN models for TF-Serving, with TF Model Garden's static-shape recipe.

The graph resizes each batch as GluonCV's test transform does (short side
800, long side at most 1333), normalises it, pads it to a fixed square canvas
(so every shape is static and one compiled program serves every image size),
runs the model with each image's true size, maps boxes back to the input
pixels and pastes each mask into the full image.
"""

import json
import shutil
import uuid
from pathlib import Path

import tensorflow as tf

from kseg.data.preprocessing import normalize_image
from kseg.export import (
    BYTES_SPEC,
    IMAGES_SPEC,
    METADATA_FILE,
    _check_version,
    _move_into_place,
    _Untracked,
    decode_batch,
)
from kseg.ops.conv import direct_convolutions


def gluoncv_test_size(height, width, short, max_size):
    """GluonCV's ``resize_short_within`` as tensors: (new height, new width, scale = new height / height)."""
    h, w = tf.cast(height, tf.float64), tf.cast(width, tf.float64)
    scale = short / tf.minimum(h, w)
    scale = tf.where(tf.round(scale * tf.maximum(h, w)) > max_size, max_size / tf.maximum(h, w), scale)
    new_h, new_w = tf.cast(tf.round(h * scale), tf.int32), tf.cast(tf.round(w * scale), tf.int32)
    return new_h, new_w, tf.cast(new_h, tf.float32) / tf.cast(height, tf.float32)


def paste_masks_tf(masks, boxes, height, width):
    """Box-relative mask probabilities ``[K, M, M]`` -> binary uint8 ``[K, height, width]``.

    GluonCV's ``fill``: a 1-pixel zero border, the box grown by ``(M + 2) / M``,
    bilinear resampling at pixel centres, threshold 0.5.
    """
    m = tf.shape(masks)[1]
    padded = tf.pad(masks, [[0, 0], [1, 1], [1, 1]])[..., None]
    size = tf.cast(m + 2, tf.float32)
    grow = size / tf.cast(m, tf.float32)
    x1, y1, x2, y2 = tf.unstack(boxes, 4, axis=-1)
    cx, cy = (x1 + x2) / 2, (y1 + y2) / 2
    bw, bh = (x2 - x1) * grow, (y2 - y1) * grow
    bw, bh = tf.maximum(bw, 1.0), tf.maximum(bh, 1.0)
    ex1, ey1 = cx - bw / 2, cy - bh / 2

    def mask_coordinate(pixel, start, extent):
        return ((pixel + 0.5 - start) / extent * size - 0.5) / (size - 1.0)

    h, w = tf.cast(height, tf.float32), tf.cast(width, tf.float32)
    crop_boxes = tf.stack([
        mask_coordinate(0.0, ey1, bh), mask_coordinate(0.0, ex1, bw),
        mask_coordinate(h - 1.0, ey1, bh), mask_coordinate(w - 1.0, ex1, bw),
    ], axis=-1)
    count = tf.shape(masks)[0]
    pasted = tf.image.crop_and_resize(padded, crop_boxes, tf.range(count), tf.stack([height, width]),
                                      extrapolation_value=0.0)
    return tf.cast(pasted[..., 0] >= 0.5, tf.uint8)


class DetectionServingModule(tf.Module):
    """The detection signatures and the variables they read (see :class:`kseg.export.ServingModule`)."""

    def __init__(self, model, xla=False, max_detections=100, canvas=None):
        super().__init__(name="kseg_detection_serving")
        config = model.config
        self._keras_model = _Untracked(model)
        self.max_detections = int(max_detections)
        # A square holding any resized image; a multiple of 64 keeps every pyramid level whole.
        self.canvas = int(canvas or -(-config.max_size // 64) * 64)
        self.detect = tf.function(self._detect, jit_compile=True if xla else None)
        self.serving_default = tf.function(self._serve_images, input_signature=[IMAGES_SPEC])
        self.serving_bytes = tf.function(self._serve_bytes, input_signature=[BYTES_SPEC])
        captured = {}
        for function in (self.serving_default, self.serving_bytes):
            for variable in function.get_concrete_function().variables:
                captured.setdefault(id(variable), variable)
        self.model_variables = list(captured.values())

    @property
    def model(self):
        return self._keras_model.value

    def _detect(self, canvas, image_hw):
        outputs = self.model(canvas, image_hw=image_hw)
        k = self.max_detections
        return {key: value[:, :k] if key != "num_detections" else value for key, value in outputs.items()}

    def _serve_images(self, images):
        config = self.model.config
        height, width = tf.shape(images)[1], tf.shape(images)[2]
        new_h, new_w, scale = gluoncv_test_size(height, width, config.short, config.max_size)
        resized = tf.image.resize(tf.cast(images, tf.float32), tf.stack([new_h, new_w]), method="bilinear")
        resized = tf.cast(tf.clip_by_value(tf.round(resized), 0, 255), tf.uint8)
        canvas = tf.image.pad_to_bounding_box(normalize_image(resized), 0, 0, self.canvas, self.canvas)
        batch = tf.shape(images)[0]
        image_hw = tf.tile(tf.stack([new_h, new_w])[None], [batch, 1])
        outputs = self.detect(canvas, image_hw)
        boxes = outputs["boxes"] / scale
        valid = outputs["class_ids"] >= 0
        count = tf.minimum(tf.reduce_sum(tf.cast(valid, tf.int32), axis=1), self.max_detections)
        flat_masks = tf.reshape(outputs["masks"], [-1, config.mask_size, config.mask_size])
        pasted = paste_masks_tf(flat_masks, tf.reshape(boxes, [-1, 4]), height, width)
        pasted = tf.reshape(pasted, [batch, self.max_detections, height, width])
        return {
            "detection_boxes": tf.where(valid[..., None], boxes, 0.0),
            "detection_classes": outputs["class_ids"],
            "detection_scores": tf.where(valid, outputs["scores"], 0.0),
            "detection_masks": pasted * tf.cast(valid, tf.uint8)[..., None, None],
            "num_detections": count,
        }

    def _serve_bytes(self, image_bytes):
        return self._serve_images(decode_batch(image_bytes))

    def signatures(self):
        return {"serving_default": self.serving_default, "serving_bytes": self.serving_bytes}


def export_detection_model(model, export_dir, version=1, xla=False, max_detections=100, overwrite=False):
    """Write a Mask R-CNN as a TF-Serving SavedModel in ``export_dir/{version}/``; returns that path.

    Signatures: ``serving_default`` (``images`` uint8 ``[B, H, W, 3]``, one size
    per request) and ``serving_bytes`` (``image_bytes`` string ``[B]``) ->
    ``detection_boxes`` float32 ``[B, K, 4]`` (x1, y1, x2, y2 in the input's
    pixels), ``detection_classes`` int32 ``[B, K]`` (COCO's 80 classes in
    GluonCV's order, -1 for empty rows), ``detection_scores`` ``[B, K]``,
    ``detection_masks`` uint8 ``[B, K, H, W]`` (pasted, binary) and
    ``num_detections`` int32 ``[B]``, best first; ``K = max_detections``.
    """
    from kseg import __version__

    version = _check_version(version)
    export_dir = Path(export_dir)
    final = export_dir / str(version)
    if final.exists() and not overwrite:
        raise FileExistsError(f"{final} already exists; pass overwrite=True (--overwrite) or another version")
    # TF-Serving's stock builds lack XLA: trace with plain convolutions (see kseg.ops.conv).
    with direct_convolutions():
        module = DetectionServingModule(model, xla=xla, max_detections=max_detections)
    metadata = {
        "format": "kseg-saved-model/1",
        "kseg_version": __version__,
        "tensorflow_version": tf.__version__,
        "model": model.name,
        "task": "instance_segmentation",
        "classes": list(model.config.classes),
        "max_detections": module.max_detections,
        "canvas": module.canvas,
        "xla": bool(xla),
        "input": {"layout": "NHWC, RGB", "values": "uint8, 0..255; any size, one size per request",
                  "resize": f"short side {model.config.short}, long side at most {model.config.max_size}"},
    }
    export_dir.mkdir(parents=True, exist_ok=True)
    tmp = export_dir / f".{version}.{uuid.uuid4().hex[:12]}.tmp"
    tmp.mkdir()
    try:
        with direct_convolutions():
            tf.saved_model.save(module, str(tmp), signatures=module.signatures())
        (tmp / "assets").mkdir(exist_ok=True)
        (tmp / "assets" / METADATA_FILE).write_text(json.dumps(metadata, indent=2) + "\n")
        _move_into_place(tmp, final, overwrite)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return final
