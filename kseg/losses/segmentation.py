"""Softmax cross-entropy with an ignore label, averaged over labelled pixels."""

import keras
from keras import ops


def masked_cross_entropy(labels, logits, ignore_label=-1):
    """Mean softmax CE over the pixels whose label is not ``ignore_label``.

    ``labels``: int ``[B, H, W]``; ``logits``: ``[B, H, W, C]``. Labels outside
    ``[0, C)`` other than the ignore label are errors in the data, not ignored.
    """
    labels = ops.cast(labels, "int32")
    logits = ops.cast(logits, "float32")  # the log-softmax is done in float32 under mixed precision
    valid = ops.not_equal(labels, ignore_label)
    safe_labels = ops.where(valid, labels, ops.zeros_like(labels))
    per_pixel = ops.sparse_categorical_crossentropy(safe_labels, logits, from_logits=True)
    weights = ops.cast(valid, "float32")
    return ops.sum(per_pixel * weights) / ops.maximum(ops.sum(weights), 1.0)


@keras.saving.register_keras_serializable(package="kseg")
class SegmentationCrossEntropy(keras.losses.Loss):
    """GluonCV's ``SoftmaxCrossEntropyLoss`` for segmentation, as a Keras loss."""

    def __init__(self, ignore_label=-1, name="segmentation_cross_entropy", **kwargs):
        # The mean over labelled pixels is taken inside call(); no further reduction.
        super().__init__(name=name, reduction=None, **kwargs)
        self.ignore_label = ignore_label

    def call(self, y_true, y_pred):
        return masked_cross_entropy(y_true, y_pred, self.ignore_label)

    def get_config(self):
        return {"name": self.name, "ignore_label": self.ignore_label}
