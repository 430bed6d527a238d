"""The semantic task's part of the export: normalise in the graph, return the class map and probabilities."""

from __future__ import annotations

from collections.abc import Sequence

import keras
import tensorflow as tf

from kseg.data.preprocessing import normalize_image
from kseg.export.base import ExportModule
from kseg.presets import SEMANTIC


class SemanticExportModule(ExportModule):
    """``class_map`` int32 ``[B, H, W]`` (argmax over the classes) and, with ``include_probabilities``,
    ``probabilities`` float32 ``[B, H, W, C]`` (softmax of the logits), at the input's size.

    Example:
        >>> module = SemanticExportModule(kseg.models.get("fcn_resnet50_ade"), include_probabilities=False)
        >>> module.serving_default(tf.zeros([1, 64, 64, 3], tf.uint8))["class_map"].shape
        TensorShape([1, 64, 64])
    """

    task = SEMANTIC

    def __init__(
        self,
        model: keras.Model,
        xla: bool = False,
        classes: Sequence[str] | None = None,
        include_probabilities: bool = True,
    ):
        self.include_probabilities = bool(include_probabilities)
        super().__init__(model, xla=xla, classes=classes)

    def logits(self, images):
        """uint8 RGB ``[B, H, W, 3]`` -> float32 logits ``[B, H, W, C]``."""
        preprocessing = self.metadata.preprocessing
        outputs = self.model_call(normalize_image(images, preprocessing.mean, preprocessing.std))
        if isinstance(outputs, dict):
            if "logits" not in outputs:
                raise ValueError(f"The model returns a dict without 'logits' (keys: {sorted(outputs)})")
            outputs = outputs["logits"]
        return tf.cast(outputs, tf.float32)

    def serve(self, images):
        logits = self.logits(images)
        outputs = {"class_map": tf.argmax(logits, axis=-1, output_type=tf.int32)}
        if self.include_probabilities:
            outputs["probabilities"] = tf.nn.softmax(logits, axis=-1)
        return outputs

    def empty_outputs(self, images):
        shape = tf.shape(images)
        outputs = {"class_map": tf.zeros([0, shape[1], shape[2]], tf.int32)}
        if self.include_probabilities:
            outputs["probabilities"] = tf.zeros([0, shape[1], shape[2], self.metadata.num_classes], tf.float32)
        return outputs

    def task_metadata(self):
        return {"probabilities": self.include_probabilities}
