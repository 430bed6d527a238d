"""RPN proposals: GluonCV's ``RPNProposal`` followed by the RPN's ``box_nms`` (static shapes)."""

import tensorflow as tf

from kseg.ops.boxes import BBOX_CLIP, RPN_STDS, clip_boxes, decode_boxes
from kseg.ops.nms import proposal_nms


def rpn_proposals(
    anchors,
    scores,
    deltas,
    image_hw,
    pre_nms_topk=6000,
    post_nms_topk=1000,
    iou_threshold=0.7,
    min_size=1,
    clip=BBOX_CLIP,
    tile_size=512,
):
    """Decode, clip, drop small boxes, NMS and keep the top ``post_nms_topk``.

    - ``anchors [N, 4]`` (or ``[B, N, 4]``), all levels concatenated (FPN: P2 first);
    - ``scores [B, N]``: sigmoid objectness, in the same order;
    - ``deltas [B, N, 4]``: raw RPN box outputs (stds 1);
    - ``image_hw``: the (padded) network input size, ``(H, W)`` or ``[B, 2]``.

    As GluonCV: deltas decoded with stds 1 and ``clip`` (4.42), boxes clipped to
    ``[0, W] x [0, H]``, boxes with ``x2 - x1 + 1 < min_size`` (or in y) get
    score -1 (dropped by NMS's ``score > 0``), then class-agnostic NMS at
    ``iou_threshold`` over the top ``pre_nms_topk`` (test 6000, train 12000) and
    the first ``post_nms_topk`` (test 1000, train 2000) kept.

    Returns ``(scores [B, post], boxes [B, post, 4])``, padded with -1 rows
    like GluonCV's RPN output (those rows still reach the RCNN head there).
    """
    scores = tf.convert_to_tensor(scores)
    anchors = tf.convert_to_tensor(anchors, scores.dtype)
    if anchors.shape.rank == 2:
        anchors = anchors[None]
    boxes = clip_boxes(decode_boxes(deltas, anchors, RPN_STDS, clip), image_hw)
    x1, y1, x2, y2 = tf.unstack(boxes, 4, axis=-1)
    invalid = (x2 - x1 + 1.0 < min_size) | (y2 - y1 + 1.0 < min_size)
    scores = tf.where(invalid, -1.0, scores)
    boxes = tf.where(invalid[..., None], -1.0, boxes)
    return proposal_nms(scores, boxes, pre_nms_topk, post_nms_topk, iou_threshold, tile_size=tile_size)
