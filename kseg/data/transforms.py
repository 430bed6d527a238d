"""GluonCV's segmentation augmentation, bit for bit, and its tf.data wrapper.

GluonCV transforms PIL images (``SegmentationDataset._sync_transform`` and
``_val_sync_transform`` in ``gluoncv/data/segbase.py``); kseg runs the same
PIL operations in the same order, so with the same random draws the uint8
crops are identical:

* train: mirror with p=0.5; the **long** side to ``randint(base/2, 2 base)``
  (BILINEAR image, NEAREST mask); pad bottom/right to the crop when the short
  side is smaller (image 0, mask: raw 0); a random crop; Gaussian blur with
  p=0.5 and radius ``U(0, 1)``;
* val: the short side to the crop, a centre crop;
* testval: the image as it is.

The random draws use a ``random.Random`` in GluonCV's call order
(``random``, ``randint``, ``randint``, ``randint``, ``random``, ``random``), so a
generator seeded like GluonCV's module-level ``random`` gives the same crop.

GluonCV pads the *raw* mask with 0, so in label space the padding is whatever
raw 0 means: background for VOC/COCO, ignore for ADE20K and Cityscapes. Readers
give masks already mapped (-1 ignore); ``mask_fill`` carries that meaning
(``dataset.mask_fill``). Nearest resizing, cropping and mirroring commute
with the label map, so this is exact.
"""

import dataclasses
import random

import numpy as np
import tensorflow as tf
from PIL import Image, ImageFilter, ImageOps

from kseg.data.preprocessing import normalize_image

MODES = ("train", "val", "testval")


@dataclasses.dataclass(frozen=True)
class TrainAugmentation:
    """The random choices of one training sample (for logging and tests)."""

    flip: bool
    long_size: int
    size: tuple  # (height, width) after the resize
    crop_x: int
    crop_y: int
    blur_radius: float | None


def _check(image, mask):
    image = np.asarray(image)
    if image.dtype != np.uint8 or image.ndim != 3 or image.shape[-1] != 3:
        raise ValueError(f"Transforms take uint8 RGB images [H, W, 3], got {image.dtype} {image.shape}")
    if mask is None:
        return image, None
    mask = np.asarray(mask)
    if mask.shape != image.shape[:2]:
        raise ValueError(f"Mask of shape {mask.shape} does not match the {image.shape[0]}x{image.shape[1]} image")
    if not np.issubdtype(mask.dtype, np.integer):
        raise ValueError(f"Masks hold integer class indices, got {mask.dtype}")
    return image, mask


def _mask_image(mask):
    """int32 labels as a PIL "I" image: NEAREST resize, crop and pad keep every value, -1 included."""
    return Image.fromarray(np.ascontiguousarray(mask, np.int32), mode="I")


def _arrays(image, mask):
    return np.asarray(image, np.uint8), np.asarray(mask, np.int32)


def scaled_long_side(height, width, long_size):
    """(height, width) with the long side ``long_size``, rounded as GluonCV's training resize."""
    if height > width:
        return long_size, int(1.0 * width * long_size / height + 0.5)
    return int(1.0 * height * long_size / width + 0.5), long_size


def train_transform(image, mask, rng, base_size=520, crop_size=480, mask_fill=-1):
    """GluonCV's ``_sync_transform``: returns (uint8 crop, int32 mask crop, :class:`TrainAugmentation`).

    ``rng`` is a ``random.Random`` (or the ``random`` module), drawn in GluonCV's order.
    """
    image, mask = _check(image, mask)
    img, msk = Image.fromarray(image), _mask_image(mask)
    flip = rng.random() < 0.5
    if flip:
        img, msk = img.transpose(Image.FLIP_LEFT_RIGHT), msk.transpose(Image.FLIP_LEFT_RIGHT)
    long_size = rng.randint(int(base_size * 0.5), int(base_size * 2.0))
    oh, ow = scaled_long_side(image.shape[0], image.shape[1], long_size)
    img, msk = img.resize((ow, oh), Image.BILINEAR), msk.resize((ow, oh), Image.NEAREST)
    if min(oh, ow) < crop_size:
        border = (0, 0, max(crop_size - ow, 0), max(crop_size - oh, 0))
        img, msk = ImageOps.expand(img, border=border, fill=0), ImageOps.expand(msk, border=border, fill=mask_fill)
    w, h = img.size
    x1 = rng.randint(0, w - crop_size)
    y1 = rng.randint(0, h - crop_size)
    box = (x1, y1, x1 + crop_size, y1 + crop_size)
    img, msk = img.crop(box), msk.crop(box)
    radius = None
    if rng.random() < 0.5:
        radius = rng.random()
        img = img.filter(ImageFilter.GaussianBlur(radius=radius))
    return (*_arrays(img, msk), TrainAugmentation(flip, long_size, (oh, ow), x1, y1, radius))


def val_transform(image, mask, crop_size=480):
    """GluonCV's ``_val_sync_transform``: the short side to ``crop_size``, then a centre crop."""
    image, mask = _check(image, mask)
    h, w = image.shape[:2]
    if w > h:
        oh, ow = crop_size, int(1.0 * w * crop_size / h)
    else:
        ow, oh = crop_size, int(1.0 * h * crop_size / w)
    img = Image.fromarray(image).resize((ow, oh), Image.BILINEAR)
    msk = _mask_image(mask).resize((ow, oh), Image.NEAREST)
    x1, y1 = int(round((ow - crop_size) / 2.0)), int(round((oh - crop_size) / 2.0))
    box = (x1, y1, x1 + crop_size, y1 + crop_size)
    return _arrays(img.crop(box), msk.crop(box))


def element_seed(seed, epoch, index):
    """The seed of one sample: a function of (seed, epoch, index) only, so thread order cannot change it."""
    return int(np.random.SeedSequence([int(seed), int(epoch), int(index)]).generate_state(1, np.uint64)[0])


class SegmentationTransform:
    """GluonCV's transform of one mode on a tf.data pipeline of (uint8 image, int32 mask) pairs.

    Args:
        mode: "train", "val" or "testval".
        base_size, crop_size: GluonCV's ``--base-size``/``--crop-size``.
        mask_fill: the label that padding gets (``dataset.mask_fill``).
        seed: the training augmentation's seed; None draws one. Every sample's
            draws come from (seed, epoch, its index in the pipeline), so a
            seeded pipeline is deterministic at any parallelism and resumable.
        normalize: also apply ToTensor + Normalize (float32 output).
    """

    def __init__(self, mode, base_size=520, crop_size=480, mask_fill=-1, seed=None, normalize=True):
        if mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
        self.mode = mode
        self.base_size, self.crop_size = int(base_size), int(crop_size)
        self.mask_fill = int(mask_fill)
        self.seed = int(np.random.SeedSequence().entropy % (1 << 63)) if seed is None else int(seed)
        self.normalize = normalize

    def transform(self, image, mask, index=0, epoch=0):
        """The numpy transform of one sample."""
        if self.mode == "train":
            rng = random.Random(element_seed(self.seed, epoch, index))
            image, mask, _ = train_transform(image, mask, rng, self.base_size, self.crop_size, self.mask_fill)
            return image, mask
        if self.mode == "val":
            return val_transform(image, mask, self.crop_size)
        return _arrays(*_check(image, mask))

    def __call__(self, dataset, epoch=0, num_parallel_calls=tf.data.AUTOTUNE):
        """Map a tf.data.Dataset of (image, mask) to transformed (image, mask); element order is kept."""

        def apply(index, image, mask):
            image, mask = tf.numpy_function(
                lambda i, x, y: self.transform(x, y, int(i), epoch),
                [index, image, mask],
                [tf.uint8, tf.int32],
                stateful=False,
            )
            side = self.crop_size if self.mode != "testval" else None
            image = tf.ensure_shape(image, [side, side, 3])
            mask = tf.ensure_shape(mask, [side, side])
            return (normalize_image(image) if self.normalize else image), mask

        return dataset.enumerate().map(
            lambda i, pair: apply(i, *pair), num_parallel_calls=num_parallel_calls, deterministic=True
        )
