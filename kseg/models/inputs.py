"""What every kseg model takes: float NHWC RGB images, normalised with its mean and std. Checked at the door.

uint8 pixels would otherwise run through a model without complaint and come
out as logits a hundred times too large; a tensor of another rank would reach
a convolution, which on oneDNN aborts the whole process.
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
