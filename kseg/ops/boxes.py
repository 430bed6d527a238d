"""Box coding and geometry, with GluonCV's conventions.

All boxes are corner boxes ``(x1, y1, x2, y2)`` in the last axis, float32,
in input-image pixels.

GluonCV conventions (``gluoncv/nn/coder.py``, ``gluoncv/nn/bbox.py``):

- the box coder's widths are ``x2 - x1`` (**no +1**; ``BBoxCornerToCenter``
  says so: "we do not have +1 here since our nms and box iou does not"), and
  the centre is ``x1 + 0.5 * w``;
- the decoder multiplies the deltas by ``stds`` (means are 0), clips
  ``dw, dh`` from above only (``min(d, clip)``), and returns
  ``ctr -/+ 0.5 * exp(d) * w``. Mask R-CNN passes ``clip=4.42`` for both the
  RPN (stds 1) and the RCNN (stds 0.1, 0.1, 0.2, 0.2) decoders: the literal
  4.42, not ``log(1000 / 16) = 4.135`` as in Detectron;
- ``BBoxClipToImage`` clamps to ``[0, W]`` and ``[0, H]`` (not ``W - 1``), where
  ``(H, W)`` is the (padded) network input;
- the RPN's min-size test and the FPN level rule use **+1** widths;
- NMS and IoU (MXNet ``box_nms``/``box_iou``) use areas without +1.
"""

import tensorflow as tf

RPN_STDS = (1.0, 1.0, 1.0, 1.0)
RCNN_STDS = (0.1, 0.1, 0.2, 0.2)
BBOX_CLIP = 4.42


def corner_to_center(boxes):
    """``(x1, y1, x2, y2)`` to ``(cx, cy, w, h)`` with ``w = x2 - x1`` (no +1)."""
    x1, y1, x2, y2 = tf.unstack(boxes, 4, axis=-1)
    w = x2 - x1
    h = y2 - y1
    return tf.stack([x1 + w * 0.5, y1 + h * 0.5, w, h], axis=-1)


def decode_boxes(deltas, anchors, stds=RCNN_STDS, clip=BBOX_CLIP):
    """GluonCV's ``NormalizedBoxCenterDecoder(stds, clip, convert_anchor=True)``.

    ``deltas`` and corner ``anchors`` broadcast against each other
    (e.g. ``[B, N, C, 4]`` deltas with ``[B, N, 1, 4]`` rois). ``clip=None``
    (or 0) disables the clip.
    """
    deltas = tf.convert_to_tensor(deltas)
    anchors = tf.cast(anchors, deltas.dtype)
    ax1, ay1, ax2, ay2 = tf.unstack(anchors, 4, axis=-1)
    aw = ax2 - ax1
    ah = ay2 - ay1
    ax = ax1 + aw * 0.5
    ay = ay1 + ah * 0.5
    dx, dy, dw, dh = tf.unstack(deltas, 4, axis=-1)
    ox = dx * stds[0] * aw + ax
    oy = dy * stds[1] * ah + ay
    dw = dw * stds[2]
    dh = dh * stds[3]
    if clip:
        dw = tf.minimum(dw, clip)
        dh = tf.minimum(dh, clip)
    ow = tf.exp(dw) * aw * 0.5
    oh = tf.exp(dh) * ah * 0.5
    return tf.stack([ox - ow, oy - oh, ox + ow, oy + oh], axis=-1)


def encode_boxes(boxes, anchors, stds=RCNN_STDS):
    """GluonCV's ``NormalizedBoxCenterEncoder`` codec (the inverse of :func:`decode_boxes`, unclipped).

    Returns ``((gx - ax) / aw / s0, (gy - ay) / ah / s1, log(gw / aw) / s2, log(gh / ah) / s3)``
    for matched ``boxes`` and ``anchors`` of the same (broadcast) shape; masking
    by the sampler is the caller's job.
    """
    g = corner_to_center(tf.convert_to_tensor(boxes))
    a = corner_to_center(tf.cast(anchors, g.dtype))
    gx, gy, gw, gh = tf.unstack(g, 4, axis=-1)
    ax, ay, aw, ah = tf.unstack(a, 4, axis=-1)
    return tf.stack(
        [
            (gx - ax) / aw / stds[0],
            (gy - ay) / ah / stds[1],
            tf.math.log(gw / aw) / stds[2],
            tf.math.log(gh / ah) / stds[3],
        ],
        axis=-1,
    )


def clip_boxes(boxes, image_hw):
    """``BBoxClipToImage``: clamp x to ``[0, W]`` and y to ``[0, H]``.

    ``image_hw`` is ``(H, W)`` (Python numbers or a ``[2]`` tensor) or a
    ``[B, 2]`` tensor of per-image sizes for ``[B, N, 4]`` boxes.
    """
    boxes = tf.convert_to_tensor(boxes)
    hw = tf.cast(image_hw, boxes.dtype)
    upper = tf.stack([hw[..., 1], hw[..., 0], hw[..., 1], hw[..., 0]], axis=-1)
    if upper.shape.rank == 2:  # [B, 4] -> [B, 1, ..., 4]
        upper = tf.reshape(upper, [-1] + [1] * (boxes.shape.rank - 2) + [4])
    return tf.minimum(tf.maximum(boxes, 0.0), upper)


def box_area(boxes, plus_one=False):
    """Area of corner boxes; ``plus_one`` uses Detectron's ``(x2 - x1 + 1)`` widths."""
    x1, y1, x2, y2 = tf.unstack(boxes, 4, axis=-1)
    off = 1.0 if plus_one else 0.0
    return (x2 - x1 + off) * (y2 - y1 + off)


def box_iou(boxes_a, boxes_b):
    """Pairwise IoU ``[..., N, M]`` of ``[..., N, 4]`` and ``[..., M, 4]``, as MXNet's ``box_iou``/``box_nms``.

    No +1; intersection sides are clamped at 0; areas are not clamped, so a
    degenerate (zero-area) pair gives 0 / 0 = NaN, which compares false
    against any threshold, as in MXNet.
    """
    a = tf.expand_dims(boxes_a, -2)
    b = tf.expand_dims(boxes_b, -3)
    ax1, ay1, ax2, ay2 = tf.unstack(a, 4, axis=-1)
    bx1, by1, bx2, by2 = tf.unstack(b, 4, axis=-1)
    iw = tf.maximum(tf.minimum(ax2, bx2) - tf.maximum(ax1, bx1), 0.0)
    ih = tf.maximum(tf.minimum(ay2, by2) - tf.maximum(ay1, by1), 0.0)
    inter = iw * ih
    area_a = (ax2 - ax1) * (ay2 - ay1)
    area_b = (bx2 - bx1) * (by2 - by1)
    return inter / (area_a + area_b - inter)
