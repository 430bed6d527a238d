"""GluonCV's Mask R-CNN zoo (C4 and FPN on ResNet-18/50/101) in Keras."""

from kseg.models.mask_rcnn.config import MASK_RCNN_ZOO, MaskRCNNConfig
from kseg.models.mask_rcnn.model import MaskRCNN

__all__ = ["MASK_RCNN_ZOO", "MaskRCNN", "MaskRCNNConfig"]
