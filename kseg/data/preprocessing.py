"""Turning image files and uint8 arrays into model inputs, as GluonCV does.

GluonCV's ``ToTensor`` divides by 255 and ``Normalize`` subtracts the ImageNet
mean and divides by the std; kseg keeps NHWC.

One decoding rule serves everything that reads an image file (the data-set
readers, the predictors, ``kseg predict``) and the SavedModel's
``serving_bytes`` alike, so the same bytes give the same pixels everywhere:
the pixels as stored, as RGB uint8. Grey is replicated, a palette expanded,
alpha dropped (not composited), 16-bit samples reduced to their high byte
(as TensorFlow's decoders do), CMYK converted as libjpeg converts it. EXIF
orientation is ignored, as GluonCV (PIL's ``convert('RGB')``) and TensorFlow's
decoders ignore it: a photo stored sideways is predicted sideways
(:func:`exif_orientation` tells). A file declaring more than ``max_pixels``
(a decompression bomb) is refused before it is decoded.
"""

import numpy as np
import tensorflow as tf
from PIL import Image

from kseg.presets import IMAGENET_MEAN, IMAGENET_STD

MAX_IMAGE_PIXELS = 89_478_485  # PIL's own bomb threshold (Image.MAX_IMAGE_PIXELS): about 9459 x 9459
_SIXTEEN_BIT = ("I;16", "I;16B", "I;16L", "I;16N", "I")
_ORIENTATION_TAG = 0x0112


def image_pixels(image):
    """The decoding rule (see the module docstring) on an open ``PIL.Image``: RGB uint8 ``[H, W, 3]``."""
    if image.mode in _SIXTEEN_BIT:  # 16-bit (or 32-bit integer) grey: its high byte, as TensorFlow
        grey = np.asarray(image).astype(np.int64) >> 8
        return np.repeat(np.clip(grey, 0, 255).astype(np.uint8)[..., None], 3, axis=-1)
    return np.asarray(image.convert("RGB"), dtype=np.uint8)


def load_image(path, max_pixels=MAX_IMAGE_PIXELS):
    """An RGB uint8 ``[H, W, 3]`` array of an image file, by kseg's one decoding rule (the module docstring).

    Example:
        >>> image = load_image("street.jpg")   # uint8 [H, W, 3]
    """
    try:
        with Image.open(path) as image:
            width, height = image.size
            if max_pixels and width * height > max_pixels:
                raise ValueError(
                    f"{path} declares {width} x {height} pixels, over the limit of {max_pixels:,} "
                    f"(a decompression bomb, or an image too large to predict at once)"
                )
            return image_pixels(image)
    except FileNotFoundError:
        raise FileNotFoundError(f"No image at {path}") from None
    except Image.DecompressionBombError as error:
        raise ValueError(f"{path}: {error}") from None
    except OSError as error:
        raise ValueError(f"Cannot read {path} as an image: {error}") from None


def exif_orientation(path):
    """The EXIF orientation tag of an image file (1: upright, 3, 6, 8: rotated), or None without one."""
    try:
        with Image.open(path) as image:
            return image.getexif().get(_ORIENTATION_TAG)
    except (OSError, ValueError):
        return None


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
