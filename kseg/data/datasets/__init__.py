"""Readers for ADE20K, Pascal VOC (+ SBD), COCO (as VOC classes) and Cityscapes in their official layouts."""

from kseg.data.datasets.ade20k import ADE20K
from kseg.data.datasets.base import IGNORE_LABEL, SegmentationDataset
from kseg.data.datasets.cityscapes import Cityscapes, cityscapes_from_tfds, label_ids_to_train_ids
from kseg.data.datasets.coco import COCOSemantic, instances_to_semantic
from kseg.data.datasets.pascal_voc import PascalAug, PascalVOC
from kseg.data.datasets.registry import DATASET_KEYS, DATASETS, get_dataset

__all__ = [
    "ADE20K",
    "COCOSemantic",
    "Cityscapes",
    "DATASETS",
    "DATASET_KEYS",
    "IGNORE_LABEL",
    "PascalAug",
    "PascalVOC",
    "SegmentationDataset",
    "cityscapes_from_tfds",
    "get_dataset",
    "instances_to_semantic",
    "label_ids_to_train_ids",
]
