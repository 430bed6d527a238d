"""The training configuration: one typed record of a run, whose defaults are GluonCV's recipe.

``recipes/train.py`` turns every flag into a field of :class:`TrainConfig`
(``--aux-weight`` is ``aux_weight``), so a run is as easy to start from Python
as from a flagfile. The defaults are those of GluonCV's
``scripts/segmentation/train.py`` (batch 16, SGD 0.9 with weight decay 1e-4,
poly 0.9, the heads at 10x, base 520 / crop 480 unless the model says
otherwise).
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

from kseg.presets.datasets import DATASET_KEYS

STRATEGIES = ("auto", "one_device", "mirrored", "multi_worker", "tpu")
PRECISIONS = ("auto", "float32", "mixed_bfloat16", "mixed_float16")


def _field(default, help_text, **kwargs):
    return dataclasses.field(default=default, metadata={"help": help_text}, **kwargs)


@dataclasses.dataclass
class TrainConfig:
    """A training run; see each field's ``help`` (``dataclasses.fields(TrainConfig)``), the flags' text.

    Example:
        >>> from kseg.training import TrainConfig, train
        >>> config = TrainConfig(model="fcn", backbone="resnet18_v1b", dataset="citys", dataset_dir="data",
        ...                      synthetic_data=True, epochs=2, batch_size=4, crop_size=96, base_size=112)
        >>> report = train(config)
        >>> report.metrics["mIoU"]
    """

    # The model.
    model_zoo: str | None = _field(None, "A zoo name, e.g. fcn_resnet50_ade (kseg.models.list_models()).")
    model: str | None = _field(None, "Method when --model-zoo is not given: fcn, psp, deeplab, deeplab_v3b_plus.")
    backbone: str = _field("resnet101", "Backbone with --model: resnet50 (GluonCV's v1s), resnet18_v1b, ...")
    output_stride: int = _field(8, "Backbone output stride (8 as published, 16 is faster).")
    aux: bool = _field(False, "Train with the auxiliary FCN head on c4.")
    syncbn: bool = _field(False, "Synchronized BatchNormalization across replicas.")
    init_from: str | None = _field(
        None, "Start from a zoo entry's published weights (its name; 'pretrained': the --model-zoo entry's) or a file."
    )
    reuse_classes: bool = _field(
        False, "With --init-from a zoo entry and other classes: start the rows of its classes kept by name from it."
    )
    pretrained_backbone: str | None = _field(
        None, "A GluonCV ImageNet backbone: its name (e.g. resnet101_v1s, fetched as the zoo's) or its .params."
    )
    # The data.
    dataset: str | None = _field(None, "Data set (default: the zoo entry's).")
    dataset_dir: str | None = _field(None, "The data set's folder or a folder holding it (default: $KSEG_DATA).")
    train_split: str = _field("train", "Split to train on (GluonCV: train; VOC's second stage: trainval).")
    base_size: int | None = _field(None, "Base image size (default: the model's, GluonCV's 520).")
    crop_size: int | None = _field(None, "Crop size (default: the model's, GluonCV's 480).")
    synthetic_data: bool = _field(False, "Write kseg's procedural data set to --dataset-dir if absent.")
    synthetic_size: int = _field(96, "Image side of the procedural data set.")
    synthetic_train: int = _field(64, "Training images of the procedural data set.")
    # The optimisation.
    batch_size: int = _field(16, "Global batch (split over the replicas).")
    epochs: int = _field(50, "Epochs.")
    lr: float = _field(0.01, "Base learning rate (backbone); the heads get --head-lr-mult times it.")
    momentum: float = _field(0.9, "SGD momentum.")
    weight_decay: float = _field(1e-4, "L2 weight decay, added to the gradient as MXNet's SGD does.")
    head_lr_mult: float = _field(10.0, "Learning-rate multiplier of the head and auxiliary head.")
    power: float = _field(0.9, "Power of the poly schedule (per iteration).")
    warmup_epochs: float = _field(0.0, "Linear warm-up from lr/3 over this many epochs.")
    aux_weight: float = _field(0.5, "Weight of the auxiliary loss.")
    lr_decay_epochs: tuple[str, ...] = _field(
        (), "Mask R-CNN: epochs at whose start the rate is multiplied by --lr-decay (default GluonCV's 17,23)."
    )
    lr_decay: float = _field(0.1, "Mask R-CNN: the step schedule's factor.")
    warmup_steps: float | None = _field(
        None, "Mask R-CNN: warm-up iterations from lr/3 (default GluonCV's max(8000 / batch, 1000))."
    )
    clip_gradient: float | None = _field(None, "Clip every gradient element to [-c, c] (MXNet's clip_gradient).")
    short: int | None = _field(None, "Mask R-CNN: training short side (default the model's, GluonCV's 800).")
    max_size: int | None = _field(None, "Mask R-CNN: training long side at most (default the model's, 1333).")
    rcnn_samples: int | None = _field(
        None, "Mask R-CNN: RoIs the RCNN sampler draws per image (default the model's: GluonCV's 512 with FPN, "
        "256 on C4 ResNet-18, 128 on the other C4 models)."
    )
    rcnn_positives: int | None = _field(
        None, "Mask R-CNN: at most this many of them positive, the rows the box and mask losses train on (default "
        "a quarter of the samples, GluonCV's pos_ratio)."
    )
    gradient_scale: float = _field(
        1.0,
        "Multiplies the loss gradient but not the weight decay. GluonCV's SoftmaxOutput summed the per-GPU mean "
        "losses and divided by the batch, so its gradient was ngpus/16 of the mean loss's: the flagfiles set it.",
    )
    seed: int = _field(0, "Seed of the data order, augmentation and initialisation.")
    deterministic: bool = _field(False, "Deterministic TF ops (slower; exact resumes).")
    # Where and how it runs.
    strategy: str = _field("auto", "tf.distribute strategy (TF_CONFIG for multi_worker).")
    precision: str = _field("auto", "auto: bf16 on GPUs >= sm80 and TPUs, else f32.")
    jit_compile: bool | None = _field(None, "XLA: None (auto) compiles on GPUs and TPUs (no gain on CPUs).")
    cpu_devices: int = _field(0, "Split the CPU into N logical devices (tries MirroredStrategy on a CPU).")
    # The run folder and what happens in it.
    run_dir: str | None = _field(None, "Folder of this run: checkpoints, logs, weights, metrics.json.")
    checkpoint_steps: int = _field(100, "Checkpoint every N steps (and at every epoch's end).")
    val_every: int = _field(1, "Validate every N epochs during training (0: only at the end).")
    val_batch_size: int | None = _field(None, "Validation batch (default: --batch-size).")
    max_val_images: int | None = _field(None, "Validate on the first N images only.")
    export: bool = _field(False, "Write a SavedModel to RUN_DIR/export/1 at the end.")
    predict: tuple[str, ...] = _field((), "Images to predict at the end: mask and overlay PNGs in RUN_DIR/predictions.")
    dry_run: bool = _field(False, "Resolve the configuration and build and compile the model, then stop.")
    allow_changes: bool = _field(
        False, "Resume a run folder with a training configuration other than the one it recorded (run.json)."
    )
    stop_after_steps: int | None = _field(None, "Stop this process after N steps in total (tests; resume later).")

    def __post_init__(self):
        self.predict = tuple(self.predict)
        for name in ("init_from", "pretrained_backbone"):  # 'none' means what it means everywhere in kseg
            if isinstance(getattr(self, name), str) and getattr(self, name).lower() == "none":
                setattr(self, name, None)
        for field in dataclasses.fields(self):
            _check_type(field, getattr(self, field.name))
        _check_choice("strategy", self.strategy, STRATEGIES)
        _check_choice("precision", self.precision, PRECISIONS)
        if self.dataset is not None:
            _check_choice("dataset", self.dataset, DATASET_KEYS)
        for name in ("batch_size", "epochs", "synthetic_size", "synthetic_train"):
            _check_at_least(name, getattr(self, name), 1)
        for name in ("base_size", "crop_size", "val_batch_size", "max_val_images", "stop_after_steps", "short",
                     "max_size", "rcnn_samples", "rcnn_positives"):
            if getattr(self, name) is not None:
                _check_at_least(name, getattr(self, name), 1)
        if self.rcnn_samples and self.rcnn_positives and self.rcnn_positives > self.rcnn_samples:
            raise ValueError(f"rcnn_positives ({self.rcnn_positives}) must not exceed rcnn_samples "
                             f"({self.rcnn_samples}): the positives are drawn among the samples")
        for name in ("val_every", "checkpoint_steps", "cpu_devices"):
            _check_at_least(name, getattr(self, name), 0)
        if self.output_stride not in (8, 16, 32):
            raise ValueError(f"output_stride must be 8, 16 or 32, got {self.output_stride}")
        for name in ("lr", "momentum", "weight_decay", "head_lr_mult", "power", "warmup_epochs", "aux_weight",
                     "lr_decay"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must not be negative, got {getattr(self, name)}")
        for name in ("warmup_steps", "clip_gradient"):
            if getattr(self, name) is not None and getattr(self, name) < 0:
                raise ValueError(f"{name} must not be negative, got {getattr(self, name)}")
        for epoch in self.lr_decay_epochs:
            try:
                float(epoch)
            except ValueError:
                raise ValueError(f"lr_decay_epochs must be numbers, got {epoch!r}") from None
        if self.deterministic and self.jit_compile:
            raise ValueError("deterministic and jit_compile do not go together: Keras compiles nothing with XLA "
                             "while TensorFlow's op determinism is on; drop one")
        if self.reuse_classes and not self.init_from:
            raise ValueError("reuse_classes reuses --init-from's class rows: name a zoo entry in init_from")
        if not self.gradient_scale > 0:
            raise ValueError(f"gradient_scale must be positive, got {self.gradient_scale}")
        if not (self.model_zoo or self.model):
            raise ValueError("Name a model: model_zoo (a zoo name, see kseg.models.list_models()) or model (a method)")
        if self.model and not self.model_zoo and not self.dataset:
            raise ValueError("model (a method) needs a dataset (ade20k, pascal_voc, pascal_aug, coco or citys)")

    def replace(self, **changes: Any) -> TrainConfig:
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        return {field.name: _plain(getattr(self, field.name)) for field in dataclasses.fields(self)}


def _plain(value):
    return list(value) if isinstance(value, tuple) else value


_TYPES = {"int": int, "float": (int, float), "bool": bool, "str": str}


def _check_type(field, value):
    """Refuse a value of the wrong type instead of coercing it (1.5 epochs, aux="no")."""
    annotation = str(field.type)
    optional = "None" in annotation
    if value is None:
        if not optional:
            raise TypeError(f"{field.name} must not be None")
        return
    if annotation.startswith("tuple"):
        if not all(isinstance(item, str) for item in value):
            raise TypeError(f"{field.name} must be a list of strings, got {value!r}")
        return
    kind = annotation.split("|")[0].strip()
    expected = _TYPES[kind]
    if isinstance(value, bool) and kind != "bool":
        raise TypeError(f"{field.name} must be {kind}, got {value!r}")
    if not isinstance(value, expected):
        raise TypeError(f"{field.name} must be {kind}, got {value!r}")
    if kind == "float" and not math.isfinite(value):
        raise ValueError(f"{field.name} must be finite, got {value!r}")


def _check_choice(name, value, choices):
    if value not in choices:
        raise ValueError(f"{name} must be one of {', '.join(choices)}, got {value!r}")


def _check_at_least(name, value, low):
    if value < low:
        raise ValueError(f"{name} must be at least {low}, got {value}")
