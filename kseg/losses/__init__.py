"""Losses."""

from kseg.losses.segmentation import SegmentationCrossEntropy, masked_cross_entropy

__all__ = ["SegmentationCrossEntropy", "masked_cross_entropy"]
