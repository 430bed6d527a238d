"""The instance task's part of the export, with TF Model Garden's static-shape recipe (``serving/detection.py``).

The graph resizes each batch by the model's resize policy (GluonCV's test
transform: short side 800, long side at most 1333), normalises it, pads it to
a fixed square canvas (so every shape is static and one compiled program
serves every image size), runs the model with each image's true size, maps
boxes back to the input pixels and pastes each mask into the full image.
"""

from __future__ import annotations

from collections.abc import Sequence

import keras
import tensorflow as tf

from kseg.data.preprocessing import normalize_image
from kseg.export.base import ExportModule
from kseg.ops.masks import paste_masks_tf
from kseg.ops.resize import resize_short_side
from kseg.presets import INSTANCE


class InstanceExportModule(ExportModule):
    """``detection_boxes`` float32 ``[B, K, 4]`` (x1, y1, x2, y2 in the input's pixels),
    ``detection_classes`` int32 ``[B, K]`` (-1 for empty rows), ``detection_scores`` ``[B, K]``,
    ``detection_masks`` uint8 ``[B, K, H, W]`` (pasted, binary) and ``num_detections`` int32 ``[B]``,
    best first; ``K = max_detections``.

    Example:
        >>> module = InstanceExportModule(kseg.models.get("mask_rcnn_fpn_resnet18_v1b_coco"), max_detections=20)
    """

    task = INSTANCE

    def __init__(
        self,
        model: keras.Model,
        xla: bool = False,
        classes: Sequence[str] | None = None,
        max_detections: int = 100,
        canvas: int | None = None,
    ):
        resize = model.metadata.preprocessing.resize
        if isinstance(max_detections, bool) or not isinstance(max_detections, int) or max_detections < 1:
            raise ValueError(f"max_detections must be a positive integer, got {max_detections!r}")
        self.max_detections = min(max_detections, model.config.max_detections)
        # A square holding any resized image; a multiple of 64 keeps every pyramid level whole.
        self.canvas = int(canvas or -(-resize.max_size // 64) * 64)
        super().__init__(model, xla=xla, classes=classes)

    def call_model(self, canvas, image_hw):
        return self.model(canvas, image_hw=image_hw)

    def serve(self, images):
        preprocessing = self.metadata.preprocessing
        resize = preprocessing.resize
        height, width = tf.shape(images)[1], tf.shape(images)[2]
        resized, scale = resize_short_side(images, resize.short, resize.max_size)
        normalized = normalize_image(resized, preprocessing.mean, preprocessing.std)
        canvas = tf.image.pad_to_bounding_box(normalized, 0, 0, self.canvas, self.canvas)
        batch = tf.shape(images)[0]
        image_hw = tf.tile(tf.shape(resized)[1:3][None], [batch, 1])
        k = self.max_detections
        outputs = {key: value[:, :k] for key, value in self.model_call(canvas, image_hw).items()
                   if key != "num_detections"}
        boxes = outputs["boxes"] / scale
        valid = outputs["class_ids"] >= 0
        count = tf.reduce_sum(tf.cast(valid, tf.int32), axis=1)
        size = self.model.config.mask_size
        pasted = paste_masks_tf(tf.reshape(outputs["masks"], [-1, size, size]), tf.reshape(boxes, [-1, 4]), height,
                                width)
        pasted = tf.reshape(pasted, [batch, k, height, width])
        return {
            "detection_boxes": tf.where(valid[..., None], boxes, 0.0),
            "detection_classes": outputs["class_ids"],
            "detection_scores": tf.where(valid, outputs["scores"], 0.0),
            "detection_masks": pasted * tf.cast(valid, tf.uint8)[..., None, None],
            "num_detections": count,
        }

    def empty_outputs(self, images):
        height, width, k = tf.shape(images)[1], tf.shape(images)[2], self.max_detections
        return {
            "detection_boxes": tf.zeros([0, k, 4], tf.float32),
            "detection_classes": tf.zeros([0, k], tf.int32),
            "detection_scores": tf.zeros([0, k], tf.float32),
            "detection_masks": tf.zeros([0, k, height, width], tf.uint8),
            "num_detections": tf.zeros([0], tf.int32),
        }

    def task_metadata(self):
        return {"max_detections": self.max_detections, "canvas": self.canvas}
