"""Instance detection and segmentation (GluonCV's Mask R-CNN), ported to Keras 3 / TensorFlow."""

from kseg.detection import ops

__all__ = ["ops"]
