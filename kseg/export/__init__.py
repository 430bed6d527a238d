"""SavedModels for TF-Serving, for both tasks, through one export base.

    from kseg.export import export_saved_model
    export_saved_model(kseg.models.get("psp_resnet101_ade", weights="pretrained"), "serving/psp_resnet101_ade")

writes TF-Serving's versioned layout ``serving/psp_resnet101_ade/1/``
(``saved_model.pb``, ``variables/``, ``assets/kseg_metadata.json``). The graph
takes RGB uint8 pixels (``serving_default``) or encoded JPEG/PNG bytes
(``serving_bytes``) and does the model's preprocessing itself, so a client
sends plain images. The task's module (:class:`SemanticExportModule`,
:class:`InstanceExportModule`) says what comes back.

:func:`export_litert` writes LiteRT (``.tflite``) files of the semantic models
for phones and small devices: float32, float16 or int8 (calibrated on images
you give).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import keras

from kseg.export.base import (
    BYTES_SPEC,
    FORMAT,
    IMAGES_SPEC,
    MAX_SIDE,
    METADATA_FILE,
    SAME_SIZE_MESSAGE,
    ExportModule,
    read_metadata,
    write_saved_model,
)
from kseg.export.instance import InstanceExportModule
from kseg.export.litert import LITERT_FORMAT, QUANTIZATIONS, convert_litert, export_litert, read_litert_metadata
from kseg.export.semantic import SemanticExportModule
from kseg.models import metadata_of
from kseg.presets import INSTANCE, SEMANTIC

EXPORT_MODULES: dict[str, type[ExportModule]] = {SEMANTIC: SemanticExportModule, INSTANCE: InstanceExportModule}


def export_saved_model(
    model: keras.Model,
    export_dir: str | os.PathLike,
    version: int = 1,
    xla: bool = False,
    overwrite: bool = False,
    classes: Sequence[str] | None = None,
    **task_options,
) -> Path:
    """Write ``model`` as a TF-Serving SavedModel in ``export_dir/{version}/``; returns that path.

    Signatures (tag ``serve``): ``serving_default`` takes ``images``, uint8
    ``[B, H, W, 3]`` RGB in 0..255, any ``H`` and ``W``; ``serving_bytes``
    takes ``image_bytes``, string ``[B]`` of encoded images (JPEG, PNG, BMP,
    GIF's first frame; grey and RGBA become RGB) of one size per request
    (TF-Serving's REST API takes them as ``{"b64": "..."}``). Both return the
    task's outputs:

    - semantic: ``class_map`` int32 ``[B, H, W]`` and, unless
      ``include_probabilities=False``, ``probabilities`` float32
      ``[B, H, W, C]``. Probabilities are ``H * W * C`` floats per image (150
      classes at 512 x 512: 157 MB of JSON); gRPC clients ask for the class
      map alone with ``output_filter``, REST clients want an export without them;
    - instance: ``detection_boxes``, ``detection_classes``, ``detection_scores``,
      ``detection_masks`` (pasted to the input's size) and ``num_detections``,
      ``max_detections`` (default 100) rows each.

    Args:
        model: a kseg model (its ``metadata`` says the task), or any Keras model
            taking normalised NHWC float images and returning logits (or a dict
            with ``"logits"``): exported as a semantic model.
        export_dir: the model's base folder, which TF-Serving's ``--model_base_path``
            points to (``/models/NAME`` in its Docker image).
        version: the version folder's number (a non-negative integer).
        xla: compile the model part with XLA; TF-Serving's stock builds lack XLA.
        overwrite: replace an existing version folder (otherwise refused).
        classes: class names for the metadata, in place of the model's own.
        **task_options: ``include_probabilities`` (semantic), ``max_detections`` (instance).

    Nothing half-written is left on failure (see :func:`write_saved_model`).
    The SavedModel needs neither kseg nor Keras to load (``tf.saved_model.load``).

    Example:
        >>> path = export_saved_model(kseg.models.get("fcn_resnet50_ade", weights="pretrained"), "serving/fcn")
        >>> read_metadata(path)["classes"][:2]
        ['wall', 'building, edifice']
    """
    task = metadata_of(model).task
    if task not in EXPORT_MODULES:
        raise ValueError(f"{model.name} is a {task} model; kseg exports {', '.join(EXPORT_MODULES)} models")
    classes = None if classes is None else tuple(classes)
    module_class = EXPORT_MODULES[task]
    return write_saved_model(lambda: module_class(model, xla, classes, **task_options), export_dir, version, overwrite)


__all__ = [
    "BYTES_SPEC",
    "EXPORT_MODULES",
    "FORMAT",
    "IMAGES_SPEC",
    "MAX_SIDE",
    "METADATA_FILE",
    "SAME_SIZE_MESSAGE",
    "ExportModule",
    "InstanceExportModule",
    "LITERT_FORMAT",
    "QUANTIZATIONS",
    "SemanticExportModule",
    "convert_litert",
    "export_litert",
    "export_saved_model",
    "read_litert_metadata",
    "read_metadata",
    "write_saved_model",
]
