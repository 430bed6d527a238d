"""Turning image files and uint8 arrays into model inputs, as GluonCV does.

GluonCV's ``ToTensor`` divides by 255 and ``Normalize`` subtracts the ImageNet
mean and divides by the std; kseg keeps NHWC.
"""

import numpy as np
import tensorflow as tf
from PIL import Image

from kseg.presets import IMAGENET_MEAN, IMAGENET_STD


def load_image(path):
    """An RGB uint8 ``[H, W, 3]`` array, read with PIL as GluonCV does (``convert('RGB')``)."""
    try:
        with Image.open(path) as image:
            return np.asarray(image.convert("RGB"), dtype=np.uint8)
    except FileNotFoundError:
        raise FileNotFoundError(f"No image at {path}") from None
    except OSError as error:
        raise ValueError(f"Cannot read {path} as an image: {error}") from None


def check_image(image, name="image"):
    """Check an RGB image (``[H, W, 3]`` or ``[B, H, W, 3]``) and say what is wrong with it."""
    shape = tuple(image.shape)
    if len(shape) not in (3, 4) or shape[-1] != 3:
        raise ValueError(f"{name} must be RGB, [H, W, 3] or [B, H, W, 3], got shape {shape}")
    return image


def normalize_image(image, mean=IMAGENET_MEAN, std=IMAGENET_STD):
    """uint8 RGB (``[..., H, W, 3]``, numpy or tensor) -> float32 ``(x / 255 - mean) / std``.

    The arithmetic is GluonCV's order (scale, subtract, divide) in float32, so
    the inputs equal GluonCV's to the last bit.
    """
    image = check_image(tf.convert_to_tensor(image))
    if image.dtype != tf.uint8:
        raise TypeError(f"normalize_image expects uint8 RGB (0..255), got {image.dtype.name}")
    x = tf.cast(image, tf.float32) / 255.0
    return (x - tf.constant(mean, tf.float32)) / tf.constant(std, tf.float32)
