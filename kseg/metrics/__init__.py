"""Segmentation metrics: GluonCV's pixAcc and mIoU (numpy and Keras)."""

from kseg.metrics.confusion import ConfusionMatrix, metrics_from_confusion
from kseg.metrics.keras_metrics import MeanIoU, PixelAccuracy, StreamingConfusionMatrix

__all__ = ["ConfusionMatrix", "MeanIoU", "PixelAccuracy", "StreamingConfusionMatrix", "metrics_from_confusion"]
