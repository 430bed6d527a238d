"""What every kseg model takes: float NHWC RGB images, normalised with its mean and std. Checked at the door.

uint8 pixels would otherwise run through a model without complaint and come
out as logits a hundred times too large; a tensor of another rank would reach
a convolution, which on oneDNN aborts the whole process. An empty batch is
run as one image of zeros and its outputs cut back to none
(:func:`on_nonempty_batch`): oneDNN's convolutions (TensorFlow 2.21 on CPUs
where it is on) answer an empty batch with a tensor of the input's shape, not
the output's, and the next layer then fails.
"""

from __future__ import annotations

import keras
import tensorflow as tf

LAYOUTS = {3: "[H, W, 3]", 4: "[B, H, W, 3]"}


def check_images(images, what: str = "images", ranks: tuple[int, ...] = (4,)):
    """``images`` as a tensor once its dtype, rank and channels are right; a one-line error otherwise.

    Example:
        >>> check_images(np.zeros((1, 8, 8, 3), "float32")).shape
        TensorShape([1, 8, 8, 3])
        >>> check_images(np.zeros((1, 8, 8, 3), "uint8"))
        Traceback (most recent call last):
        TypeError: images must be float images normalised with the model's mean and std ...
    """
    if not isinstance(images, keras.KerasTensor):
        images = tf.convert_to_tensor(images)
    dtype = keras.backend.standardize_dtype(images.dtype)
    if not keras.backend.is_float_dtype(dtype):
        raise TypeError(
            f"{what} must be float images normalised with the model's mean and std "
            f"(kseg.data.normalize_image(uint8_rgb)), got {dtype}"
        )
    shape = tuple(images.shape)
    if len(shape) not in ranks or shape[-1] != 3:
        layouts = " or ".join(LAYOUTS[r] for r in ranks)
        raise ValueError(f"{what} must be RGB, {layouts}, got shape {shape}")
    return images


class ImageModel:
    """Mixin for kseg's functional models that take images: :func:`check_images` at the door, and an empty
    batch answered with empty outputs (:func:`on_nonempty_batch`)."""

    def call(self, inputs, training=None, mask=None, **kwargs):
        images = check_images(inputs, f"{self.name}'s images")
        forward = super().call
        return on_nonempty_batch(lambda x: forward(x, training=training, mask=mask, **kwargs), images)


def on_nonempty_batch(compute, inputs):
    """``compute(inputs)``, also when ``inputs`` has no rows: then ``compute`` runs on one row of zeros and each
    output is cut back to no rows. Rows known to be there (a static size above 0) cost nothing; an unknown
    count costs a ``tf.cond`` on the input and a slice of each output.

    Why: oneDNN's convolutions return a tensor of their input's shape for an empty batch (TensorFlow 2.21,
    CPUs where oneDNN is on), so the layer after them fails or, worse, computes on the wrong shape.

    Example:
        >>> conv = keras.layers.Conv2D(8, 3, strides=2)
        >>> on_nonempty_batch(conv, tf.zeros([0, 22, 30, 3])).shape
        TensorShape([0, 10, 14, 8])
    """
    if isinstance(inputs, keras.KerasTensor):
        return compute(inputs)
    rows = inputs.shape[0]
    if rows is not None and rows > 0:
        return compute(inputs)
    count = tf.shape(inputs)[0]
    if rows == 0 and inputs.shape[1:].is_fully_defined():
        padded = tf.zeros([1, *inputs.shape[1:]], inputs.dtype)
    else:
        one = tf.zeros(tf.concat([[1], tf.shape(inputs)[1:]], axis=0), inputs.dtype)
        padded = tf.cond(count > 0, lambda: inputs, lambda: one)
    return tf.nest.map_structure(lambda output: output[:count], compute(padded))
