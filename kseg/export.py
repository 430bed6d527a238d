"""Export a segmentation model as a SavedModel for TF-Serving.

    from kseg.export import export_saved_model
    export_saved_model(kseg.models.get("psp_resnet101_ade", weights="pretrained"), "serving/psp_resnet101_ade")

writes TF-Serving's versioned layout ``serving/psp_resnet101_ade/1/`` (``saved_model.pb``,
``variables/``, ``assets/kseg_metadata.json``). The graph takes RGB uint8 pixels
(or encoded JPEG/PNG bytes) and does the ImageNet normalisation itself, so a
client sends plain images and gets class indices back. See
:func:`export_saved_model` for the signatures.
"""

import json
import operator
import os
import shutil
import tempfile
import uuid
from pathlib import Path

import tensorflow as tf

from kseg.data.preprocessing import IMAGENET_MEAN, IMAGENET_STD, normalize_image
from kseg.ops.conv import direct_convolutions

METADATA_FILE = "kseg_metadata.json"
IMAGES_SPEC = tf.TensorSpec([None, None, None, 3], tf.uint8, name="images")
BYTES_SPEC = tf.TensorSpec([None], tf.string, name="image_bytes")
SAME_SIZE_MESSAGE = (
    "serving_bytes: all images of one request must have the same height and width; "
    "send images of other sizes in separate requests"
)


def decode_image(data):
    """One encoded image (JPEG, PNG, BMP, GIF's first frame) -> RGB uint8 ``[H, W, 3]``.

    JPEGs are decoded with libjpeg's accurate integer DCT, which gives the very
    pixels PIL gives (``kseg.data.preprocessing.load_image``); ``tf.io.decode_image``'s
    default (the fast DCT) differs from them on most pixels.
    """
    image = tf.cond(
        tf.io.is_jpeg(data),
        lambda: tf.io.decode_jpeg(data, channels=3, dct_method="INTEGER_ACCURATE"),
        lambda: tf.io.decode_image(data, channels=3, dtype=tf.uint8, expand_animations=False),
    )
    return tf.ensure_shape(image, [None, None, 3])


def decode_batch(image_bytes):
    """A ``[B]`` string tensor of encoded images of one size -> uint8 ``[B, H, W, 3]``."""
    tf.debugging.assert_positive(tf.size(image_bytes), message="serving_bytes: image_bytes holds no image")
    size = tf.shape(decode_image(image_bytes[0]))[:2]

    def decode_one(data):
        image = decode_image(data)
        check = tf.debugging.assert_equal(tf.shape(image)[:2], size, message=SAME_SIZE_MESSAGE)
        with tf.control_dependencies([check]):
            return tf.identity(image)

    return tf.map_fn(decode_one, image_bytes, fn_output_signature=tf.TensorSpec([None, None, 3], tf.uint8))


class _Untracked:
    """Holds an object out of TensorFlow's dependency tracking."""

    def __init__(self, value):
        self.value = value


class ServingModule(tf.Module):
    """The serving functions and the variables they read (what the SavedModel holds).

    The module tracks the ``tf.Variable`` objects the traced functions capture,
    as ``keras.export.ExportArchive`` does, and not the Keras model itself:
    with the model tracked, TF1-style loaders (TF-Serving, ``saved_model_cli
    run``) fail with "Could not find variable ..." for some of its variables.
    """

    def __init__(self, model, xla=False, include_probabilities=True):
        super().__init__(name="kseg_serving")
        self._keras_model = _Untracked(model)
        self._include_probabilities = bool(include_probabilities)
        # The model part only: decoding has string ops XLA cannot compile.
        self.predict = tf.function(self._predict, input_signature=[IMAGES_SPEC], jit_compile=True if xla else None)
        self.serving_default = tf.function(self._serve_images, input_signature=[IMAGES_SPEC])
        self.serving_bytes = tf.function(self._serve_bytes, input_signature=[BYTES_SPEC])
        captured = {}
        for function in (self.serving_default, self.serving_bytes):
            for variable in function.get_concrete_function().variables:
                captured.setdefault(id(variable), variable)
        self.model_variables = list(captured.values())

    @property
    def model(self):
        return self._keras_model.value

    def logits(self, images):
        """uint8 RGB ``[B, H, W, 3]`` -> float32 logits ``[B, H, W, C]``."""
        outputs = self.model(normalize_image(images), training=False)
        if isinstance(outputs, dict):
            if "logits" not in outputs:
                raise ValueError(f"The model returns a dict without 'logits' (keys: {sorted(outputs)})")
            outputs = outputs["logits"]
        return tf.cast(outputs, tf.float32)

    def _predict(self, images):
        logits = self.logits(images)
        outputs = {"class_map": tf.argmax(logits, axis=-1, output_type=tf.int32)}
        if self._include_probabilities:
            outputs["probabilities"] = tf.nn.softmax(logits, axis=-1)
        return outputs

    def _serve_images(self, images):
        return self.predict(images)

    def _serve_bytes(self, image_bytes):
        return self.predict(decode_batch(image_bytes))

    def signatures(self):
        return {"serving_default": self.serving_default, "serving_bytes": self.serving_bytes}


def _check_version(version):
    if isinstance(version, bool):
        raise TypeError(f"version must be an integer, got {version!r}")
    try:
        version = operator.index(version)
    except TypeError:
        raise TypeError(f"version must be an integer, got {version!r}") from None
    if version < 0:
        raise ValueError(f"version must be a non-negative integer (TF-Serving's version folders), got {version!r}")
    return version


def _num_classes(module):
    num = getattr(module.model, "num_classes", None)
    if num is None:
        logits = tf.function(module.logits).get_concrete_function(IMAGES_SPEC).structured_outputs
        num = logits.shape[-1]
    return None if num is None else int(num)


def _zoo_classes(model, num_classes):
    from kseg.models.zoo import SEMANTIC_ZOO

    entry = SEMANTIC_ZOO.get(model.name)
    if entry is not None and entry.num_classes == num_classes:
        return list(entry.classes)
    return None


def _metadata(model, num_classes, classes, version, xla, include_probabilities):
    from kseg import __version__

    images = {"images": {"dtype": "uint8", "shape": [-1, -1, -1, 3]}}
    outputs = {"class_map": {"dtype": "int32", "shape": [-1, -1, -1]}}
    if include_probabilities:
        outputs["probabilities"] = {"dtype": "float32", "shape": [-1, -1, -1, num_classes or -1]}
    return {
        "format": "kseg-saved-model/1",
        "kseg_version": __version__,
        "tensorflow_version": tf.__version__,
        "model": model.name,
        "version": version,
        "num_classes": num_classes,
        "classes": classes,
        "xla": bool(xla),
        "input": {
            "layout": "NHWC, RGB",
            "values": "uint8, 0..255; any height and width",
            "normalization": "inside the graph: (x / 255 - mean) / std",
            "mean": list(IMAGENET_MEAN),
            "std": list(IMAGENET_STD),
        },
        "signatures": {
            "serving_default": {"inputs": images, "outputs": outputs},
            "serving_bytes": {
                "inputs": {"image_bytes": {"dtype": "string", "shape": [-1]}},
                "outputs": outputs,
                "notes": "encoded JPEG/PNG/BMP/GIF images; all images of one request must share their size",
            },
        },
    }


def export_saved_model(
    model,
    export_dir,
    version=1,
    xla=False,
    include_probabilities=True,
    overwrite=False,
    classes=None,
):
    """Write ``model`` as a TF-Serving SavedModel in ``export_dir/{version}/``; returns that path.

    Signatures (tag ``serve``):

    - ``serving_default``: ``images``, uint8 ``[B, H, W, 3]`` RGB in 0..255, any
      ``H`` and ``W`` (normalised in the graph as ``normalize_image`` does) ->
      ``class_map`` int32 ``[B, H, W]`` (argmax over the classes) and, with
      ``include_probabilities``, ``probabilities`` float32 ``[B, H, W, C]``
      (softmax of the logits).
    - ``serving_bytes``: ``image_bytes``, string ``[B]`` of encoded images (JPEG,
      PNG, BMP, GIF's first frame; grey and RGBA become RGB) -> the same outputs.
      The images of one request must share their height and width (they are
      stacked into one batch); a request mixing sizes fails with a message
      saying so, and images of other sizes go in separate requests. TF-Serving's
      REST API takes them as ``{"b64": "..."}``.

    Probabilities are ``H * W * C`` floats per image (150 classes at 512 x 512:
    157 MB of JSON); they are computed only when fetched. gRPC clients ask for
    the class map alone with ``PredictRequest.output_filter: "class_map"``.
    REST returns every output of a signature, so for REST clients export with
    ``include_probabilities=False``, which leaves ``probabilities`` out of both
    signatures.

    Args:
        model: a :class:`~kseg.models.SemanticSegmenter` (or any Keras model taking
            normalised NHWC float images and returning logits, or a dict with
            ``"logits"``).
        export_dir: the model's base folder, which TF-Serving's ``--model_base_path``
            points to (``/models/NAME`` in its Docker image).
        version: the version folder's number (a non-negative integer).
        xla: compile the model part with XLA (``jit_compile=True``; decoding
            stays outside). TF-Serving's stock builds, its GPU images included,
            lack XLA and cannot run such functions; use it only with a server
            built with XLA. Off, the graph carries no XLA attribute at all.
        include_probabilities: add the ``probabilities`` output.
        overwrite: replace an existing version folder (otherwise refused).
        classes: class names for the metadata; None takes the zoo entry's when
            the model's name and class count are a zoo entry's.

    The SavedModel is written into a hidden temporary folder beside the version
    folder (``.{version}.*.tmp``, which TF-Serving ignores: its name is not a
    number) and renamed into place when complete, so a server polling
    ``export_dir`` never loads a partial export. ``assets/kseg_metadata.json``
    records the model name, classes and input contract. The SavedModel needs
    neither kseg nor Keras to load (``tf.saved_model.load``).
    """
    version = _check_version(version)
    export_dir = Path(os.fspath(export_dir))
    final = export_dir / str(version)
    if final.exists() and not overwrite:
        raise FileExistsError(f"{final} already exists; pass overwrite=True (--overwrite) or another version")

    # TF-Serving's stock builds lack XLA: trace with plain convolutions (see kseg.ops.conv).
    with direct_convolutions():
        module = ServingModule(model, xla=xla, include_probabilities=include_probabilities)
    num_classes = _num_classes(module)
    if classes is None:
        classes = _zoo_classes(model, num_classes)
    elif num_classes is not None and len(classes) != num_classes:
        raise ValueError(f"{len(classes)} class names given, but the model predicts {num_classes} classes")
    metadata = _metadata(model, num_classes, classes, version, xla, include_probabilities)

    export_dir.mkdir(parents=True, exist_ok=True)
    # Not tempfile.mkdtemp: its folder is private (0700), and a server running as another user could not read it.
    tmp = export_dir / f".{version}.{uuid.uuid4().hex[:12]}.tmp"
    tmp.mkdir()
    try:
        with direct_convolutions():
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
