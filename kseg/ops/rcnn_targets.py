"""The RCNN stage's training samples and targets, as GluonCV's Mask R-CNN, in static shapes.

- :func:`rcnn_sample`: ``RCNNTargetSampler`` (``model_zoo/rcnn/faster_rcnn/rcnn_target.py``). The
  candidates are the proposals with the ground truth appended; a candidate is positive at IoU >= 0.5
  with some ground truth, negative below (no lower bound), ignored when its score is negative (padded
  proposals and ground-truth rows). Of ``S`` slots, the first ``P`` hold up to ``P`` random positives
  (then negatives), the other ``S - P`` random negatives (then positives, then ignored rows).
  GluonCV draws a uniform shuffle; each candidate here carries a priority instead, and the
  highest-priority candidates of each kind are taken. GluonCV finally sorts the ``S`` rows by area,
  which only permutes the rows of sums; here the first ``P`` rows stay the ones the box and mask
  heads train on (GluonCV's ``indices``: its positives first).
- :func:`rcnn_targets`: ``MaskRCNNTargetGenerator``: class targets (gt class + 1, 0 background,
  -1 ignored) on all ``S`` rows; box targets of the matched ground truth (stds 0.1, 0.1, 0.2, 0.2)
  and their weights on the first ``P``.
- :func:`mask_targets`: ``MaskTargetGenerator``: MXNet's RoIAlign (legacy, scale 1, 2 samples) of each
  positive row's full-resolution ground-truth mask: soft targets in [0, 1], no threshold.
"""

import tensorflow as tf

from kseg.ops.boxes import RCNN_STDS, encode_boxes
from kseg.ops.matching import first_argmax, matching_iou, valid_boxes
from kseg.ops.roi_align import roi_align_flat

POSITIVE, NEGATIVE, IGNORED = 1, -1, 0


def _take(values, index):
    return tf.gather(values, index, batch_dims=1)


def _kind_first(labels, priority, order):
    """A sort key: the kinds in ``order`` first, each kind by ``priority`` (in [0, 1))."""
    key = tf.zeros_like(priority)
    for value, kind in zip((2.0, 1.0, 0.0), order, strict=True):
        key = tf.where(labels == kind, value, key)
    return key + priority


def rcnn_sample(proposals, proposal_scores, gt_boxes, priority, num_sample, max_positive, positive_iou=0.5):
    """``S = num_sample`` RoIs per image from ``proposals [B, R, 4]`` and ``gt_boxes [B, G, 4]`` (-1 padded).

    ``proposal_scores [B, R]`` (-1 on padded proposals) and ``priority [B, R + G]`` (in [0, 1); uniform
    for GluonCV's distribution). Returns ``(rois [B, S, 4], labels [B, S] int32: 1 / -1 / 0,
    matches [B, S] int32)``; the first ``max_positive`` rows hold the positives.

    Example:
        >>> gt = tf.constant([[[10.0, 10.0, 50.0, 50.0]]])
        >>> proposals = tf.constant([[[12.0, 12.0, 50.0, 50.0], [60.0, 60.0, 90.0, 90.0]]])
        >>> rois, labels, matches = rcnn_sample(proposals, tf.ones([1, 2]), gt, tf.zeros([1, 3]), 3, 1)
        >>> labels.numpy().tolist()  # one positive slot; then the negative, then (negatives run out) a positive
        [[1, -1, 1]]
    """
    gt_boxes = tf.convert_to_tensor(gt_boxes, tf.float32)
    candidates = tf.concat([tf.convert_to_tensor(proposals, tf.float32), gt_boxes], axis=1)
    gt_scores = tf.where(valid_boxes(gt_boxes), 1.0, -1.0)
    scores = tf.concat([tf.convert_to_tensor(proposal_scores, tf.float32), gt_scores], axis=1)
    ious = matching_iou(candidates, gt_boxes)  # [B, R + G, G]; padded columns give 0
    matches = first_argmax(ious, axis=-1)
    positive = tf.reduce_max(ious, axis=-1) >= positive_iou
    labels = tf.where(positive, POSITIVE, tf.where(scores < 0.0, IGNORED, NEGATIVE))

    priority = tf.convert_to_tensor(priority, tf.float32)
    first = tf.math.top_k(_kind_first(labels, priority, (POSITIVE, NEGATIVE, IGNORED)), max_positive).indices
    taken = tf.reduce_any(tf.range(tf.shape(labels)[1])[None, :, None] == first[:, None, :], axis=-1)
    rest = tf.where(taken, -float("inf"), _kind_first(labels, priority, (NEGATIVE, POSITIVE, IGNORED)))
    second = tf.math.top_k(rest, num_sample - max_positive).indices
    chosen = tf.concat([first, second], axis=1)
    return _take(candidates, chosen), _take(labels, chosen), _take(matches, chosen)


def rcnn_targets(rois, labels, matches, gt_boxes, gt_classes, max_positive, stds=RCNN_STDS):
    """``(cls_target [B, S] int32, box_target [B, P, 4], box_weight [B, P])`` of sampled RoIs.

    ``gt_classes [B, G]`` are contiguous class ids (0-based; -1 pads). Class targets are
    ``gt_class + 1`` on positives, 0 on negatives, -1 on ignored rows; box targets encode the matched
    ground truth against the first ``P = max_positive`` RoIs, weighted 1 on positives.

    Example:
        >>> rois = tf.constant([[[12.0, 12.0, 50.0, 50.0], [60.0, 60.0, 90.0, 90.0]]])
        >>> cls, box, weight = rcnn_targets(rois, tf.constant([[1, -1]]), tf.zeros([1, 2], tf.int32),
        ...                                 tf.constant([[[10.0, 10.0, 50.0, 50.0]]]), tf.constant([[4]]), 1)
        >>> cls.numpy().tolist(), weight.numpy().tolist()
        ([[5, 0]], [[1.0]])
    """
    gt_classes = tf.cast(gt_classes, tf.int32)
    matched_class = _take(gt_classes, matches)
    cls_target = tf.where(labels == POSITIVE, matched_class + 1, tf.where(labels == NEGATIVE, 0, -1))
    head_rois = rois[:, :max_positive]
    head_positive = labels[:, :max_positive] == POSITIVE
    matched = _take(tf.convert_to_tensor(gt_boxes, tf.float32), matches[:, :max_positive])
    box_target = tf.where(head_positive[..., None], encode_boxes(matched, head_rois, stds), 0.0)
    return cls_target, box_target, tf.cast(head_positive, tf.float32)


def mask_targets(gt_masks, rois, matches, image_hw, mask_size):
    """Soft mask targets ``[B, P, M, M]`` float32 of ``rois [B, P, 4]`` from their matched ``gt_masks``.

    ``gt_masks [B, G, H, W]`` (uint8 or float, 0/1, zero-padded canvases); ``image_hw [B, 2]``: each
    image's own size, where RoIAlign's border rule applies as on the unpadded image GluonCV pools
    from (it reads the last row and column up to one pixel beyond them, and nothing further).

    Example:
        >>> masks = tf.ones([1, 1, 32, 32], tf.uint8)
        >>> targets = mask_targets(masks, tf.constant([[[0.0, 0.0, 16.0, 16.0]]]), tf.zeros([1, 1], tf.int32),
        ...                        tf.constant([[32, 32]]), 14)
        >>> float(tf.reduce_min(targets)), targets.shape
        (1.0, TensorShape([1, 1, 14, 14]))
    """
    gt_masks = tf.convert_to_tensor(gt_masks)
    shape = tf.shape(gt_masks)
    batch, count, height, width = shape[0], shape[1], shape[2], shape[3]
    index = tf.range(batch)[:, None] * count + tf.maximum(tf.cast(matches, tf.int32), 0)
    flat = tf.reshape(gt_masks, [-1, 1])
    hw = tf.cast(image_hw, tf.float32)
    ones = tf.ones(tf.shape(index), tf.float32)
    pooled = roi_align_flat(
        flat,
        index * (height * width),
        rois,
        ones,
        ones * hw[:, 0:1],
        ones * hw[:, 1:2],
        (mask_size, mask_size),
        row_stride=tf.fill(tf.shape(index), width),
    )
    return tf.stop_gradient(pooled[..., 0])
