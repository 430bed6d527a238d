"""GluonCV's pixAcc and mIoU from a streaming confusion matrix (numpy).

GluonCV's ``SegmentationMetric`` accumulates, over the whole data set, the
intersection, prediction and label areas of every class on labelled pixels
(label >= 0; -1 is ignore), then reports

* ``pixAcc = correct / (eps + labelled)``,
* ``IoU_c = inter_c / (eps + union_c)`` and ``mIoU`` the mean over *all*
  classes, so a class absent from both predictions and labels counts as 0,

with ``eps = np.spacing(1)``. All of these are sums of a confusion matrix
``M[label, prediction]``: ``inter = diag(M)``, ``labelled areas = rows``,
``predicted areas = columns`` (predictions on ignored pixels never enter).
"""

import numpy as np

EPS = np.spacing(1)


def metrics_from_confusion(matrix):
    """pixAcc, per-class IoU (float64) and mIoU of a ``[C, C]`` confusion matrix, as GluonCV defines them."""
    matrix = np.asarray(matrix, np.float64)
    inter = np.diag(matrix)
    union = matrix.sum(axis=0) + matrix.sum(axis=1) - inter
    iou = inter / (EPS + union)
    pixel_accuracy = inter.sum() / (EPS + matrix.sum())
    return float(pixel_accuracy), iou, float(iou.mean())


class ConfusionMatrix:
    """Streaming ``[C, C]`` counts (rows: label, columns: prediction) with int64 cells.

    ``update(labels, predictions)`` takes int labels (negative = ignore) and
    class indices of the same shape, or logits with one more (last) axis.
    """

    def __init__(self, num_classes):
        if int(num_classes) < 1:
            raise ValueError(f"num_classes must be positive, got {num_classes}")
        self.num_classes = int(num_classes)
        self.matrix = np.zeros((self.num_classes, self.num_classes), np.int64)

    def reset(self):
        self.matrix[:] = 0

    def update(self, labels, predictions):
        labels = np.asarray(labels)
        predictions = np.asarray(predictions)
        if predictions.ndim == labels.ndim + 1:
            if predictions.shape[-1] != self.num_classes:
                raise ValueError(f"Logits have {predictions.shape[-1]} classes, expected {self.num_classes}")
            predictions = predictions.argmax(axis=-1)
        if labels.shape != predictions.shape:
            raise ValueError(f"Labels of shape {labels.shape} do not match predictions of shape {predictions.shape}")
        if not (np.issubdtype(labels.dtype, np.integer) and np.issubdtype(predictions.dtype, np.integer)):
            raise TypeError(f"Labels and predictions must be integers, got {labels.dtype} and {predictions.dtype}")
        labelled = labels >= 0
        labels, predictions = labels[labelled].astype(np.int64), predictions[labelled].astype(np.int64)
        if labels.size and labels.max() >= self.num_classes:
            raise ValueError(f"Label {labels.max()} is out of range for {self.num_classes} classes (ignore is -1)")
        if predictions.size and (predictions.min() < 0 or predictions.max() >= self.num_classes):
            low, high = predictions.min(), predictions.max()
            raise ValueError(f"Predictions must lie in [0, {self.num_classes}), got {low}..{high}")
        cells = np.bincount(labels * self.num_classes + predictions, minlength=self.num_classes**2)
        self.matrix += cells.reshape(self.num_classes, self.num_classes)
        return self

    def merge(self, other):
        if other.num_classes != self.num_classes:
            raise ValueError(f"Cannot merge {other.num_classes} classes into {self.num_classes}")
        self.matrix += other.matrix
        return self

    def pixel_accuracy(self):
        return metrics_from_confusion(self.matrix)[0]

    def iou(self):
        return metrics_from_confusion(self.matrix)[1]

    def mean_iou(self):
        return metrics_from_confusion(self.matrix)[2]

    def result(self, class_names=None):
        """``{"pixAcc", "mIoU", "IoU"}``; ``IoU`` is a list, or a name -> IoU dict given ``class_names``."""
        pixel_accuracy, iou, mean_iou = metrics_from_confusion(self.matrix)
        per_class = iou.tolist()
        if class_names is not None:
            if len(class_names) != self.num_classes:
                raise ValueError(f"{len(class_names)} class names for {self.num_classes} classes")
            per_class = dict(zip(class_names, per_class, strict=True))
        return {"pixAcc": pixel_accuracy, "mIoU": mean_iou, "IoU": per_class}
