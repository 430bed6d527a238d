"""Bilinear resizing with ``align_corners=True``, as MXNet's ``BilinearResize2D``.

MXNet maps output pixel ``o`` to input coordinate ``o * (in - 1) / (out - 1)``
(corner pixels aligned, no half-pixel offset). TF's ``tf.image.resize`` cannot
express that, and ``ResizeBilinear``'s gradient fails under XLA with mixed
precision, so this is written with two gathers and a lerp: it works for any
dtype, any (dynamic) size, and differentiates through gather.
"""

import tensorflow as tf


def _interpolation(in_size, out_size, dtype):
    """Left indices, right indices and right weights along one axis."""
    in_f = tf.cast(in_size, tf.float32)
    out_f = tf.cast(out_size, tf.float32)
    # MXNet: rheight = (in - 1) / (out - 1) when out > 1, else 0.
    scale = tf.where(out_size > 1, (in_f - 1.0) / tf.maximum(out_f - 1.0, 1.0), 0.0)
    coord = tf.range(out_f) * scale
    left = tf.cast(tf.floor(coord), tf.int32)
    left = tf.minimum(left, in_size - 1)
    right = tf.minimum(left + 1, in_size - 1)
    weight = coord - tf.cast(left, tf.float32)
    return left, right, tf.cast(weight, dtype)


def resize_bilinear_align_corners(images, size):
    """Resize NHWC ``images`` to ``size = (height, width)`` with aligned corners.

    ``size`` may hold Python ints or scalar tensors.
    """
    images = tf.convert_to_tensor(images)
    dtype = images.dtype
    shape = tf.shape(images)
    out_h, out_w = size
    top, bottom, wy = _interpolation(shape[1], out_h, dtype)
    left, right, wx = _interpolation(shape[2], out_w, dtype)

    rows_top = tf.gather(images, top, axis=1)
    rows_bottom = tf.gather(images, bottom, axis=1)
    wy = tf.reshape(wy, [1, -1, 1, 1])
    rows = rows_top + (rows_bottom - rows_top) * wy

    cols_left = tf.gather(rows, left, axis=2)
    cols_right = tf.gather(rows, right, axis=2)
    wx = tf.reshape(wx, [1, 1, -1, 1])
    return cols_left + (cols_right - cols_left) * wx
