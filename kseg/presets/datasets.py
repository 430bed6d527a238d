"""The data sets of the zoo by GluonCV's ``--dataset`` keys: their classes and the suffix zoo names carry."""

from kseg.presets.classes import ADE20K_CLASSES, CITYSCAPES_CLASSES, COCO_DETECTION_CLASSES, VOC_CLASSES

# GluonCV's keys of the semantic data sets, in the order its scripts list them.
DATASET_KEYS = ("ade20k", "pascal_voc", "pascal_aug", "coco", "citys")

CLASSES_BY_DATASET = {
    "ade20k": ADE20K_CLASSES,
    "pascal_voc": VOC_CLASSES,
    "pascal_aug": VOC_CLASSES,
    "coco": VOC_CLASSES,  # COCO semantic is mapped to the 21 VOC classes (gluoncv/data/mscoco/segmentation.py)
    "citys": CITYSCAPES_CLASSES,
}

# The suffix of a zoo name, as GluonCV's test.py forms it from --dataset.
ZOO_SUFFIX = {"ade20k": "ade", "pascal_voc": "voc", "pascal_aug": "voc", "coco": "coco", "citys": "citys"}

__all__ = ["CLASSES_BY_DATASET", "COCO_DETECTION_CLASSES", "DATASET_KEYS", "ZOO_SUFFIX"]
