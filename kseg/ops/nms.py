"""Static-shape greedy NMS with MXNet ``box_nms`` semantics (XLA compilable).

MXNet's ``contrib.box_nms`` as GluonCV calls it (verified against MXNet 1.9.1):

- an entry is *valid* iff ``score > valid_thresh`` (strictly; the RPN uses the
  default 0, so its ``-1`` min-size rejects drop out) and, when ``id_index`` is
  given, ``id != background_id (-1)``;
- valid entries are sorted by score, descending, with a **stable** sort (ties
  keep the lower input index first), and only the first ``topk`` are kept
  (``topk=-1``: all);
- greedy suppression in that order: a box is dropped when its IoU with an
  earlier kept box is **strictly greater** than ``overlap_thresh``; IoU uses
  areas without +1 (see :func:`box_iou`); with ``force_suppress=False`` and an
  ``id_index`` only boxes of the same id suppress each other;
- the output lists the kept entries in sorted order, then ``-1`` rows.

Here the sort is ``tf.math.top_k`` (stable: lower index first among equal
scores, also under XLA), and the suppression is exact greedy NMS computed in
tiles: each tile of ``tile_size`` sorted boxes is first suppressed by the boxes
kept in earlier tiles, then by itself, iterating ``keep = cand & ~any(keep_i &
iou_ij > t, i < j)`` to its fixed point, which is the greedy answer. All shapes
are static; the work is ``O(N^2)`` IoUs per problem, in ``[T, N]`` blocks.

Per-class NMS (RCNN detections) runs all classes as a batch of independent
problems. GluonCV then takes the top ``rcnn_max_dets`` (1000) detections over
all classes with MXNet's ``argsort``, which is **not** stable; here equal scores
come out class-major, then in roi order. Only the order of exactly tied
scores can differ.
"""

import tensorflow as tf

from kseg.ops.boxes import box_iou


def _nms_sorted(boxes, valid, iou_threshold, tile_size):
    """Greedy NMS keep-mask for score-sorted ``boxes [M, N, 4]`` and ``valid [M, N]``."""
    m = tf.shape(boxes)[0]
    n = boxes.shape[1]
    tile = min(tile_size, max(n, 1))
    n_tiles = -(-n // tile)
    pad = n_tiles * tile - n
    if pad:
        boxes = tf.pad(boxes, [[0, 0], [0, pad], [0, 0]])
        valid = tf.pad(valid, [[0, 0], [0, pad]])
    tiles = tf.reshape(boxes, [m, n_tiles, tile, 4])
    valid_tiles = tf.reshape(valid, [m, n_tiles, tile])
    later = tf.range(tile)[:, None] < tf.range(tile)[None, :]  # i suppresses j only if i < j
    tile_ids = tf.range(n_tiles)[None, :, None]

    def body(t, keep):
        current = tf.gather(tiles, t, axis=1)  # [M, T, 4]
        cand = tf.gather(valid_tiles, t, axis=1)
        # Boxes kept in earlier tiles (later tiles are still all False).
        kept = tf.reshape(keep, [m, n_tiles * tile])
        cross = box_iou(current, tf.reshape(tiles, [m, n_tiles * tile, 4])) > iou_threshold
        cand = cand & ~tf.reduce_any(cross & kept[:, None, :], axis=2)
        own = (box_iou(current, current) > iou_threshold) & later

        def step(k, _):
            new = cand & ~tf.reduce_any(own & k[:, :, None], axis=1)
            return new, tf.reduce_any(new != k)

        tile_keep, _ = tf.while_loop(lambda k, changed: changed, step, (cand, tf.constant(True)))
        keep = tf.where(tile_ids == t, tile_keep[:, None, :], keep)
        return t + 1, keep

    keep = tf.zeros([m, n_tiles, tile], tf.bool)
    _, keep = tf.while_loop(lambda t, k: t < n_tiles, body, (tf.constant(0), keep))
    return tf.reshape(keep, [m, n_tiles * tile])[:, :n]


def _first_true(mask, k):
    """Positions of the first ``k`` True entries of ``mask [M, N]`` (in order) and their validity."""
    n = mask.shape[1]
    key = tf.where(mask, tf.cast(n - tf.range(n), tf.float32)[None, :], 0.0)
    key, pos = tf.math.top_k(key, k=min(k, n))
    if k > n:
        key = tf.pad(key, [[0, 0], [0, k - n]])
        pos = tf.pad(pos, [[0, 0], [0, k - n]])
    return pos, key > 0


def box_nms(boxes, scores, iou_threshold, max_output_size, topk=-1, valid_thresh=0.0, tile_size=512):
    """Class-agnostic ``box_nms(force_suppress=True)`` on ``[..., N, 4]`` boxes and ``[..., N]`` scores.

    Entries with ``score > valid_thresh`` are sorted (stable), the first ``topk``
    kept (``topk <= 0``, MXNet's -1: all), then suppressed greedily at IoU
    ``> iou_threshold``. Returns ``(indices, valid)``, both
    ``[..., max_output_size]``: input indices of the kept boxes in descending
    score order, ``-1`` (and ``valid=False``) past the last kept box.
    """
    boxes = tf.convert_to_tensor(boxes)
    scores = tf.convert_to_tensor(scores)
    batch_shape = tf.shape(scores)[:-1]
    n = scores.shape[-1]
    boxes = tf.reshape(boxes, [-1, n, 4])
    scores = tf.reshape(scores, [-1, n])
    ok = scores > valid_thresh
    k = n if topk is None or topk <= 0 else min(topk, n)
    _, order = tf.math.top_k(tf.where(ok, scores, -float("inf")), k=k)
    sorted_ok = tf.gather(ok, order, batch_dims=1)
    keep = _nms_sorted(tf.gather(boxes, order, batch_dims=1), sorted_ok, iou_threshold, tile_size)
    pos, valid = _first_true(keep, max_output_size)
    indices = tf.where(valid, tf.gather(order, pos, batch_dims=1), -1)
    out_shape = tf.concat([batch_shape, [max_output_size]], 0)
    return tf.reshape(indices, out_shape), tf.reshape(valid, out_shape)


def proposal_nms(scores, boxes, pre_nms_topk, post_nms_topk, iou_threshold=0.7, tile_size=512):
    """GluonCV's RPN selection: ``box_nms(topk=pre_nms, force_suppress=True)`` then the first ``post_nms`` rows.

    ``scores [B, N]`` (invalid proposals marked with scores <= 0), ``boxes [B, N, 4]``.
    Returns ``(scores [B, post], boxes [B, post, 4])`` padded with ``-1`` rows, as GluonCV's RPN output.
    """
    indices, valid = box_nms(boxes, scores, iou_threshold, post_nms_topk, topk=pre_nms_topk, tile_size=tile_size)
    safe = tf.maximum(indices, 0)
    out_scores = tf.where(valid, tf.gather(scores, safe, batch_dims=1), -1.0)
    out_boxes = tf.where(valid[..., None], tf.gather(boxes, safe, batch_dims=1), -1.0)
    return out_scores, out_boxes


def multiclass_nms(
    boxes,
    scores,
    score_threshold=0.01,
    iou_threshold=0.5,
    max_detections=1000,
    tile_size=256,
    pad_score=0.0,
):
    """GluonCV's RCNN post-processing: per-class NMS, then the top ``max_detections`` over all classes.

    ``boxes [B, N, C, 4]`` decoded per-class boxes and ``scores [B, N, C]``
    foreground probabilities (softmax without the background column, so class
    ``c`` here is GluonCV's id ``c``). A (roi, class) entry is a candidate when
    ``score > score_threshold`` (``MultiPerClassDecoder(thresh=0.01)``; the
    ``valid_thresh=1e-4`` of the NMS call is then implied); NMS is per class
    with no per-class top-k.

    Returns ``(class_ids [B, K] int32, scores [B, K], boxes [B, K, 4], roi_indices [B, K] int32)``
    sorted by descending score; padding rows have id ``-1``, score ``pad_score``,
    zero boxes and roi index ``-1``. (GluonCV pads with -1 everywhere; filter
    on ``class_ids >= 0``.)
    """
    boxes = tf.convert_to_tensor(boxes)
    scores = tf.convert_to_tensor(scores)
    b = tf.shape(scores)[0]
    n, c = scores.shape[1], scores.shape[2]
    cls_scores = tf.transpose(scores, [0, 2, 1])  # [B, C, N]
    cls_boxes = tf.transpose(boxes, [0, 2, 1, 3])  # [B, C, N, 4]
    flat_scores = tf.reshape(cls_scores, [-1, n])
    flat_boxes = tf.reshape(cls_boxes, [-1, n, 4])
    ok = flat_scores > score_threshold
    _, order = tf.math.top_k(tf.where(ok, flat_scores, -float("inf")), k=n)
    keep_sorted = _nms_sorted(
        tf.gather(flat_boxes, order, batch_dims=1), tf.gather(ok, order, batch_dims=1), iou_threshold, tile_size
    )
    # Back to roi order: keep[m, order[m, i]] = keep_sorted[m, i].
    rows = tf.broadcast_to(tf.range(tf.shape(order)[0])[:, None], tf.shape(order))
    keep = tf.scatter_nd(tf.stack([rows, order], -1), tf.cast(keep_sorted, tf.int32), tf.shape(order))
    keep = tf.reshape(keep > 0, [b, c * n])
    all_scores = tf.reshape(cls_scores, [b, c * n])
    k = min(max_detections, c * n)
    top, pos = tf.math.top_k(tf.where(keep, all_scores, -1.0), k=k)
    valid = tf.gather(keep, pos, batch_dims=1)
    class_ids = tf.where(valid, pos // n, -1)
    roi_indices = tf.where(valid, pos % n, -1)
    out_scores = tf.where(valid, top, pad_score)
    out_boxes = tf.where(valid[..., None], tf.gather(tf.reshape(cls_boxes, [b, c * n, 4]), pos, batch_dims=1), 0.0)
    if k < max_detections:
        extra = max_detections - k
        class_ids = tf.pad(class_ids, [[0, 0], [0, extra]], constant_values=-1)
        roi_indices = tf.pad(roi_indices, [[0, 0], [0, extra]], constant_values=-1)
        out_scores = tf.pad(out_scores, [[0, 0], [0, extra]], constant_values=pad_score)
        out_boxes = tf.pad(out_boxes, [[0, 0], [0, extra], [0, 0]])
    return class_ids, out_scores, out_boxes, roi_indices
