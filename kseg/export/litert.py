"""LiteRT (TensorFlow Lite) files of the semantic models, for phones and small devices.

    from kseg.export import export_litert
    export_litert(kseg.models.get("deeplab_resnet101_voc", weights="pretrained"), "deeplab_voc.tflite",
                  quantization="int8", calibration_images=sorted(Path("my_photos").glob("*.jpg")))

writes ``deeplab_voc.tflite`` and its metadata beside it (``deeplab_voc.json``:
classes, preprocessing, input size, quantization). The file takes RGB uint8
pixels of one fixed size (``images`` ``[batch, height, width, 3]``; on-device
runtimes plan their memory for one shape), normalises them itself and returns
``class_map`` (int32 ``[batch, height, width]``) and, unless
``include_probabilities=False``, ``probabilities`` (float32, softmax). Run it
with ``ai_edge_litert.interpreter.Interpreter`` (or TFLite on Android/iOS).

Quantization:

- ``float32``: the model as it is; its outputs equal the Keras model's within float32 rounding;
- ``float16``: weights stored as float16 (half the file), computed in float32 on CPUs;
- ``int8``: post-training quantisation of weights and activations, calibrated
  on ``calibration_images`` (images like the ones the model will see, resized to
  the input size); a quarter of the file and XNNPACK's int8 kernels. The class
  maps differ from float32's on some pixels: measure it on your images
  (``benchmarks/litert.py`` does).
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Sequence
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf
from PIL import Image

from kseg.data.preprocessing import load_image, normalize_image
from kseg.export.base import Untracked
from kseg.models import metadata_of
from kseg.ops.runtime import stock_tf_ops
from kseg.presets import SEMANTIC, CropResize
from kseg.utils.io import write_atomic

LITERT_FORMAT = "kseg-litert/1"
QUANTIZATIONS = ("float32", "float16", "int8")
MAX_LITERT_SIDE = 4096  # one fixed shape; 4096 x 4096 is already 48 MiB of input alone


def litert_metadata_path(path: str | os.PathLike) -> Path:
    """Where :func:`export_litert` writes the metadata of ``path``: beside it, as ``.json``."""
    return Path(os.fspath(path)).with_suffix(".json")


def default_input_size(model: keras.Model) -> tuple[int, int]:
    """The size a LiteRT file of ``model`` takes unless told: the preset's crop size (480 x 480 for most)."""
    resize = metadata_of(model).preprocessing.resize
    if isinstance(resize, CropResize):
        return resize.crop_size, resize.crop_size
    return 480, 480  # a model without a crop size (a plain Keras model): GluonCV's usual crop


def _check_input_size(input_size) -> tuple[int, int]:
    try:
        height, width = (int(side) for side in input_size)
    except (TypeError, ValueError):
        raise ValueError(f"input_size must be (height, width), got {input_size!r}") from None
    if not (1 <= height <= MAX_LITERT_SIDE and 1 <= width <= MAX_LITERT_SIDE):
        raise ValueError(f"input_size sides must be 1..{MAX_LITERT_SIDE}, got {height}x{width}")
    return height, width


def calibration_batches(images: Iterable, input_size: tuple[int, int], batch_size: int = 1):
    """uint8 ``[batch_size, H, W, 3]`` arrays from image files or uint8 arrays, resized (PIL bilinear) to
    ``input_size``; a last incomplete batch is dropped (the file's batch is fixed)."""
    height, width = input_size
    batch = []
    for image in images:
        if isinstance(image, (str, os.PathLike)):
            image = load_image(image)
        image = np.asarray(image)
        if image.dtype != np.uint8 or image.ndim != 3 or image.shape[-1] != 3:
            raise ValueError(f"calibration images must be uint8 [H, W, 3] RGB, got {image.dtype} {image.shape}")
        if image.shape[:2] != (height, width):
            image = np.asarray(Image.fromarray(image).resize((width, height), Image.BILINEAR))
        batch.append(image)
        if len(batch) == batch_size:
            yield np.stack(batch)
            batch = []


class _LiteRTModule(tf.Module):
    """The one function converted: fixed-size uint8 pixels in, the class map (and probabilities) out."""

    def __init__(self, model, input_shape, include_probabilities):
        super().__init__(name="kseg_litert")
        self._model = Untracked(model)  # TensorFlow tracks the variables below, not the Keras model
        self._preprocessing = metadata_of(model).preprocessing
        self._include_probabilities = include_probabilities
        self.serve = tf.function(self._serve, input_signature=[tf.TensorSpec(input_shape, tf.uint8, name="images")])
        with stock_tf_ops():
            concrete = self.serve.get_concrete_function()
        self.model_variables = list(concrete.variables)

    def _serve(self, images):
        with stock_tf_ops():
            preprocessing = self._preprocessing
            outputs = self._model.value(normalize_image(images, preprocessing.mean, preprocessing.std), training=False)
        logits = tf.cast(outputs["logits"] if isinstance(outputs, dict) else outputs, tf.float32)
        result = {"class_map": tf.argmax(logits, axis=-1, output_type=tf.int32)}
        if self._include_probabilities:
            result["probabilities"] = tf.nn.softmax(logits, axis=-1)
        return result


def convert_litert(
    model: keras.Model,
    input_size: Sequence[int] | None = None,
    quantization: str = "float32",
    calibration_images: Iterable | None = None,
    batch_size: int = 1,
    include_probabilities: bool = True,
    calibration_limit: int = 100,
) -> bytes:
    """The LiteRT flatbuffer of a semantic model (see the module docstring); :func:`export_litert` writes it.

    Example:
        >>> blob = convert_litert(kseg.models.get("fcn_resnet50_ade"), input_size=(256, 256))
        >>> blob[4:8]
        b'TFL3'
    """
    task = metadata_of(model).task
    if task != SEMANTIC:
        raise ValueError(f"{model.name} is a {task} model; LiteRT export covers semantic segmentation models")
    if quantization not in QUANTIZATIONS:
        raise ValueError(f"quantization must be one of {', '.join(QUANTIZATIONS)}, got {quantization!r}")
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
    input_size = default_input_size(model) if input_size is None else _check_input_size(input_size)
    if quantization == "int8":
        if calibration_images is None:
            raise ValueError("int8 quantization needs calibration_images (--calibration-images): images like "
                             "the ones the model will see")  # fmt: skip
        batches = list(calibration_batches(calibration_images, input_size, batch_size))[:calibration_limit]
        if not batches:
            raise ValueError(f"int8 quantization needs at least {batch_size} calibration image(s); none were given")
    module = _LiteRTModule(model, [batch_size, *input_size, 3], bool(include_probabilities))
    with stock_tf_ops():
        converter = tf.lite.TFLiteConverter.from_concrete_functions([module.serve.get_concrete_function()], module)
    if quantization == "float16":
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.target_spec.supported_types = [tf.float16]
    elif quantization == "int8":
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.representative_dataset = lambda: ([batch] for batch in batches)
    return converter.convert()


def export_litert(
    model: keras.Model,
    path: str | os.PathLike,
    input_size: Sequence[int] | None = None,
    quantization: str = "float32",
    calibration_images: Iterable | None = None,
    batch_size: int = 1,
    include_probabilities: bool = True,
    overwrite: bool = False,
    classes: Sequence[str] | None = None,
) -> Path:
    """Write ``model`` as a LiteRT file at ``path`` (``.tflite``) and its metadata beside it; returns ``path``.

    Args:
        model: a kseg semantic model (or a Keras model taking normalised NHWC images and returning logits).
        path: the ``.tflite`` file to write; the metadata goes to the same name with ``.json``.
        input_size: ``(height, width)`` the file takes; default the preset's crop size.
        quantization: ``float32``, ``float16`` or ``int8`` (see the module docstring).
        calibration_images: for ``int8``: image files or uint8 ``[H, W, 3]`` arrays (the first 100 batches are used).
        batch_size: the file's fixed batch.
        include_probabilities: add the ``probabilities`` output (``H * W * C`` floats per image).
        overwrite: replace existing files (otherwise refused).
        classes: class names for the metadata, in place of the model's own.

    Both files are written atomically, the metadata first: nothing half-written is left on failure.

    Example:
        >>> model = kseg.models.get("fcn_resnet50_ade", weights="pretrained")
        >>> export_litert(model, "fcn_ade_int8.tflite", quantization="int8", calibration_images=photos)
        PosixPath('fcn_ade_int8.tflite')
    """
    path = Path(os.fspath(path))
    if path.suffix != ".tflite":
        raise ValueError(f"a LiteRT file is named *.tflite, got {path}")
    metadata_path = litert_metadata_path(path)
    for existing in (path, metadata_path):
        if existing.exists() and not overwrite:
            raise FileExistsError(f"{existing} already exists; pass overwrite=True (--overwrite) or another path")
    own = metadata_of(model)
    if classes is not None and len(classes) != own.num_classes:
        raise ValueError(f"{len(classes)} class names given, but the model predicts {own.num_classes} classes")
    metadata = own if classes is None else own.with_classes(tuple(classes), own.dataset)
    input_size = default_input_size(model) if input_size is None else _check_input_size(input_size)
    blob = convert_litert(
        model, input_size, quantization, calibration_images, batch_size, include_probabilities
    )  # fmt: skip
    from kseg import __version__

    outputs = {"class_map": {"dtype": "int32", "shape": [batch_size, *input_size]}}
    if include_probabilities:
        outputs["probabilities"] = {"dtype": "float32", "shape": [batch_size, *input_size, metadata.num_classes]}
    description = {
        "format": LITERT_FORMAT,
        "task": metadata.task,
        "model": model.name,
        "preset": metadata.preset,
        "kseg_version": __version__,
        "tensorflow_version": tf.__version__,
        "quantization": quantization,
        "num_classes": metadata.num_classes,
        "classes": list(metadata.classes),
        "dataset": metadata.dataset,
        "preprocessing": metadata.preprocessing.to_config(),
        "input": {
            "name": "images",
            "dtype": "uint8",
            "shape": [batch_size, *input_size, 3],
            "layout": "NHWC, RGB, 0..255; resize images to this size first",
            "normalization": "inside the model: (x / 255 - mean) / std",
        },
        "outputs": outputs,
        "signature": "serving_default",
    }
    write_atomic(metadata_path, json.dumps(description, indent=2) + "\n")
    try:
        write_atomic(path, blob)
    except BaseException:
        metadata_path.unlink(missing_ok=True)
        raise
    return path


def read_litert_metadata(path: str | os.PathLike) -> dict:
    """The metadata :func:`export_litert` wrote beside ``path``.

    Example:
        >>> read_litert_metadata("fcn_ade_int8.tflite")["quantization"]
        'int8'
    """
    return json.loads(litert_metadata_path(path).read_text())
