"""The export base every task shares, in the shape of TF Model Garden's ``serving/export_base.py``.

:class:`ExportModule` owns what does not depend on the task: the two inputs
(``images``, uint8 ``[B, H, W, 3]``; ``image_bytes``, encoded images ``[B]``),
their validation inside the graph, the decoding of bytes, the signatures,
the one metadata schema and the atomic, versioned write
(:func:`write_saved_model`). A task supplies only :meth:`ExportModule.serve`
(uint8 images in, its outputs out) and its own metadata fields.

The module tracks the ``tf.Variable`` objects the traced functions capture,
as ``keras.export.ExportArchive`` does, and not the Keras model itself: with
the model tracked, TF1-style loaders (TF-Serving, ``saved_model_cli run``)
fail with "Could not find variable ..." for some of its variables.
"""

from __future__ import annotations

import json
import operator
import os
import shutil
import tempfile
import uuid
from collections.abc import Callable, Sequence
from pathlib import Path

import keras
import tensorflow as tf

from kseg.models import metadata_of
from kseg.ops.runtime import stock_tf_ops

METADATA_FILE = "kseg_metadata.json"
FORMAT = "kseg-saved-model/2"
# Declared of any rank: TF-Serving's C++ feeds take a declared shape on trust, and a declared rank would let
# the graph fold the rank check away; the graph checks the rank itself (validate_images).
IMAGES_SPEC = tf.TensorSpec(None, tf.uint8, name="images")
BYTES_SPEC = tf.TensorSpec(None, tf.string, name="image_bytes")
MAX_SIDE = 8192  # larger images are refused in the graph, before any kernel allocates for them
MAX_PIXELS = 1 << 26  # per request (batch x height x width): 64 megapixels
SAME_SIZE_MESSAGE = (
    "serving_bytes: all images of one request must have the same height and width; "
    "send images of other sizes in separate requests"
)


def _big_endian(data, start, length):
    digits = tf.cast(tf.io.decode_raw(tf.strings.substr(data, start, length), tf.uint8), tf.int64)
    return tf.reduce_sum(digits * tf.constant([256**i for i in reversed(range(length))], tf.int64))


def _little_endian(data, start, length):
    digits = tf.cast(tf.io.decode_raw(tf.strings.substr(data, start, length), tf.uint8), tf.int64)
    return tf.reduce_sum(digits * tf.constant([256**i for i in range(length)], tf.int64))


def encoded_size(data):
    """``(height, width)`` an encoded image declares in its header, read without decoding it (int64).

    JPEG (its SOF marker), PNG (IHDR), GIF (the logical screen) and BMP (the
    info header); anything else is refused. Checking it first keeps a small
    file that declares a huge image (a decompression bomb) from reaching the
    decoder, which would allocate for it.
    """
    length = tf.strings.length(data)
    signature = tf.strings.substr(data, 0, 4)
    is_png, is_gif, is_bmp = signature == b"\x89PNG", signature == b"GIF8", tf.strings.substr(data, 0, 2) == b"BM"

    def check_length(needed, kind):
        return tf.debugging.assert_greater_equal(length, needed, message=f"image_bytes: a truncated {kind} file")

    def jpeg():
        shape = tf.io.extract_jpeg_shape(data, output_type=tf.int64)
        return shape[0], shape[1]

    def png():
        with tf.control_dependencies([check_length(24, "PNG")]):
            return _big_endian(data, 20, 4), _big_endian(data, 16, 4)

    def gif():
        with tf.control_dependencies([check_length(10, "GIF")]):
            return _little_endian(data, 8, 2), _little_endian(data, 6, 2)

    def bmp():
        with tf.control_dependencies([check_length(26, "BMP")]):
            height = _little_endian(data, 22, 4)
            height = tf.where(height >= 2**31, 2**32 - height, height)  # a negative height is a top-down BMP
            return height, _little_endian(data, 18, 4)

    def unknown():
        check = tf.debugging.Assert(False, ["image_bytes: not a JPEG, PNG, GIF or BMP file"])
        with tf.control_dependencies([check]):
            return tf.constant(0, tf.int64), tf.constant(0, tf.int64)

    return tf.case(
        [(tf.io.is_jpeg(data), jpeg), (is_png, png), (is_gif, gif), (is_bmp, bmp)], default=unknown, exclusive=True
    )


def decode_image(data, max_side=MAX_SIDE):
    """One encoded image (JPEG, PNG, BMP, GIF's first frame) -> RGB uint8 ``[H, W, 3]``.

    The header's size is checked against ``max_side`` before decoding. JPEGs
    are decoded with libjpeg's accurate integer DCT, which gives the very pixels
    PIL gives (``kseg.data.preprocessing.load_image``); ``tf.io.decode_image``'s
    default (the fast DCT) differs from them on most pixels.

    Example:
        >>> png = tf.io.encode_png(tf.zeros([4, 6, 3], tf.uint8))
        >>> decode_image(png).shape
        TensorShape([4, 6, 3])
    """
    height, width = encoded_size(data)
    check = tf.debugging.assert_less_equal(
        tf.maximum(height, width), tf.constant(max_side, tf.int64),
        message=f"image_bytes: the image declares a side over {max_side} pixels",
    )  # fmt: skip
    with tf.control_dependencies([check]):
        image = tf.cond(
            tf.io.is_jpeg(data),
            lambda: tf.io.decode_jpeg(data, channels=3, dct_method="INTEGER_ACCURATE"),
            lambda: tf.io.decode_image(data, channels=3, dtype=tf.uint8, expand_animations=False),
        )
    return tf.ensure_shape(image, [None, None, 3])


def decode_batch(image_bytes):
    """A ``[B]`` string tensor of encoded images of one size -> uint8 ``[B, H, W, 3]`` (``B`` may be 0).

    Example:
        >>> png = tf.io.encode_png(tf.zeros([4, 6, 3], tf.uint8))
        >>> decode_batch(tf.stack([png, png])).shape
        TensorShape([2, 4, 6, 3])
    """
    rank = tf.debugging.assert_equal(tf.rank(image_bytes), 1, message="image_bytes must be a list of encoded images")
    with tf.control_dependencies([rank]):
        image_bytes = tf.reshape(image_bytes, [-1])

    def decode_all():
        size = tf.shape(decode_image(image_bytes[0]))[:2]

        def decode_one(data):
            image = decode_image(data)
            check = tf.debugging.assert_equal(tf.shape(image)[:2], size, message=SAME_SIZE_MESSAGE)
            with tf.control_dependencies([check]):
                return tf.identity(image)

        return tf.map_fn(decode_one, image_bytes, fn_output_signature=tf.TensorSpec([None, None, 3], tf.uint8))

    return tf.cond(tf.size(image_bytes) > 0, decode_all, lambda: tf.zeros([0, 0, 0, 3], tf.uint8))


def validate_images(images, max_side=MAX_SIDE, max_pixels=MAX_PIXELS):
    """``images`` once the graph has checked them, as uint8 ``[B, H, W, 3]``: rank 4, three channels, sides of
    1..``max_side`` pixels, at most ``max_pixels`` in all; a clear ``InvalidArgumentError`` otherwise. Nothing
    downstream runs before the checks (a convolution given a tensor of another rank aborts the process).

    Example:
        >>> validate_images(tf.zeros([2, 8, 8, 3], tf.uint8)).shape
        TensorShape([2, 8, 8, 3])
    """
    rank = tf.debugging.assert_equal(
        tf.rank(images), 4, message="images must be uint8 [batch, height, width, 3]; the rank is not 4"
    )
    with tf.control_dependencies([rank]):
        shape = tf.cast(tf.shape(images), tf.int64)
    sides = shape[1:3]
    checks = [
        tf.debugging.assert_equal(shape[3], tf.constant(3, tf.int64), message="images must have 3 channels (RGB)"),
        # An empty batch is answered with empty outputs, whatever its sides; an image has at least one pixel.
        tf.debugging.Assert(
            tf.logical_or(tf.equal(shape[0], 0), tf.reduce_all(sides > 0)),
            ["images: height and width must be at least 1"],
        ),
        tf.debugging.assert_less_equal(
            sides, tf.constant(max_side, tf.int64), message=f"images: height and width must be at most {max_side}"
        ),
        tf.debugging.assert_less_equal(
            tf.reduce_prod(shape[:3]), tf.constant(max_pixels, tf.int64),
            message=f"images: a request holds at most {max_pixels} pixels (batch x height x width)",
        ),
    ]  # fmt: skip
    with tf.control_dependencies(checks):
        images = tf.identity(images)
    return tf.ensure_shape(images, [None, None, None, 3])


class Untracked:
    """Holds an object out of TensorFlow's dependency tracking."""

    def __init__(self, value):
        self.value = value


# What the inputs must be (the graph checks it; the SavedModel declares any rank, see IMAGES_SPEC).
INPUT_CONTRACT = {
    "images": {"dtype": "uint8", "shape": [-1, -1, -1, 3]},
    "image_bytes": {"dtype": "string", "shape": [-1]},
}


def _tensor_info(spec):
    shape = [-1 if d is None else int(d) for d in spec.shape] if spec.shape.rank is not None else None
    return {"dtype": spec.dtype.name, "shape": shape}


class ExportModule(tf.Module):
    """The serving functions of one model and the variables they read (what the SavedModel holds).

    Subclasses implement :meth:`serve` and may add fields to :meth:`task_metadata`.

    Args:
        model: the Keras model; its ``metadata`` gives the task, classes and preprocessing.
        xla: compile the model part with XLA (``jit_compile=True``). TF-Serving's
            stock builds, its GPU images included, lack XLA and cannot run such
            functions; off, the graph carries no XLA attribute at all.
        classes: class names for the metadata in place of the model's own.

    Example:
        >>> class LogitsExport(ExportModule):  # a semantic export that returns the raw logits
        ...     task = "semantic_segmentation"
        ...     def serve(self, images):
        ...         return {"logits": self.model_call(kseg.data.normalize_image(images))}
        >>> model = kseg.models.get("fcn_resnet50_ade", weights="pretrained")
        >>> write_saved_model(lambda: LogitsExport(model), "serving/fcn_logits")
        PosixPath('serving/fcn_logits/1')
    """

    task: str

    def __init__(self, model: keras.Model, xla: bool = False, classes: Sequence[str] | None = None):
        super().__init__(name=f"kseg_{self.task}_serving")
        self._keras_model = Untracked(model)
        self.xla = bool(xla)
        own = metadata_of(model)
        if own.task != self.task:
            raise ValueError(f"{model.name} is a {own.task} model, not a {self.task} one")
        if classes is not None and len(classes) != own.num_classes:
            raise ValueError(f"{len(classes)} class names given, but the model predicts {own.num_classes} classes")
        self._metadata = own if classes is None else own.with_classes(classes, own.dataset)
        # The model part only: decoding has string ops XLA cannot compile.
        self.model_call = tf.function(self.call_model, jit_compile=True if self.xla else None)
        self.serving_default = tf.function(self._serve_images, input_signature=[IMAGES_SPEC])
        self.serving_bytes = tf.function(self._serve_bytes, input_signature=[BYTES_SPEC])
        captured = {}
        for function in self.signatures().values():
            for variable in function.get_concrete_function().variables:
                captured.setdefault(id(variable), variable)
        self.model_variables = list(captured.values())

    @property
    def model(self) -> keras.Model:
        return self._keras_model.value

    @property
    def metadata(self):
        """The model's :class:`kseg.presets.ModelMetadata` (with the class names given, if any)."""
        return self._metadata

    def call_model(self, *args, **kwargs):
        """The model's own call, the part :attr:`xla` compiles."""
        return self.model(*args, training=False, **kwargs)

    def serve(self, images):
        """uint8 ``[B, H, W, 3]`` (checked, ``B`` at least 1) -> the signature's outputs."""
        raise NotImplementedError

    def empty_outputs(self, images):
        """The outputs of an empty batch (``images`` ``[0, H, W, 3]``): each output with no rows."""
        raise NotImplementedError

    def _serve_checked(self, images):
        images = validate_images(images)
        return tf.cond(tf.shape(images)[0] > 0, lambda: self.serve(images), lambda: self.empty_outputs(images))

    def _serve_images(self, images):
        return self._serve_checked(images)

    def _serve_bytes(self, image_bytes):
        return self._serve_checked(decode_batch(image_bytes))

    def signatures(self) -> dict:
        return {"serving_default": self.serving_default, "serving_bytes": self.serving_bytes}

    def task_metadata(self) -> dict:
        """Fields of the task's own; added to the shared schema."""
        return {}

    def describe(self, version: int) -> dict:
        """The metadata file: one schema for every task (``assets/kseg_metadata.json``)."""
        from kseg import __version__

        metadata = self.metadata
        signatures = {}
        for name, function in self.signatures().items():
            concrete = function.get_concrete_function()
            inputs = {spec.name: INPUT_CONTRACT[spec.name] for spec in concrete.structured_input_signature[0]}
            outputs = {key: _tensor_info(spec) for key, spec in concrete.structured_outputs.items()}
            signatures[name] = {"inputs": inputs, "outputs": outputs}
        signatures["serving_bytes"]["notes"] = (
            "encoded JPEG/PNG/BMP/GIF images; all images of one request must share their size"
        )
        return {
            "format": FORMAT,
            "task": metadata.task,
            "model": self.model.name,
            "preset": metadata.preset,
            "version": version,
            "kseg_version": __version__,
            "tensorflow_version": tf.__version__,
            "xla": self.xla,
            "precision": getattr(getattr(self.model, "dtype_policy", None), "name", "float32"),
            "num_classes": metadata.num_classes,
            "classes": list(metadata.classes),
            "dataset": metadata.dataset,
            "preprocessing": metadata.preprocessing.to_config(),
            "input": {
                "layout": "NHWC, RGB",
                "values": f"uint8, 0..255; height and width 1..{MAX_SIDE}, at most {MAX_PIXELS} pixels a request",
                "validation": "inside the graph: a request of another rank, channel count or size is refused "
                "with InvalidArgumentError; an empty batch is answered with empty outputs",
                "normalization": "inside the graph: (x / 255 - mean) / std",
            },
            "signatures": signatures,
            **self.task_metadata(),
        }


def check_version(version) -> int:
    if isinstance(version, bool):
        raise TypeError(f"version must be an integer, got {version!r}")
    try:
        version = operator.index(version)
    except TypeError:
        raise TypeError(f"version must be an integer, got {version!r}") from None
    if version < 0:
        raise ValueError(f"version must be a non-negative integer (TF-Serving's version folders), got {version!r}")
    return version


def write_saved_model(
    make_module: Callable[[], ExportModule], export_dir: str | os.PathLike, version: int = 1, overwrite: bool = False
) -> Path:
    """Trace ``make_module()`` (an :class:`ExportModule`) and write it to ``export_dir/{version}/``, atomically.

    The SavedModel is written into a hidden temporary folder beside the version
    folder (``.{version}.*.tmp``, which TF-Serving ignores: its name is not a
    number) and renamed into place when complete, so a server polling
    ``export_dir`` never loads a partial export. Tracing and saving happen
    within :func:`kseg.ops.runtime.stock_tf_ops`: stock TF-Serving runs the graph.
    An existing version folder is refused unless ``overwrite``.

    Example:
        >>> from kseg.export import SemanticExportModule, write_saved_model
        >>> model = kseg.models.get("fcn_resnet50_ade", weights="pretrained")
        >>> write_saved_model(lambda: SemanticExportModule(model, include_probabilities=False), "serving/fcn", 2)
        PosixPath('serving/fcn/2')
    """
    version = check_version(version)
    export_dir = Path(os.fspath(export_dir))
    final = export_dir / str(version)
    if final.exists() and not overwrite:
        raise FileExistsError(f"{final} already exists; pass overwrite=True (--overwrite) or another version")
    with stock_tf_ops():
        module = make_module()
        metadata = module.describe(version)
    export_dir.mkdir(parents=True, exist_ok=True)
    # Not tempfile.mkdtemp: its folder is private (0700), and a server running as another user could not read it.
    tmp = export_dir / f".{version}.{uuid.uuid4().hex[:12]}.tmp"
    tmp.mkdir()
    try:
        with stock_tf_ops():
            tf.saved_model.save(module, str(tmp), signatures=module.signatures())
        assets = tmp / "assets"
        assets.mkdir(exist_ok=True)
        (assets / METADATA_FILE).write_text(json.dumps(metadata, indent=2) + "\n")
        _move_into_place(tmp, final, overwrite)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return final


def _move_into_place(tmp, final, overwrite):
    """Rename ``tmp`` to ``final``; with ``overwrite`` the old folder goes only once the new one is in place."""
    if not (overwrite and final.exists()):
        try:
            os.rename(tmp, final)
        except OSError as error:  # created meanwhile by another export
            raise FileExistsError(f"{final} appeared during the export: {error}") from error
        return
    old = Path(tempfile.mkdtemp(dir=final.parent, prefix=f".{final.name}.", suffix=".old"))
    os.rename(final, old / final.name)
    try:
        os.rename(tmp, final)
    except BaseException:
        os.rename(old / final.name, final)
        shutil.rmtree(old, ignore_errors=True)
        raise
    shutil.rmtree(old, ignore_errors=True)


def read_metadata(version_dir: str | os.PathLike) -> dict:
    """The metadata of an exported version folder, in the current schema; kseg's first format is read too.

    Example:
        >>> from kseg.export import read_metadata
        >>> metadata = read_metadata("serving/fcn/2")
        >>> metadata["task"], metadata["num_classes"], metadata["probabilities"]
        ('semantic_segmentation', 150, False)
    """
    metadata = json.loads((Path(version_dir) / "assets" / METADATA_FILE).read_text())
    if metadata.get("format") == "kseg-saved-model/1":  # semantic exports had no task field
        metadata.setdefault("task", "semantic_segmentation")
    return metadata
