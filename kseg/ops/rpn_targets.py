"""RPN training targets as GluonCV's ``RPNTargetGenerator`` (``model_zoo/rcnn/rpn/rpn_target.py``), static-shaped.

Per image, with ``ious`` the MXNet ``box_iou`` of anchors and ground truth:

1. anchors crossing the image border (``x1 < 0``, ``y1 < 0``, ``x2 >= W``, ``y2 >= H``; allowed border 0)
   get IoU -1 with every ground truth;
2. an anchor within float32 spacing of some ground truth's best IoU is positive (ties included);
3. an anchor whose best IoU is at least 0.7 is positive;
4. an anchor whose best IoU lies in ``[0, 0.3)`` is negative, even when step 2 made it positive (so
   a ground truth whose best valid anchor is under 0.3 gets no positive anchor);
5. the rest is ignored; then at most 128 positives and ``256 - positives`` negatives are kept.

GluonCV keeps a uniformly random subset (``np.random.choice``); here each anchor carries a
priority and the highest are kept, which is the same distribution for uniform priorities and lets
a test supply GluonCV's choice. Padded ground-truth rows (all -1) take no part: GluonCV's
step 2 on a column with no overlap would mark every ignored anchor positive.

Labelling a padded canvas's anchors with the image's own size gives GluonCV's padded targets:
every anchor of a cell outside the image's feature grid crosses its border.
"""

import tensorflow as tf

from kseg.ops.boxes import RPN_STDS, encode_boxes
from kseg.ops.matching import FLOAT32_EPS, first_argmax, matching_iou, top_k_mask, valid_boxes

POSITIVE, NEGATIVE, IGNORED = 1, -1, 0


def rpn_labels(anchors, gt_boxes, image_hw, positive_iou=0.7, negative_iou=0.3):
    """``(labels [N] int32: 1 / -1 / 0, matches [N] int32)`` of ``anchors [N, 4]`` against ``gt_boxes [G, 4]``.

    ``gt_boxes`` may be padded with -1 rows; ``image_hw`` is the image's ``(H, W)`` (without padding).
    """
    anchors = tf.convert_to_tensor(anchors, tf.float32)
    gt_boxes = tf.convert_to_tensor(gt_boxes, tf.float32)
    hw = tf.cast(image_hw, tf.float32)
    x1, y1, x2, y2 = tf.unstack(anchors, 4, axis=-1)
    outside = (x1 < 0.0) | (y1 < 0.0) | (x2 >= hw[1]) | (y2 >= hw[0])
    ious = tf.where(outside[:, None], -1.0, matching_iou(anchors, gt_boxes))  # [N, G]
    real = valid_boxes(gt_boxes)[None, :]
    ious = tf.where(real, ious, -2.0)  # below every real value: padded columns never win
    matches = first_argmax(ious, axis=1)
    best_per_anchor = tf.reduce_max(ious, axis=1)
    best_per_gt = tf.reduce_max(ious, axis=0, keepdims=True)
    ties_best = tf.reduce_any(real & (ious + FLOAT32_EPS > best_per_gt), axis=1)
    labels = tf.where(ties_best | (best_per_anchor >= positive_iou), POSITIVE, IGNORED)
    labels = tf.where((best_per_anchor >= 0.0) & (best_per_anchor < negative_iou), NEGATIVE, labels)
    return labels, matches


def subsample_labels(labels, priority, num_sample=256, positive_ratio=0.5):
    """Keep the ``round(num_sample * ratio)`` positives and then ``num_sample - kept`` negatives of highest
    ``priority [N]``; the others become ignored (0)."""
    max_positive = int(round(num_sample * positive_ratio))
    priority = tf.convert_to_tensor(priority, tf.float32)
    minus_inf = tf.fill(tf.shape(priority), -float("inf"))
    positive = labels == POSITIVE
    keep_positive = top_k_mask(tf.where(positive, priority, minus_inf), max_positive)
    num_kept = tf.minimum(tf.reduce_sum(tf.cast(positive, tf.int32)), max_positive)
    keep_negative = top_k_mask(tf.where(labels == NEGATIVE, priority, minus_inf), num_sample - num_kept)
    return tf.where(keep_positive, POSITIVE, tf.where(keep_negative, NEGATIVE, IGNORED))


def rpn_targets(anchors, gt_boxes, image_hw, priority, num_sample=256, positive_ratio=0.5, stds=RPN_STDS):
    """GluonCV's RPN targets of one image.

    Returns ``(cls_target [N] float32: 1 positive / 0 negative / -1 ignored, box_target [N, 4],
    box_weight [N] float32: 1 on positives)``; box targets encode each positive's matched ground
    truth against it (stds 1, no clipping) and are 0 elsewhere.

    Example:
        >>> from kseg.ops.anchors import image_anchors
        >>> anchors = image_anchors(256, 256, fpn=False)  # 16 x 16 cells x 15 anchors
        >>> cls, box, weight = rpn_targets(anchors, [[8.0, 8.0, 140.0, 148.0]], (256, 256), tf.zeros([3840]))
        >>> int(tf.reduce_sum(weight)), int(tf.reduce_sum(tf.cast(cls >= 0, tf.int32)))  # positives, sampled
        (4, 256)
    """
    labels, matches = rpn_labels(anchors, gt_boxes, image_hw)
    labels = subsample_labels(labels, priority, num_sample, positive_ratio)
    positive = labels == POSITIVE
    cls_target = tf.where(positive, 1.0, tf.where(labels == NEGATIVE, 0.0, -1.0))
    matched = tf.gather(tf.convert_to_tensor(gt_boxes, tf.float32), matches)
    encoded = encode_boxes(matched, anchors, stds)
    box_target = tf.where(positive[:, None], encoded, 0.0)
    return cls_target, box_target, tf.cast(positive, tf.float32)
