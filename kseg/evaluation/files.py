"""Image files in, pictures out, for either task: what ``kseg predict`` and ``train.py --predict`` write.

Semantic models write ``{stem}_mask.png`` (the class map in the data set's
palette, see :func:`kseg.visualize.colorize`) and ``{stem}_overlay.png`` (it
blended over the image); Mask R-CNN models write ``{stem}_instances.png``
(each detection's mask tinted, its box outlined and labelled). Class names
come from the model's metadata, so a fine-tuned model shows its own.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import keras
import numpy as np

from kseg import visualize
from kseg.data.preprocessing import load_image, normalize_image
from kseg.evaluation.instance import InstancePredictor
from kseg.evaluation.predictor import Predictor
from kseg.models import metadata_of
from kseg.presets import INSTANCE
from kseg.utils.limits import PREDICT_MAX_PIXELS as DEFAULT_MAX_PIXELS
from kseg.utils.quiet import progress_bar, writes_to_terminal

LARGE = 1 << 21  # images over 2 megapixels get a line of their own before they are predicted

if TYPE_CHECKING:
    from kseg.evaluation.multiscale import MultiScalePredictor


def _say(line, bar_drawn):
    """Print above the progress bar: on a terminal, clear its line first (Keras redraws it below); in a log
    file, plain lines only."""
    if bar_drawn and writes_to_terminal():
        sys.stdout.write("\r\033[K")
    print(line, flush=True)


def default_predictor(model: keras.Model, score_threshold: float = 0.5):
    """The single-scale predictor of ``model``'s task (Mask R-CNN: drawn detections above ``score_threshold``)."""
    if metadata_of(model).task == INSTANCE:
        return InstancePredictor(model, score_threshold=score_threshold, exact_masks=False)
    return Predictor(model, jit_compile=None)


def _semantic_pictures(predictor, image, path, out_dir, dataset, class_names, alpha):
    labels = np.asarray(predictor.predict(normalize_image(image)))
    mask_path, overlay_path = out_dir / f"{path.stem}_mask.png", out_dir / f"{path.stem}_overlay.png"
    visualize.save_png(mask_path, visualize.colorize(labels, dataset))
    visualize.save_png(overlay_path, visualize.overlay(image, labels, dataset, alpha))
    found = ", ".join(f"{name} {share:.1%}" for name, _, share in visualize.legend(labels, dataset, class_names))
    return (mask_path, overlay_path), f"{path.name}: {found} -> {mask_path}, {overlay_path}"


def _instance_pictures(predictor, image, path, out_dir, alpha):
    found = predictor.predict(image)
    drawn = visualize.draw_instances(image, found.boxes, found.masks, found.labels(), found.scores, alpha)
    out = out_dir / f"{path.stem}_instances.png"
    visualize.save_png(out, drawn)
    names = ", ".join(f"{name} {score:.2f}" for name, score in zip(found.labels(), found.scores, strict=True))
    return out, f"{path.name}: {len(found)} detection(s){': ' + names if names else ''} -> {out}"


def predict_files(
    predictor: Predictor | MultiScalePredictor | InstancePredictor | keras.Model,
    image_paths: Sequence[str | Path],
    out_dir: str | Path,
    dataset: str | None = None,
    alpha: float = 0.5,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    failed: list | None = None,
) -> list:
    """Predict every image file and write its pictures into ``out_dir``; returns what was written, image by image.

    Args:
        predictor: a :class:`Predictor`, :class:`~kseg.evaluation.MultiScalePredictor`
            or :class:`InstancePredictor`, or a model (then predicted single scale).
        image_paths: image files (anything PIL reads).
        dataset: semantic models: the palette's data set; None: the model's own.
        alpha: opacity of the masks over the image.
        max_pixels: larger images are refused (their activations would not fit a machine's memory; a
            3-megapixel photo takes about 7 GB in a ResNet-101 model); 0 or None lifts the limit.
        failed: where given, an image that cannot be read or is too large is reported on stderr, appended
            here as ``(path, reason)`` and skipped; otherwise the first one raises.

    Returns ``(mask_path, overlay_path)`` per image predicted for semantic models,
    the ``{stem}_instances.png`` path per image for Mask R-CNN.

    Example:
        >>> model = kseg.models.get("psp_resnet101_ade", weights="pretrained")
        >>> predict_files(model, ["street.jpg"], "predictions")
        [(PosixPath('predictions/street_mask.png'), PosixPath('predictions/street_overlay.png'))]
    """
    if isinstance(predictor, keras.Model):
        predictor = default_predictor(predictor)
    metadata = metadata_of(predictor.model)
    dataset = dataset or metadata.dataset
    out_dir = Path(out_dir)
    paths = [Path(p) for p in image_paths]
    progress = progress_bar(len(paths), unit_name="image") if len(paths) > 1 else None
    written = []
    for i, path in enumerate(paths):
        try:
            image = load_image(path, max_pixels=max_pixels or None)
        except (ValueError, FileNotFoundError) as error:
            if failed is None:
                raise
            failed.append((path, str(error)))
            _say(f"{path.name}: skipped: {error}", progress is not None and i > 0)
            continue
        if image.shape[0] * image.shape[1] > LARGE:
            _say(f"{path.name}: {image.shape[1]} x {image.shape[0]} pixels, predicting...", progress is not None and i)
        if metadata.task == INSTANCE:
            result, line = _instance_pictures(predictor, image, path, out_dir, alpha)
        else:
            result, line = _semantic_pictures(predictor, image, path, out_dir, dataset, metadata.classes, alpha)
        _say(line, progress is not None and i > 0)
        written.append(result)
        if progress is not None:
            progress.update(i + 1)
    return written
