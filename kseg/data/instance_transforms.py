"""GluonCV's Mask R-CNN train transform (``MaskRCNNDefaultTrainTransform``), geometry exact.

Per image: the short side to ``short`` within ``max_size`` (bilinear); boxes scaled by separate x
and y factors in float64; polygons by the same factors in float32; a horizontal flip with
probability 0.5 (``x' = W - x``, boxes ``x1' = W - x2``); then each object's polygons rasterised
with pycocotools **at the resized size** (masks are drawn, not resized). The flip is drawn from
the sample's own seed (seed, epoch, index), so a resumed run sees the same flips.

The image resize is TF's bilinear, not OpenCV's fixed-point ``INTER_LINEAR`` GluonCV calls (on the
real COCO samples: a mean difference under one grey level, 99% of pixels within 3, with kseg's own JPEG
decoding); everything computed from the boxes and polygons is GluonCV's, exactly.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from kseg.data.transforms import element_seed
from kseg.ops.resize import resize_short_side


@dataclasses.dataclass(frozen=True)
class InstanceSample:
    """One transformed training image: ``image [H, W, 3]`` uint8 (resized, maybe flipped), ``boxes [G, 4]``
    float32, ``classes [G]`` int32, ``masks [G, H, W]`` uint8, and whether it was flipped."""

    image: np.ndarray
    boxes: np.ndarray
    classes: np.ndarray
    masks: np.ndarray
    flipped: bool


def resize_instances(boxes, polygons, in_hw, out_hw):
    """Boxes (float64) and polygons (float32) from an ``in_hw`` to an ``out_hw`` image."""
    x_scale, y_scale = out_hw[1] / in_hw[1], out_hw[0] / in_hw[0]
    scaled = np.asarray(boxes, np.float64).copy()
    scaled[:, 0::2] *= x_scale
    scaled[:, 1::2] *= y_scale
    resized = [[p * np.array([x_scale, y_scale], np.float32) for p in parts] for parts in polygons]
    return scaled, resized


def flip_instances(boxes, polygons, width):
    """Mirror boxes (float64) and polygons in an image ``width`` wide: ``x' = width - x``."""
    flipped = np.asarray(boxes, np.float64).copy()
    flipped[:, 0], flipped[:, 2] = width - flipped[:, 2], width - flipped[:, 0]
    mirrored = [[np.stack([np.float32(width) - p[:, 0], p[:, 1]], axis=1) for p in parts] for parts in polygons]
    return flipped, mirrored


def rasterize_polygons(polygons, height, width):
    """``[G, height, width]`` uint8 masks, each object's polygons merged (pycocotools); no polygon: empty."""
    from pycocotools import mask as mask_utils

    masks = np.zeros((len(polygons), height, width), np.uint8)
    for i, parts in enumerate(polygons):
        if parts:
            rles = mask_utils.frPyObjects([p.flatten().tolist() for p in parts], height, width)
            masks[i] = mask_utils.decode(mask_utils.merge(rles))
    return masks


class InstanceTrainTransform:
    """GluonCV's training transform of one image and its objects (see the module).

    Example:
        >>> transform = InstanceTrainTransform(short=320, max_size=512, seed=0)
        >>> record = COCOInstances("annotations.json", "images")[0]
        >>> sample = transform(load_image(record.path), record.boxes, record.classes, record.polygons, index=0)
        >>> sample.image.shape[:2] == sample.masks.shape[1:]
        True
    """

    def __init__(self, short=800, max_size=1333, flip_probability=0.5, seed=0):
        self.short, self.max_size = int(short), int(max_size)
        self.flip_probability = float(flip_probability)
        self.seed = int(seed)

    def draws_flip(self, index, epoch=0):
        """Whether sample ``index`` of ``epoch`` is mirrored (a function of the seed, epoch and index only)."""
        rng = np.random.default_rng(element_seed(self.seed, epoch, index))
        return bool(rng.random() < self.flip_probability)

    def __call__(self, image, boxes, classes, polygons, index=0, epoch=0, flip=None) -> InstanceSample:
        image = np.asarray(image)
        if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
            raise ValueError(f"expected a uint8 [H, W, 3] image, got {image.dtype} {list(image.shape)}")
        resized, _ = resize_short_side(image[None], self.short, self.max_size)
        resized = resized.numpy()[0]
        height, width = resized.shape[:2]
        boxes, polygons = resize_instances(boxes, polygons, image.shape[:2], (height, width))
        flip = self.draws_flip(index, epoch) if flip is None else bool(flip)
        if flip:
            resized = np.ascontiguousarray(resized[:, ::-1])
            boxes, polygons = flip_instances(boxes, polygons, width)
        masks = rasterize_polygons(polygons, height, width)
        # Boxes stay float64 until here, as GluonCV's: one rounding to float32.
        return InstanceSample(resized, boxes.astype(np.float32), np.asarray(classes, np.int32), masks, flip)
