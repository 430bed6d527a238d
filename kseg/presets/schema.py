"""The preset record: what one published model is, where its weights come from and what it expects.

Plain dataclasses with no TensorFlow or Keras behind them, so that the tables
load in milliseconds (``kseg list``). A :class:`Preset` joins four things that
each change for their own reasons, as torchvision's ``Weights`` and timm's
``PretrainedCfg`` keep them apart from the architecture:

- ``builder`` and ``architecture``: which kseg builder makes the network and
  with which arguments (architecture only: no file names, no scores);
- ``weights``: GluonCV's published file (name, SHA-1, converter); its URL is
  derived in one place, :func:`store_url`, which honours
  ``$KSEG_MODEL_STORE_URL``;
- ``metadata``: the data set and class names, the preprocessing (mean/std and
  the resize policy), GluonCV's published scores, the parameter count and the
  recipe;
- ``task``: which task's parts (predictor, evaluation, export) serve it.

A built model carries a :class:`ModelMetadata`, the part of a preset that
stays true of the model itself (task, classes, preprocessing), in its Keras
config; a model fine-tuned on other classes carries its own.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping, Sequence
from typing import Any

SEMANTIC = "semantic_segmentation"
INSTANCE = "instance_segmentation"
BACKBONE = "backbone"
TASKS = (SEMANTIC, INSTANCE, BACKBONE)
# The short names of list_models(task=...) and the command line.
TASK_ALIASES = {"semantic": SEMANTIC, "instance": INSTANCE, "backbone": BACKBONE}

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

GLUONCV_STORE_URL = "https://apache-mxnet.s3-accelerate.dualstack.amazonaws.com/"
STORE_URL_ENV = "KSEG_MODEL_STORE_URL"


def task_name(task: str) -> str:
    """``"semantic"`` or ``"semantic_segmentation"`` -> ``"semantic_segmentation"``; anything else is refused."""
    resolved = TASK_ALIASES.get(task, task)
    if resolved not in TASKS:
        known = ", ".join([*TASK_ALIASES, *TASKS])
        raise ValueError(f"Unknown task {task!r}; expected one of {known}")
    return resolved


def store_url() -> str:
    """The model store's base URL, ending in ``/``: ``$KSEG_MODEL_STORE_URL``, else GluonCV's own."""
    base = os.environ.get(STORE_URL_ENV) or GLUONCV_STORE_URL
    return base if base.endswith("/") else base + "/"


@dataclasses.dataclass(frozen=True)
class CropResize:
    """GluonCV's semantic sizes (``gluoncv/data/segbase.py``, ``gluoncv/model_zoo/segbase.py``).

    Training resizes the long side to U(0.5, 2) x ``base_size`` and crops
    ``crop_size``; evaluation slides ``crop_size`` windows over the image
    resized to ``scale x base_size``.
    """

    base_size: int = 520
    crop_size: int = 480

    policy = "base_crop"


@dataclasses.dataclass(frozen=True)
class ShortSideResize:
    """GluonCV's detection sizes (``resize_short_within``): short side to ``short``, long side at most ``max_size``."""

    short: int = 800
    max_size: int = 1333

    policy = "short_side"


_RESIZE_POLICIES = {cls.policy: cls for cls in (CropResize, ShortSideResize)}


@dataclasses.dataclass(frozen=True)
class Preprocessing:
    """How images become model inputs: ``(x / 255 - mean) / std`` on RGB, and a resize policy (or None)."""

    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD
    resize: CropResize | ShortSideResize | None = None

    def to_config(self) -> dict[str, Any]:
        resize = None
        if self.resize is not None:
            resize = {"policy": self.resize.policy, **dataclasses.asdict(self.resize)}
        return {"mean": list(self.mean), "std": list(self.std), "resize": resize}

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> Preprocessing:
        resize = config.get("resize")
        if resize is not None:
            resize = dict(resize)
            policy = resize.pop("policy")
            if policy not in _RESIZE_POLICIES:
                raise ValueError(f"Unknown resize policy {policy!r}; expected one of {', '.join(_RESIZE_POLICIES)}")
            resize = _RESIZE_POLICIES[policy](**resize)
        return cls(tuple(config.get("mean", IMAGENET_MEAN)), tuple(config.get("std", IMAGENET_STD)), resize)


@dataclasses.dataclass(frozen=True)
class ModelMetadata:
    """What a built model says of itself; kept in its Keras config (``get_config``, ``.keras``).

    ``preset`` names the preset the model was built from (provenance only:
    nothing looks it up); ``classes`` are the names of the model's output
    classes, in order, which a model fine-tuned on other classes replaces.
    """

    task: str
    classes: tuple[str, ...]
    preprocessing: Preprocessing
    dataset: str | None = None
    preset: str | None = None

    def __post_init__(self):
        object.__setattr__(self, "task", task_name(self.task))
        object.__setattr__(self, "classes", tuple(str(c) for c in self.classes))

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    def with_classes(self, classes: Sequence[str], dataset: str | None = None) -> ModelMetadata:
        """The same model on other classes (fine-tuning): the data set is no longer the preset's."""
        return dataclasses.replace(self, classes=tuple(classes), dataset=dataset)

    def to_config(self) -> dict[str, Any]:
        return {
            "task": self.task,
            "classes": list(self.classes),
            "preprocessing": self.preprocessing.to_config(),
            "dataset": self.dataset,
            "preset": self.preset,
        }

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> ModelMetadata:
        return cls(
            task=config["task"],
            classes=tuple(config["classes"]),
            preprocessing=Preprocessing.from_config(config.get("preprocessing", {})),
            dataset=config.get("dataset"),
            preset=config.get("preset"),
        )


def numbered_classes(count: int) -> tuple[str, ...]:
    """Names for classes nobody named: ``class_0``, ``class_1``, ..."""
    return tuple(f"class_{i}" for i in range(count))


@dataclasses.dataclass(frozen=True)
class WeightsSource:
    """A published weights file: GluonCV's ``{name}-{sha1[:8]}.params`` inside ``{...}.zip`` on its model store.

    ``converter`` names the name map that loads it (``kseg.weights.CONVERTERS``):
    ``gluoncv_semantic``, ``gluoncv_rcnn`` or ``gluoncv_imagenet`` (an ImageNet
    classifier's backbone arrays, its ``fc`` left out).
    """

    name: str
    sha1: str
    converter: str

    @property
    def gluoncv_file(self) -> str:
        return f"{self.name}-{self.sha1[:8]}.params"

    @property
    def archive(self) -> str:
        return f"{self.name}-{self.sha1[:8]}.zip"

    @property
    def url(self) -> str:
        """Where the store serves the archive, ``{store_url()}gluon/models/{archive}`` (``model_store.py``)."""
        return f"{store_url()}gluon/models/{self.archive}"


@dataclasses.dataclass(frozen=True)
class PresetMetadata:
    """What is known of a published model besides its architecture and file.

    ``metrics`` are GluonCV's published scores (percent; None where GluonCV
    gives none), measured as ``evaluation`` says; ``num_params`` counts every
    weight of the model the preset's architecture describes, BatchNorm
    statistics and auxiliary head included: the arrays of GluonCV's file (an
    ImageNet backbone's without its ``fc``).
    """

    dataset: str | None
    classes: tuple[str, ...] | None
    preprocessing: Preprocessing
    metrics: Mapping[str, float | None]
    evaluation: str
    num_params: int
    recipe: str | None = None
    notes: str = ""


@dataclasses.dataclass(frozen=True)
class Preset:
    """One published model: task, builder and architecture, weights source, metadata."""

    name: str
    task: str
    builder: str
    architecture: Mapping[str, Any]
    weights: WeightsSource
    metadata: PresetMetadata

    def __post_init__(self):
        task_name(self.task)

    # The fields callers want most, under the names zoo entries always had.
    @property
    def classes(self) -> tuple[str, ...] | None:
        return self.metadata.classes

    @property
    def num_classes(self) -> int | None:
        return None if self.metadata.classes is None else len(self.metadata.classes)

    @property
    def dataset(self) -> str | None:
        return self.metadata.dataset

    @property
    def metrics(self) -> Mapping[str, float | None]:
        return self.metadata.metrics

    def model_metadata(self) -> ModelMetadata:
        """The :class:`ModelMetadata` a model built from this preset carries."""
        return ModelMetadata(
            task=self.task,
            classes=self.metadata.classes or (),
            preprocessing=self.metadata.preprocessing,
            dataset=self.metadata.dataset,
            preset=self.name,
        )
