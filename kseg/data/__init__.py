"""Data: readers for the four data sets, GluonCV's transforms, preprocessing."""

from kseg.data import preprocessing, transforms
from kseg.data.datasets import DATASET_KEYS, SegmentationDataset, get_dataset
from kseg.data.preprocessing import load_image, normalize_image
from kseg.data.transforms import SegmentationTransform

__all__ = [
    "DATASET_KEYS",
    "SegmentationDataset",
    "SegmentationTransform",
    "get_dataset",
    "load_image",
    "normalize_image",
    "preprocessing",
    "transforms",
]
