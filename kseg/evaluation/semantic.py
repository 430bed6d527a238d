"""Semantic evaluation as GluonCV's ``scripts/segmentation/test.py``: the loop behind ``recipes/test.py``.

``testval`` mode feeds each full-resolution image (GluonCV's published
numbers), either single scale or through GluonCV's multi-scale protocol
(:class:`~kseg.evaluation.MultiScalePredictor`); ``val`` mode feeds the
centre crops of training's validation (short side to the crop) to the same
predictor: multi-scale unless ``multi_scale`` is off, as GluonCV's ``test.py
--mode val`` ran ``MultiEvalModel`` on them (training's own validation is single
scale: ``--nomulti-scale``).
The confusion matrix is accumulated over the whole set, as GluonCV's
``SegmentationMetric`` does.
"""

from __future__ import annotations

import dataclasses
import json
import os
import time
from pathlib import Path
from typing import Any

import keras
import numpy as np

from kseg.data.datasets import SegmentationDataset
from kseg.data.preprocessing import normalize_image
from kseg.evaluation.grid import GLUONCV_SCALES
from kseg.evaluation.multiscale import MultiScalePredictor
from kseg.evaluation.predictor import Predictor
from kseg.evaluation.submission import save_submission
from kseg.metrics import ConfusionMatrix
from kseg.models import metadata_of
from kseg.utils.io import write_atomic
from kseg.utils.quiet import progress_bar


@dataclasses.dataclass
class EvalSettings:
    """How to evaluate. ``mode``: testval (full images) or val (centre crops).

    ``base_size``/``crop_size`` None take the model's own (its metadata's
    resize policy: GluonCV's 520/480, or 2048/768 for Cityscapes).

    Example:
        >>> settings = EvalSettings(mode="val", multi_scale=False, max_images=100)
    """

    base_size: int | None = None
    crop_size: int | None = None
    mode: str = "testval"
    multi_scale: bool = True
    scales: tuple = GLUONCV_SCALES
    flip: bool = True
    batch_size: int = 1
    window_batch: int = 8
    jit_compile: bool | None = None
    max_images: int | None = None

    def __post_init__(self):
        if self.mode not in ("testval", "val"):
            raise ValueError(f"mode must be 'testval' or 'val', got {self.mode!r}")
        if self.batch_size < 1 or self.window_batch < 1:
            raise ValueError("batch sizes must be positive")
        self.scales = tuple(float(s) for s in self.scales)

    def for_model(self, model):
        """These settings with the sizes left to the model filled in from its metadata."""
        resize = metadata_of(model).preprocessing.resize
        return dataclasses.replace(
            self, base_size=self.base_size or resize.base_size, crop_size=self.crop_size or resize.crop_size
        )


def _samples(dataset, settings, with_labels):
    """(id, uint8 image, int32 mask or None) in the data set's order, decoded ahead in parallel threads."""
    count = len(dataset)
    if settings.max_images is not None:
        count = min(count, settings.max_images)
    if settings.mode == "val":
        from kseg.data.transforms import val_transform
    elements = dataset.as_tf_dataset(with_ids=True).take(count).prefetch(4)
    for sample_id, image, mask in elements.as_numpy_iterator():
        mask = mask if with_labels else None
        if settings.mode == "val":
            image, mask = val_transform(image, mask if mask is not None else np.zeros(image.shape[:2], np.int32),
                                        settings.crop_size)
        yield sample_id.decode(), image, mask


def _batches(samples, batch_size):
    """Consecutive samples of equal image shape, at most ``batch_size`` at a time."""
    batch = []
    for sample in samples:
        if batch and (len(batch) == batch_size or sample[1].shape != batch[0][1].shape):
            yield batch
            batch = []
        batch.append(sample)
    if batch:
        yield batch


def evaluate_semantic(
    model: keras.Model,
    dataset: SegmentationDataset,
    settings: EvalSettings | None = None,
    out_dir: str | os.PathLike | None = None,
    compute_metrics: bool = True,
    save_predictions: bool = False,
    verbose: int = 1,
) -> dict[str, Any]:
    """Predict every image of ``dataset``; accumulate pixAcc/mIoU and/or write submission PNGs.

    Returns a dict with the number of images, the seconds taken and, with
    ``compute_metrics``, ``pixAcc``, ``mIoU``, the named per-class ``IoU`` and
    the labelled pixels of each class (``label_pixels``). ``settings``: an
    :class:`EvalSettings` (default: GluonCV's published protocol).
    ``save_predictions`` writes the submission PNGs into ``out_dir``;
    ``verbose`` is the Keras progress bar's (0: silent).

    Example:
        >>> model = kseg.models.get("fcn_resnet50_ade", weights="pretrained")
        >>> dataset = kseg.data.get_dataset("ade20k", split="val", root="/data")
        >>> evaluate_semantic(model, dataset, EvalSettings(max_images=20))["mIoU"]
    """
    settings = settings or EvalSettings()
    if compute_metrics and not dataset.has_labels:
        raise ValueError(f"The {dataset.split} split of {dataset.name} has no labels: evaluate on another split")
    if save_predictions and out_dir is None:
        raise ValueError("save_predictions needs an out_dir")
    num_classes = metadata_of(model).num_classes
    if num_classes != dataset.num_classes:
        raise ValueError(f"The model predicts {num_classes} classes but {dataset.name} has {dataset.num_classes}")
    settings = settings.for_model(model)

    if settings.multi_scale:
        predictor = MultiScalePredictor(
            model,
            settings.base_size,
            settings.crop_size,
            settings.scales,
            flip=settings.flip,
            max_batch=settings.window_batch,
            jit_compile=settings.jit_compile,
        )
        batch_size = 1  # one full image at a time, as GluonCV
    else:
        predictor = Predictor(model, jit_compile=settings.jit_compile)
        batch_size = settings.batch_size

    total = len(dataset) if settings.max_images is None else min(len(dataset), settings.max_images)
    progress = progress_bar(total, stateful_metrics=["pixAcc", "mIoU"], verbose=verbose)
    matrix = ConfusionMatrix(dataset.num_classes)
    out_dir = Path(out_dir) if out_dir is not None else None
    start, done = time.perf_counter(), 0
    for batch in _batches(_samples(dataset, settings, compute_metrics), batch_size):
        images = normalize_image(np.stack([image for _, image, _ in batch]))
        if settings.multi_scale:
            predictions = [np.asarray(predictor.predict(images[0]))]
        else:
            predictions = list(np.asarray(predictor.predict(images)))
        for (sample_id, _, mask), prediction in zip(batch, predictions, strict=True):
            if compute_metrics:
                matrix.update(mask, prediction)
            if save_predictions:
                save_submission(out_dir / f"{sample_id}.png", prediction, dataset.name)
        done += len(batch)
        values = [("pixAcc", matrix.pixel_accuracy()), ("mIoU", matrix.mean_iou())] if compute_metrics else []
        progress.update(done, values=values)

    result = {"images": done, "seconds": time.perf_counter() - start}
    if compute_metrics:
        result.update(matrix.result(dataset.classes))
        result["label_pixels"] = matrix.matrix.sum(axis=1).tolist()  # class by class; 0: absent from the labels
    return result


def write_metrics(path: str | os.PathLike, metrics: dict[str, Any]) -> None:
    """``metrics`` as JSON (``metrics.json``), written atomically; numpy scalars and arrays become numbers and lists.

    Example:
        >>> write_metrics("runs/fcn/metrics.json", {"pixAcc": 0.79, "mIoU": 0.395, "IoU": np.zeros(150)})
    """
    text = json.dumps(metrics, indent=2, default=_json_default) + "\n"
    write_atomic(Path(os.fspath(path)), text)


def _json_default(value):
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    raise TypeError(f"Not JSON serialisable: {type(value).__name__}")
