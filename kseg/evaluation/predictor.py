"""Single-scale inference, and the compiled-call cache every predictor shares.

A model takes images of any size, but XLA compiles for static shapes.
:class:`CompiledCall` makes that explicit: with ``jit_compile=True`` (or
``static_shapes=True``) it keeps one ``tf.function`` per input shape, each
with a fixed input signature, so one shape means exactly one trace (and one
XLA compilation), and ``traces`` shows what was compiled. Otherwise (the
better choice for a semantic model on a CPU, where XLA is no faster) a single
shape-relaxed ``tf.function`` serves every size.
"""

from __future__ import annotations

import collections
from collections.abc import Callable
from typing import Any

import keras
import tensorflow as tf

from kseg.models.inputs import check_images
from kseg.ops.runtime import resolve_jit


def normalized_images(images, ranks=(3, 4), what="images"):
    """``images`` as float32, refusing what cannot be normalised RGB (:func:`kseg.models.inputs.check_images`)."""
    return tf.cast(check_images(images, what, ranks), tf.float32)


def main_logits(outputs):
    """The logits of a model that may also return auxiliary ones."""
    return outputs["logits"] if isinstance(outputs, dict) else outputs


class CompiledCall:
    """``fn(x)`` for float32 ``x``, traced (and XLA-compiled) once per static shape.

    Args:
        fn: a function of one float32 tensor, e.g. a model call.
        jit_compile: True for XLA, False for a plain graph, None for XLA on GPUs and TPUs.
        static_shapes: trace once per input shape even without XLA (models
            that size buffers from static shapes: Mask R-CNN).

    Example:
        >>> call = CompiledCall(lambda x: 2.0 * x, jit_compile=False)
        >>> float(call(tf.ones([1, 2, 2, 3]))[0, 0, 0, 0])
        2.0
    """

    def __init__(self, fn: Callable[[tf.Tensor], Any], jit_compile: bool | None = True, static_shapes: bool = False):
        self._fn = fn
        self.jit_compile = resolve_jit(jit_compile)
        self.static_shapes = bool(static_shapes) or self.jit_compile
        self.traces = collections.Counter()  # input shape at trace time -> number of traces
        self._by_shape = {}
        self._relaxed = tf.function(self._traced, reduce_retracing=True)

    def _traced(self, x):
        self.traces[tuple(x.shape)] += 1  # runs only while tracing
        return self._fn(x)

    @property
    def num_traces(self):
        return sum(self.traces.values())

    def __call__(self, x):
        x = tf.convert_to_tensor(x, tf.float32)
        if not self.static_shapes:
            return self._relaxed(x)
        shape = tuple(x.shape)
        function = self._by_shape.get(shape)
        if function is None:
            spec = tf.TensorSpec(shape, tf.float32)
            function = tf.function(self._traced, jit_compile=self.jit_compile, input_signature=[spec])
            self._by_shape[shape] = function
        return function(x)


class _Compiled:
    """What predictors share: ``self._call`` is their :class:`CompiledCall`."""

    @property
    def jit_compile(self):
        return self._call.jit_compile

    @property
    def traces(self):
        """Input shape -> number of traces (one each under XLA)."""
        return self._call.traces


class Predictor(_Compiled):
    """Single-scale prediction: logits at the image size for a batch.

    Args:
        model: a kseg semantic model (NHWC normalised float images in, logits
            ``[B, H, W, C]`` at the input size out; aux outputs are dropped).
        jit_compile: True (XLA, one compilation per input shape), False, or
            None for XLA on GPUs and TPUs.

    Example:
        >>> import numpy as np
        >>> predictor = Predictor(kseg.models.get("fcn_resnet50_ade", weights="pretrained"), jit_compile=None)
        >>> predictor.predict(kseg.data.normalize_image(np.zeros((480, 640, 3), np.uint8))).shape
        TensorShape([480, 640])
    """

    def __init__(self, model: keras.Model, jit_compile: bool | None = True):
        self.model = model
        self._call = CompiledCall(lambda x: main_logits(model(x, training=False)), jit_compile)

    def logits(self, images):
        """``[B, H, W, C]`` float32 logits for ``[B, H, W, 3]`` (or one ``[H, W, 3]``) images."""
        images = normalized_images(images)
        if images.shape.rank == 3:
            return self._call(images[None])[0]
        return self._call(images)

    def predict(self, images):
        """Class indices (int32), ``[B, H, W]`` or ``[H, W]``."""
        return tf.argmax(self.logits(images), axis=-1, output_type=tf.int32)
