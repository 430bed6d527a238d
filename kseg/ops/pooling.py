"""Adaptive average pooling with PyTorch/MXNet bin edges.

Bin ``i`` of ``n`` over a length ``L`` covers ``[floor(i*L/n), ceil((i+1)*L/n))``;
bins overlap when ``L`` is not a multiple of ``n`` and repeat when ``L < n``.
The pooling is an einsum with two averaging matrices built from the runtime
shape, so it stays dynamic-shape friendly and XLA compilable.
"""

import tensorflow as tf


def _averaging_matrix(length, bins, dtype):
    """A ``[bins, length]`` matrix whose row ``i`` averages bin ``i``."""
    i = tf.range(bins)
    start = (i * length) // bins
    end = -((-(i + 1) * length) // bins)  # ceil((i + 1) * L / n)
    pos = tf.range(length)[tf.newaxis, :]
    inside = (pos >= start[:, tf.newaxis]) & (pos < end[:, tf.newaxis])
    counts = tf.cast(end - start, tf.float32)[:, tf.newaxis]
    return tf.cast(tf.cast(inside, tf.float32) / counts, dtype)


def adaptive_average_pool2d(images, output_size):
    """Pool NHWC ``images`` to ``output_size = (bins_h, bins_w)``."""
    images = tf.convert_to_tensor(images)
    shape = tf.shape(images)
    bins_h, bins_w = output_size
    rows = _averaging_matrix(shape[1], bins_h, images.dtype)
    cols = _averaging_matrix(shape[2], bins_w, images.dtype)
    return tf.einsum("ih,bhwc,jw->bijc", rows, images, cols)
