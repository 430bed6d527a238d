"""Mask R-CNN's training targets on hand-built cases: each of GluonCV's quirks, the padded forms and the counts.

The comparison with GluonCV's own target code on real images is tests/parity/test_mask_rcnn_training_parity.py.
"""

import numpy as np
import pytest
import tensorflow as tf

from kseg.ops.anchors import feature_sizes, image_anchors
from kseg.ops.matching import first_argmax, matching_iou, top_k_mask
from kseg.ops.rcnn_targets import mask_targets, rcnn_sample, rcnn_targets
from kseg.ops.rpn_targets import rpn_labels, rpn_targets, subsample_labels


def test_matching_iou_is_zero_not_nan_for_empty_and_degenerate_pairs():
    boxes = [[0.0, 0.0, 4.0, 4.0], [2.0, 2.0, 2.0, 2.0], [5.0, 5.0, 3.0, 3.0]]
    iou = matching_iou(boxes, boxes).numpy()
    assert not np.isnan(iou).any()
    np.testing.assert_array_equal(iou[1:, :], 0.0)
    assert iou[0, 0] == 1.0
    # 2 x 2 overlap of two 4 x 4 boxes: 4 / (16 + 16 - 4)
    assert matching_iou([[0.0, 0.0, 4.0, 4.0]], [[2.0, 2.0, 6.0, 6.0]]).numpy()[0, 0] == np.float32(4 / 28)


def test_first_argmax_and_top_k_break_ties_towards_the_lower_index():
    assert first_argmax(tf.constant([[0.5, 0.9, 0.9, 0.1]])).numpy().tolist() == [1]
    keep = top_k_mask(tf.constant([0.2, 0.7, 0.7, -np.inf, 0.7]), 2).numpy()
    assert keep.tolist() == [False, True, True, False, False]
    assert top_k_mask(tf.constant([-np.inf, 1.0]), 2).numpy().tolist() == [False, True]  # -inf is never kept


def test_feature_sizes_halve_with_ceiling():
    assert feature_sizes(800, 1333, fpn=False) == [(50, 84)]
    assert feature_sizes(321, 479, fpn=True) == [(81, 120), (41, 60), (21, 30), (11, 15), (6, 8)]


def anchors_of(boxes):
    return tf.constant(boxes, tf.float32)


def test_border_crossing_anchors_are_ignored_and_the_border_is_exclusive():
    anchors = anchors_of([[0, 0, 10, 10], [-1, 0, 10, 10], [0, 0, 20, 10], [0, 0, 19.5, 19.5]])
    labels, _ = rpn_labels(anchors, [[0.0, 0.0, 10.0, 10.0]], (20, 20))
    # x2 >= W is outside: the third anchor (x2 = 20) is ignored; the fourth (x2 = 19.5, IoU 0.26) is a negative.
    assert labels.numpy().tolist() == [1, 0, 0, -1]


def test_best_anchor_ties_are_positive_but_lose_to_the_negative_rule():
    gt = [[0.0, 0.0, 10.0, 10.0], [40.0, 40.0, 50.0, 50.0]]
    anchors = anchors_of([
        [0, 0, 10, 20],  # IoU 0.5 with gt 0: best for it, tied with the next one -> both positive
        [0, -0.0, 20, 10],
        [40, 40, 60, 60],  # IoU 0.25 with gt 1, its best -> still negative (below 0.3)
        [70, 70, 80, 80],  # no overlap -> negative
    ])  # fmt: skip
    labels, matches = rpn_labels(anchors, gt, (100, 100))
    assert labels.numpy().tolist() == [1, 1, -1, -1]
    assert matches.numpy().tolist()[:2] == [0, 0]


def test_a_real_gt_without_overlap_turns_the_ignore_band_positive_but_padding_does_not():
    anchors = anchors_of([[0, 0, 10, 10], [0, 0, 10, 20], [0, 0, 10, 13], [50, 50, 60, 60]])
    gt = [[0.0, 0.0, 10.0, 14.0]]  # IoUs 0.714, 0.7, 0.929(x), 0: see below
    base, _ = rpn_labels(anchors, gt, (100, 100))
    padded, _ = rpn_labels(anchors, gt + [[-1.0, -1.0, -1.0, -1.0]] * 3, (100, 100))
    assert padded.numpy().tolist() == base.numpy().tolist()
    # A real ground truth far from every anchor: every valid anchor ties its best IoU (0), so GluonCV marks them
    # all positive, and the negative rule (< 0.3) turns back all but the ignore band ([0.3, 0.7)).
    band = anchors_of([[0, 0, 10, 10], [0, 0, 10, 22]])  # IoU 0.5 and 0.636 with the first gt
    labels, matches = rpn_labels(band, [[0.0, 0.0, 10.0, 20.0], [90.0, 90.0, 91.0, 91.0]], (100, 100))
    assert labels.numpy().tolist() == [1, 1]
    assert matches.numpy().tolist() == [0, 0]


def test_subsampling_keeps_128_positives_then_fills_256_with_negatives():
    labels = tf.constant([1] * 300 + [-1] * 500 + [0] * 50, tf.int32)
    priority = tf.range(850, dtype=tf.float32)  # the highest indices win
    kept = subsample_labels(labels, priority).numpy()
    assert (kept == 1).sum() == 128 and (kept == -1).sum() == 128
    assert np.flatnonzero(kept == 1).min() == 300 - 128
    few = subsample_labels(tf.constant([1] * 10 + [-1] * 500, tf.int32), tf.zeros([510])).numpy()
    assert (few == 1).sum() == 10 and (few == -1).sum() == 246
    assert np.flatnonzero(few == -1).max() == 10 + 246 - 1  # equal priorities: the lowest indices


def test_rpn_targets_encode_the_matched_gt_on_positives_only():
    anchors = image_anchors(256, 256, fpn=False)
    gt = np.array([[8, 8, 140, 148], [150, 20, 250, 120]], np.float32)
    cls, box, weight = (t.numpy() for t in rpn_targets(anchors, gt, (256, 256), tf.zeros([anchors.shape[0]])))
    assert set(np.unique(cls)) <= {-1.0, 0.0, 1.0} and (cls >= 0).sum() == 256
    np.testing.assert_array_equal(weight, cls == 1)
    assert not box[cls != 1].any()
    # Decoding a positive's target against its anchor gives back its ground truth.
    a = anchors.numpy()[cls == 1]
    t = box[cls == 1]
    w, h = a[:, 2] - a[:, 0], a[:, 3] - a[:, 1]
    cx, cy = a[:, 0] + w / 2 + t[:, 0] * w, a[:, 1] + h / 2 + t[:, 1] * h
    gw, gh = w * np.exp(t[:, 2]), h * np.exp(t[:, 3])
    decoded = np.stack([cx - gw / 2, cy - gh / 2, cx + gw / 2, cy + gh / 2], 1)
    assert np.abs(decoded[:, None] - gt[None]).max(-1).min(1).max() < 1e-3


def test_a_padded_canvas_gives_the_images_targets_and_ignores_the_rest():
    gt = tf.constant([[20.0, 30.0, 150.0, 120.0]])
    image, canvas = (200, 176), (256, 256)
    small = image_anchors(*image, fpn=True)
    large = image_anchors(*canvas, fpn=True)
    labels_small, _ = rpn_labels(small, gt, image)
    labels_large, _ = rpn_labels(large, gt, image)
    # Map each canvas anchor to the image's anchor with the same coordinates.
    key = {tuple(row): i for i, row in enumerate(small.numpy().tolist())}
    rows = [key.get(tuple(row), -1) for row in large.numpy().tolist()]
    inside = np.array(rows) >= 0
    assert inside.sum() == small.shape[0]
    np.testing.assert_array_equal(labels_large.numpy()[inside], labels_small.numpy()[np.array(rows)[inside]])
    assert (labels_large.numpy()[~inside] == 0).all()


def sample(proposals, scores, gt, priority, num_sample, max_positive):
    rois, labels, matches = rcnn_sample(
        tf.constant([proposals], tf.float32), tf.constant([scores], tf.float32), tf.constant([gt], tf.float32),
        tf.constant([priority], tf.float32), num_sample, max_positive,
    )  # fmt: skip
    return rois.numpy()[0], labels.numpy()[0], matches.numpy()[0]


def test_rcnn_sampler_fills_positive_slots_first_and_negatives_have_no_lower_bound():
    gt = [[0.0, 0.0, 10.0, 10.0], [-1.0, -1.0, -1.0, -1.0]]
    proposals = [[0, 0, 10, 9], [0, 0, 10, 8], [0, 0, 10, 4], [50, 50, 60, 60], [-1, -1, -1, -1]]
    scores = [0.9, 0.8, 0.7, 0.6, -1.0]
    priority = [0.1, 0.9, 0.5, 0.4, 0.99, 0.3, 0.95]  # proposals, then the two gt rows
    rois, labels, matches = sample(proposals, scores, gt, priority, 5, 2)
    # Positives: proposals 0, 1 and the gt (IoU 0.9, 0.8, 1); two slots: the two highest priorities.
    assert labels.tolist()[:2] == [1, 1]
    assert sorted(map(tuple, rois[:2].tolist())) == [(0, 0, 10, 8), (0, 0, 10, 10)]
    # The other three: both negatives (IoU 0.4 and 0 are negatives alike), then a positive (no negative left);
    # the padded proposal and the padded gt row are never taken while anything else is left.
    assert labels.tolist()[2:] == [-1, -1, 1]
    assert rois[2:4].tolist() == [[0, 0, 10, 4], [50, 50, 60, 60]]
    assert matches[labels == 1].tolist() == [0, 0, 0]


def test_rcnn_sampler_has_ignored_rows_only_when_candidates_run_out():
    gt = [[0.0, 0.0, 10.0, 10.0]]
    rois, labels, _ = sample([[-1, -1, -1, -1]] * 3, [-1.0] * 3, gt, [0.1, 0.2, 0.3, 0.4], 4, 1)
    assert labels.tolist() == [1, 0, 0, 0]
    assert rois[0].tolist() == [0, 0, 10, 10]


def test_rcnn_targets_classes_boxes_and_weights():
    rois = tf.constant([[[0, 0, 10, 10], [1, 1, 9, 9], [50, 50, 60, 60], [0, 0, 1, 1]]], tf.float32)
    labels = tf.constant([[1, -1, -1, 0]])
    matches = tf.constant([[1, 0, 0, 0]])
    gt = tf.constant([[[0, 0, 5, 5], [0, 0, 10, 12]]], tf.float32)
    cls, box, weight = rcnn_targets(rois, labels, matches, gt, tf.constant([[3, 7]]), 2)
    assert cls.numpy().tolist() == [[8, 0, 0, -1]]
    assert weight.numpy().tolist() == [[1.0, 0.0]]
    # gt (0, 0, 10, 12) against roi (0, 0, 10, 10): centre y moves 1 of 10 px, height x1.2; stds 0.1, 0.2.
    np.testing.assert_allclose(box.numpy()[0, 0], [0.0, 1.0, 0.0, np.log(1.2) / 0.2], rtol=1e-6)
    assert not box.numpy()[0, 1].any()


def test_mask_targets_pool_the_matched_mask_and_padding_changes_nothing():
    rng = np.random.default_rng(0)
    masks = (rng.random((2, 3, 37, 45)) > 0.5).astype(np.uint8)
    rois = tf.constant(rng.uniform(-5, 50, (2, 6, 4)), tf.float32)
    rois = tf.concat([tf.minimum(rois[..., :2], rois[..., 2:]), tf.maximum(rois[..., :2], rois[..., 2:])], -1)
    matches = tf.constant(rng.integers(0, 3, (2, 6)), tf.int32)
    hw = tf.constant([[37, 45], [30, 41]])
    masks[1, :, 30:] = 0
    masks[1, :, :, 41:] = 0
    plain = mask_targets(masks, rois, matches, hw, 14).numpy()
    canvas = np.zeros((2, 3, 64, 64), np.uint8)
    canvas[:, :, :37, :45] = masks
    padded = mask_targets(canvas, rois, matches, hw, 14).numpy()
    np.testing.assert_array_equal(plain, padded)
    assert plain.min() >= 0.0 and plain.max() <= 1.0
    # The second image at its own size: the same as pooling its own unpadded masks alone.
    alone = mask_targets(masks[1:, :, :30, :41], rois[1:], matches[1:], hw[1:], 14).numpy()
    np.testing.assert_array_equal(alone[0], plain[1])
    # A mask of ones is one wherever the samples fall inside the image.
    ones = mask_targets(np.ones((1, 1, 40, 40), np.uint8), tf.constant([[[4.0, 4.0, 30.0, 30.0]]]),
                        tf.zeros([1, 1], tf.int32), tf.constant([[40, 40]]), 14).numpy()  # fmt: skip
    np.testing.assert_allclose(ones, 1.0, rtol=1e-6)


@pytest.mark.parametrize("fpn", [False, True])
def test_targets_compile_with_xla(fpn):
    anchors = image_anchors(128, 160, fpn)
    gt = tf.constant([[10.0, 12.0, 90.0, 100.0], [-1.0, -1.0, -1.0, -1.0]])
    priority = tf.random.stateless_uniform([anchors.shape[0]], [1, 2])
    eager = rpn_targets(anchors, gt, (120, 150), priority)
    compiled = tf.function(rpn_targets, jit_compile=True)(anchors, gt, tf.constant([120, 150]), priority)
    for a, b in zip(eager, compiled, strict=True):
        np.testing.assert_allclose(a.numpy(), b.numpy(), atol=1e-6)
