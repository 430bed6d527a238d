"""``get_dataset(name, split, root)``: a reader by GluonCV's ``--dataset`` key."""

import difflib
import os

from kseg.data.datasets.ade20k import ADE20K
from kseg.data.datasets.cityscapes import Cityscapes
from kseg.data.datasets.coco import COCOSemantic
from kseg.data.datasets.pascal_voc import PascalAug, PascalVOC
from kseg.presets.datasets import DATASET_KEYS

DATASETS = {cls.name: cls for cls in (ADE20K, PascalVOC, PascalAug, COCOSemantic, Cityscapes)}
assert tuple(DATASETS) == DATASET_KEYS, "a reader for every data-set key of kseg.presets, in its order"


def get_dataset(name, split="val", root=None):
    """The ``split`` of data set ``name`` (ade20k, pascal_voc, pascal_aug, coco, citys).

    ``root`` is the data set's folder or a folder holding it under its usual
    name (``ADEChallengeData2016``, ``VOCdevkit/VOC2012``, ``VOCaug/dataset``,
    ``coco``, ``cityscapes``); by default ``$KSEG_DATA``.
    """
    if name not in DATASETS:
        close = difflib.get_close_matches(str(name), DATASETS, n=3, cutoff=0.4)
        hint = f" Did you mean: {', '.join(close)}?" if close else ""
        raise ValueError(f"Unknown dataset {name!r}.{hint} Data sets: {', '.join(DATASETS)}")
    return DATASETS[name](root if root is not None else os.environ.get("KSEG_DATA"), split)
