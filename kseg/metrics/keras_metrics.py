"""pixAcc and mIoU as Keras metrics for ``fit``/``evaluate``, XLA and tf.distribute included.

Both keep the ``[C, C]`` confusion matrix of :mod:`kseg.metrics.confusion` in
one variable summed across replicas, and compute GluonCV's definitions from
it. Counts are float64: float32 stops counting exactly at 2^24 pixels per cell
(64 ADE20K images), float64 at 2^53.
"""

import keras
import numpy as np
import tensorflow as tf

from kseg.metrics.confusion import metrics_from_confusion


class StreamingConfusionMatrix(keras.metrics.Metric):
    """A confusion matrix of argmax(logits) against int labels; negative labels are ignored.

    Args:
        num_classes: C.
        ignore_label: the ignore label (GluonCV: -1). Like every label outside
            ``[0, C)`` it is not counted (a compiled metric cannot raise on data).
    """

    def __init__(self, num_classes, ignore_label=-1, name="confusion_matrix", dtype=None):
        super().__init__(name=name, dtype=dtype)
        self.num_classes = int(num_classes)
        self.ignore_label = int(ignore_label)
        self.matrix = self.add_variable(
            shape=(self.num_classes, self.num_classes),
            initializer="zeros",
            dtype="float64",
            aggregation="sum",
            name="matrix",
        )

    def update_state(self, y_true, y_pred, sample_weight=None):
        if sample_weight is not None:
            raise ValueError(f"{type(self).__name__} takes no sample_weight; mark pixels with ignore_label instead")
        y_true = tf.convert_to_tensor(y_true)
        y_pred = tf.convert_to_tensor(y_pred)
        if y_true.shape.rank == y_pred.shape.rank and y_true.shape[-1] == 1:
            y_true = tf.squeeze(y_true, -1)  # [B, H, W, 1] labels
        if y_pred.shape[-1] is not None and y_pred.shape[-1] != self.num_classes:
            raise ValueError(f"{self.name}: logits have {y_pred.shape[-1]} classes, expected {self.num_classes}")
        if not y_pred.shape[:-1].is_compatible_with(y_true.shape):
            raise ValueError(
                f"{self.name}: labels of shape {y_true.shape} do not match logits of shape {y_pred.shape} "
                "(the logits must be at the label's height and width)"
            )
        labels = tf.reshape(tf.cast(y_true, tf.int32), [-1])
        predictions = tf.reshape(tf.argmax(y_pred, axis=-1, output_type=tf.int32), [-1])
        labelled = (labels >= 0) & (labels < self.num_classes) & (labels != self.ignore_label)
        # Ignored pixels go to an extra row that is dropped: no data-dependent shapes, so XLA-friendly.
        rows = tf.where(labelled, labels, self.num_classes)
        # A segment sum with a constant segment count compiles under XLA (bincount's size is data-dependent).
        size = (self.num_classes + 1) * self.num_classes
        cells = tf.math.unsorted_segment_sum(tf.ones_like(rows), rows * self.num_classes + predictions, size)
        cells = tf.cast(cells, tf.float64)
        self.matrix.assign_add(tf.reshape(cells, [self.num_classes + 1, self.num_classes])[: self.num_classes])

    def _scores(self):
        matrix = tf.convert_to_tensor(self.matrix)
        inter = tf.linalg.diag_part(matrix)
        union = tf.reduce_sum(matrix, 0) + tf.reduce_sum(matrix, 1) - inter
        eps = tf.constant(np.spacing(1), tf.float64)
        iou = inter / (eps + union)
        pixel_accuracy = tf.reduce_sum(inter) / (eps + tf.reduce_sum(matrix))
        return pixel_accuracy, iou, tf.reduce_mean(iou)

    def result(self):
        raise NotImplementedError

    def confusion_matrix(self):
        """The counts as an int64 numpy array (rows: label, columns: prediction)."""
        return np.asarray(keras.ops.convert_to_numpy(self.matrix)).astype(np.int64)

    def result_dict(self, class_names=None):
        pixel_accuracy, iou, mean_iou = metrics_from_confusion(self.confusion_matrix())
        per_class = iou.tolist() if class_names is None else dict(zip(class_names, iou.tolist(), strict=True))
        return {"pixAcc": pixel_accuracy, "mIoU": mean_iou, "IoU": per_class}

    def reset_state(self):
        self.matrix.assign(tf.zeros_like(self.matrix))

    def get_config(self):
        return {**super().get_config(), "num_classes": self.num_classes, "ignore_label": self.ignore_label}


@keras.saving.register_keras_serializable(package="kseg")
class MeanIoU(StreamingConfusionMatrix):
    """GluonCV's mIoU: the mean IoU over all classes, accumulated over every batch seen."""

    def __init__(self, num_classes, ignore_label=-1, name="mIoU", dtype=None):
        super().__init__(num_classes, ignore_label, name=name, dtype=dtype)

    def result(self):
        return tf.cast(self._scores()[2], tf.float32)


@keras.saving.register_keras_serializable(package="kseg")
class PixelAccuracy(StreamingConfusionMatrix):
    """GluonCV's pixAcc: correct over labelled pixels, accumulated over every batch seen."""

    def __init__(self, num_classes, ignore_label=-1, name="pixAcc", dtype=None):
        super().__init__(num_classes, ignore_label, name=name, dtype=dtype)

    def result(self):
        return tf.cast(self._scores()[0], tf.float32)
