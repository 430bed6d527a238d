"""Every published model of kseg as one :class:`Preset` in one table, importable without TensorFlow.

The 15 semantic segmentation models, the 6 Mask R-CNN models and the
ImageNet backbones GluonCV's recipes start from. ``kseg.models.get(name)``
builds a preset; ``kseg list`` and ``kseg info`` read these tables alone.

Example:
    >>> from kseg import presets
    >>> preset = presets.get_preset("psp_resnet101_ade")
    >>> preset.task, preset.num_classes, preset.metadata.preprocessing.resize.crop_size
    ('semantic_segmentation', 150, 480)
    >>> len(presets.list_presets("instance"))
    6
"""

from __future__ import annotations

import difflib

from kseg.presets.backbones import BACKBONE_PRESETS
from kseg.presets.datasets import CLASSES_BY_DATASET, DATASET_KEYS, ZOO_SUFFIX
from kseg.presets.instance import INSTANCE_PRESETS
from kseg.presets.schema import (
    BACKBONE,
    IMAGENET_MEAN,
    IMAGENET_STD,
    INSTANCE,
    SEMANTIC,
    TASKS,
    CropResize,
    ModelMetadata,
    Preprocessing,
    Preset,
    PresetMetadata,
    ShortSideResize,
    WeightsSource,
    numbered_classes,
    store_url,
    task_name,
)
from kseg.presets.semantic import SEMANTIC_PRESETS

PRESETS: dict[str, Preset] = {p.name: p for p in (*SEMANTIC_PRESETS, *INSTANCE_PRESETS, *BACKBONE_PRESETS)}


def list_presets(task: str | None = None) -> list[str]:
    """Preset names in table order: all of them, or one task's (``"semantic"``, ``"instance"``, ``"backbone"``)."""
    if task is None:
        return list(PRESETS)
    task = task_name(task)
    return [name for name, preset in PRESETS.items() if preset.task == task]


def get_preset(name: str) -> Preset:
    """The :class:`Preset` called ``name``; an unknown name is refused with the closest ones."""
    preset = PRESETS.get(name) if isinstance(name, str) else None
    if preset is None:
        close = difflib.get_close_matches(str(name), list(PRESETS), n=5, cutoff=0.5)
        hint = f" Did you mean: {', '.join(close)}?" if close else ""
        raise ValueError(f"Unknown model {name!r}.{hint} See kseg.models.list_models() (or `kseg list`) for all.")
    return preset


__all__ = [
    "BACKBONE",
    "CLASSES_BY_DATASET",
    "DATASET_KEYS",
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "INSTANCE",
    "PRESETS",
    "SEMANTIC",
    "TASKS",
    "ZOO_SUFFIX",
    "CropResize",
    "ModelMetadata",
    "Preprocessing",
    "Preset",
    "PresetMetadata",
    "ShortSideResize",
    "WeightsSource",
    "get_preset",
    "list_presets",
    "numbered_classes",
    "store_url",
    "task_name",
]
