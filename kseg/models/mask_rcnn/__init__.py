"""GluonCV's Mask R-CNN (C4 and FPN on ResNet-18/50/101) in Keras."""

from kseg.models.mask_rcnn.config import MaskRCNNConfig
from kseg.models.mask_rcnn.model import MaskRCNN

__all__ = ["MaskRCNN", "MaskRCNNConfig"]
