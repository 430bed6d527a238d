"""One Mask R-CNN training example on a fixed canvas: what :func:`kseg.training.mask_rcnn.training_losses`
reads.

The image (normalised) is padded bottom/right with zeros (the mean colour, as GluonCV's batchify) to a
static canvas, so that XLA compiles one program per canvas; the ground truth is padded with -1 rows
(masks with 0) to a static object count; and the RPN targets are computed in the pipeline, as
GluonCV's data workers do, on the canvas's anchors with the image's own size (anchors of canvas cells
outside the image cross its border and are ignored, which is GluonCV's padded layout).
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf

from kseg.data.preprocessing import normalize_image
from kseg.ops.anchors import image_anchors
from kseg.ops.rpn_targets import rpn_targets


def pad_to_canvas(sample, canvas_hw, max_objects):
    """``(image [Hc, Wc, 3] float32 normalised, image_hw [2] int32, boxes [G, 4], classes [G] int32,
    masks [G, Hc, Wc] uint8)`` of one :class:`~kseg.data.instance_transforms.InstanceSample`, padded
    (image with 0, boxes and classes with -1, masks with 0) to the canvas and ``G = max_objects``.

    Raises ``ValueError`` when the image does not fit the canvas or has more than ``max_objects`` objects.
    """
    height, width = sample.image.shape[:2]
    canvas_h, canvas_w = canvas_hw
    if height > canvas_h or width > canvas_w:
        raise ValueError(f"a {height}x{width} image does not fit the {canvas_h}x{canvas_w} canvas")
    count = len(sample.boxes)
    if count > max_objects:
        raise ValueError(f"an image has {count} objects, more than max_objects={max_objects}")
    image = np.zeros((canvas_h, canvas_w, 3), np.float32)
    image[:height, :width] = normalize_image(tf.constant(sample.image)).numpy()
    boxes = -np.ones((max_objects, 4), np.float32)
    classes = -np.ones((max_objects,), np.int32)
    masks = np.zeros((max_objects, canvas_h, canvas_w), np.uint8)
    boxes[:count], classes[:count] = sample.boxes, sample.classes
    masks[:count, :height, :width] = sample.masks
    return image, np.array([height, width], np.int32), boxes, classes, masks


def training_example(sample, canvas_hw, fpn, max_objects, seed):
    """A dict of arrays for one transformed :class:`~kseg.data.instance_transforms.InstanceSample` (eager; the
    training pipeline does the same in tf.data). ``seed`` (two ints) draws the RPN sampler's priorities."""
    image, hw, boxes, classes, masks = pad_to_canvas(sample, canvas_hw, max_objects)
    anchors = image_anchors(*canvas_hw, fpn)
    priority = tf.random.stateless_uniform([anchors.shape[0]], tf.constant(seed, tf.int64))
    cls_target, box_target, box_weight = rpn_targets(anchors, boxes, tuple(hw), priority)
    return {
        "images": image,
        "image_hw": hw,
        "gt_boxes": boxes,
        "gt_classes": classes,
        "gt_masks": masks,
        "rpn_cls_target": cls_target.numpy(),
        "rpn_box_target": box_target.numpy(),
        "rpn_box_weight": box_weight.numpy(),
    }


def stack_examples(examples):
    """A batch (dict of ``[B, ...]`` arrays) from examples on the same canvas."""
    return {key: np.stack([e[key] for e in examples]) for key in examples[0]}
