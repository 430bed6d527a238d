"""Detection ops against plain numpy/scipy restatements of the reference algorithms (no MXNet needed)."""

import numpy as np
import pytest
import tensorflow as tf
from scipy.interpolate import RectBivariateSpline

from kseg import ops


def test_base_anchors_are_detectrons():
    # Detectron's generate_anchors(stride=16, sizes=(128, 256, 512)), ratio-major.
    expected = [
        [-84, -40, 99, 55],
        [-176, -88, 191, 103],
        [-360, -184, 375, 199],
        [-56, -56, 71, 71],
        [-120, -120, 135, 135],
        [-248, -248, 263, 263],
        [-36, -80, 51, 95],
        [-80, -168, 95, 183],
        [-168, -344, 183, 359],
    ]
    np.testing.assert_array_equal(ops.base_anchors(16, (128, 256, 512)), expected)
    # FPN P2: a 4 px reference window, so the rounding differs from C4's 32 px anchors.
    p2 = [[-22, -10, 25, 13], [-14, -14, 17, 17], [-10, -22, 13, 25]]
    np.testing.assert_array_equal(ops.base_anchors(4, (32,)), p2)


def test_grid_anchor_order_is_h_w_a():
    base = ops.base_anchors(16, ops.C4_SIZES)
    grid = ops.c4_anchors(3, 5).numpy().reshape(3, 5, 15, 4)
    for h, w in [(0, 0), (2, 1), (1, 4)]:
        np.testing.assert_array_equal(grid[h, w], base + [16 * w, 16 * h, 16 * w, 16 * h])


def numpy_greedy_nms(boxes, scores, thresh, topk, valid_thresh=0.0):
    order = [i for i in np.argsort(-scores, kind="stable") if scores[i] > valid_thresh][:topk]
    keep = []
    for i in order:
        ok = True
        for j in keep:
            iw = max(min(boxes[i, 2], boxes[j, 2]) - max(boxes[i, 0], boxes[j, 0]), 0)
            ih = max(min(boxes[i, 3], boxes[j, 3]) - max(boxes[i, 1], boxes[j, 1]), 0)
            inter = np.float32(iw * ih)
            area_i = (boxes[i, 2] - boxes[i, 0]) * (boxes[i, 3] - boxes[i, 1])
            area_j = (boxes[j, 2] - boxes[j, 0]) * (boxes[j, 3] - boxes[j, 1])
            if inter / (area_i + area_j - inter) > thresh:
                ok = False
                break
        if ok:
            keep.append(i)
    return keep


@pytest.mark.parametrize("tile_size", [512, 64, 7])
def test_box_nms_is_greedy_nms(tile_size):
    rng = np.random.default_rng(3)
    xy = rng.uniform(0, 100, (2, 600, 2))
    wh = rng.uniform(5, 40, (2, 600, 2))
    boxes = np.concatenate([xy, xy + wh], -1).astype(np.float32)
    scores = (np.round(rng.uniform(-0.1, 1, (2, 600)) * 30) / 30).astype(np.float32)  # ties and invalid
    indices, valid = ops.box_nms(boxes, scores, 0.4, 300, topk=450, tile_size=tile_size)
    for b in range(2):
        expected = numpy_greedy_nms(boxes[b], scores[b], 0.4, 450)
        assert len(expected) < 300
        np.testing.assert_array_equal(indices[b, : len(expected)], expected)
        assert not valid[b, len(expected) :].numpy().any() and (indices[b, len(expected) :] == -1).numpy().all()


def test_multiclass_nms_pads_and_sorts():
    rng = np.random.default_rng(4)
    xy = rng.uniform(0, 60, (1, 50, 3, 2))
    boxes = np.concatenate([xy, xy + 20], -1).astype(np.float32)
    scores = rng.uniform(0, 0.05, (1, 50, 3)).astype(np.float32)
    ids, out_scores, out_boxes, rois = (t.numpy() for t in ops.multiclass_nms(boxes, scores, max_detections=200))
    n = (ids[0] >= 0).sum()
    assert 0 < n < 150
    assert (np.diff(out_scores[0, :n]) <= 0).all() and (out_scores[0, :n] > 0.01).all()
    assert (out_scores[0, n:] == 0).all() and (rois[0, n:] == -1).all() and (out_boxes[0, n:] == 0).all()
    for c in range(3):
        expected = numpy_greedy_nms(boxes[0, :, c], scores[0, :, c], 0.5, 50, valid_thresh=0.01)
        assert sorted(rois[0, :n][ids[0, :n] == c]) == sorted(expected)


def numpy_roi_align(feat, roi, pooled, scale, sr):
    """MXNet's CPU ROIAlign loop for one roi, aligned=False, written out in numpy."""
    h, w = feat.shape[:2]
    x0, y0, x1, y1 = (np.float32(v) * np.float32(scale) for v in roi)
    rw, rh = max(x1 - x0, np.float32(1)), max(y1 - y0, np.float32(1))
    bh, bw = rh / np.float32(pooled), rw / np.float32(pooled)
    out = np.zeros((pooled, pooled, feat.shape[2]), np.float32)
    for ph in range(pooled):
        for pw in range(pooled):
            for iy in range(sr):
                y = y0 + ph * bh + np.float32(iy + 0.5) * bh / np.float32(sr)
                for ix in range(sr):
                    x = x0 + pw * bw + np.float32(ix + 0.5) * bw / np.float32(sr)
                    if y < -1 or y > h or x < -1 or x > w:
                        continue
                    yy, xx = max(y, 0), max(x, 0)
                    yl, xl = int(yy), int(xx)
                    yh, xh = yl + 1, xl + 1
                    if yl >= h - 1:
                        yl = yh = h - 1
                        yy = np.float32(yl)
                    if xl >= w - 1:
                        xl = xh = w - 1
                        xx = np.float32(xl)
                    ly, lx = yy - yl, xx - xl
                    hy, hx = 1 - ly, 1 - lx
                    top = hy * hx * feat[yl, xl] + hy * lx * feat[yl, xh]
                    out[ph, pw] += top + ly * hx * feat[yh, xl] + ly * lx * feat[yh, xh]
    return out / (sr * sr)


def test_roi_align_is_the_legacy_kernel():
    rng = np.random.default_rng(5)
    feat = rng.normal(size=(2, 9, 11, 2)).astype(np.float32)
    xy = rng.uniform(-40, 180, (2, 12, 2))
    wh = np.exp(rng.uniform(np.log(0.3), np.log(150), (2, 12, 2)))
    rois = np.concatenate([xy, xy + wh], -1).astype(np.float32)
    ours = ops.roi_align(feat, rois, (5, 5), 1 / 16).numpy()
    for b in range(2):
        for n in range(12):
            expected = numpy_roi_align(feat[b], rois[b, n], 5, 1 / 16, 2)
            np.testing.assert_allclose(ours[b, n], expected, rtol=1e-5, atol=1e-6)


def test_fpn_levels_follow_gluoncv_rule():
    side = np.array([1, 111, 112, 223, 224, 447, 448, 895, 896, 3000], np.float32) - 1  # x2 - x1, +1 widths
    rois = np.stack([np.zeros_like(side), np.zeros_like(side), side, side], -1)[None]
    levels = ops.fpn_roi_levels(rois).numpy()[0]
    np.testing.assert_array_equal(levels, [2, 2, 3, 3, 4, 4, 5, 5, 5, 5])


def test_multilevel_roi_align_reads_each_rois_level():
    rng = np.random.default_rng(6)
    feats = [rng.normal(size=(2, 64 // s, 96 // s, 3)).astype(np.float32) for s in (4, 8, 16, 32)]
    rois = np.array([[[0, 0, 40, 40], [10, 5, 200, 150], [3, 3, 600, 400], [20, 20, 130, 140]]] * 2, np.float32)
    levels = ops.fpn_roi_levels(rois).numpy()
    ours = ops.multilevel_roi_align(feats, rois, (7, 7)).numpy()
    for lvl, stride in zip(range(2, 6), (4, 8, 16, 32), strict=True):
        single = ops.roi_align(feats[lvl - 2], rois, (7, 7), 1 / stride).numpy()
        np.testing.assert_array_equal(ours[levels == lvl], single[levels == lvl])
    assert len(np.unique(levels)) >= 3


def interp2d_fill(masks, boxes, size):
    """GluonCV's ``fill(fast_fill=False)`` with scipy's removed ``interp2d`` replaced by the same
    FITPACK linear spline (``RectBivariateSpline``, kx=ky=1, s=0) plus interp2d's fill_value=0."""
    width, height = size
    m_h, m_w = masks.shape[1:]
    masks = np.pad(masks, [(0, 0), (1, 1), (1, 1)]).astype(np.float32)
    x1, y1, x2, y2 = np.asarray(boxes, np.float64).T
    x, y, hw, hh = (x1 + x2) / 2, (y1 + y2) / 2, (x2 - x1) / 2, (y2 - y1) / 2
    hw, hh = hw * (float(m_w + 2) / m_w), hh * (float(m_h + 2) / m_h)
    x1, y1, x2, y2 = x - hw, y - hh, x + hw, y + hh
    ret = np.zeros((len(masks), height, width), np.uint8)
    for i, mask in enumerate(masks):
        pixels = np.arange(0.5, mask.shape[0] + 0.5)
        spline = RectBivariateSpline(pixels, pixels, mask, kx=1, ky=1, s=0)
        ys = (np.arange(0.5, height + 0.5) - y1[i]) / (y2[i] - y1[i]) * mask.shape[0]
        xs = (np.arange(0.5, width + 0.5) - x1[i]) / (x2[i] - x1[i]) * mask.shape[1]
        res = spline(ys, xs)
        res[(ys < pixels[0]) | (ys > pixels[-1]), :] = 0
        res[:, (xs < pixels[0]) | (xs > pixels[-1])] = 0
        ret[i] = res >= 0.5
    return ret


def test_exact_mask_fill_matches_interp2d():
    rng = np.random.default_rng(7)
    masks = rng.uniform(0, 1, (12, 14, 14)).astype(np.float32)
    xy = rng.uniform(-30, 150, (12, 2))
    boxes = np.concatenate([xy, xy + rng.uniform(2, 90, (12, 2))], -1)
    ours = ops.paste_masks(masks, boxes, (160, 120), fast_fill=False)
    expected = interp2d_fill(masks, boxes, (160, 120))
    assert expected.sum() > 1000
    np.testing.assert_array_equal(ours, expected)


def test_fast_and_exact_fill_agree_on_large_boxes():
    yy, xx = np.mgrid[0:28, 0:28]
    masks = np.stack([1 / (1 + np.exp(np.hypot(yy - 13.5, xx - 13.5) - r)) for r in (6, 9, 12)]).astype(np.float32)
    boxes = np.array([[20, 30, 150, 110], [-40, 10, 90, 200], [100, 50, 300, 120]], np.float64)
    fast = ops.paste_masks(masks, boxes, (256, 160))
    exact = ops.paste_masks(masks, boxes, (256, 160), fast_fill=False)
    iou = (fast & exact).sum((1, 2)) / (fast | exact).sum((1, 2))
    assert (iou > 0.95).all(), iou


def test_roi_align_gradient_under_xla():
    rng = np.random.default_rng(8)
    feats = [tf.constant(rng.normal(size=(2, 32 // s, 48 // s, 4)).astype(np.float32)) for s in (4, 8, 16, 32)]
    rois = tf.constant([[[0, 0, 40, 40], [10, 5, 100, 80], [-5, 3, 180, 120], [0, 0, 300, 300]]] * 2, tf.float32)

    def grads(*f):
        with tf.GradientTape() as tape:
            tape.watch(f)
            y = tf.reduce_sum(ops.multilevel_roi_align(list(f), rois, (7, 7)) ** 2)
        return tape.gradient(y, f)

    eager = grads(*feats)
    compiled = tf.function(grads, jit_compile=True)(*feats)
    for e, c in zip(eager, compiled, strict=True):
        np.testing.assert_allclose(tf.convert_to_tensor(c), tf.convert_to_tensor(e), rtol=1e-5, atol=1e-5)
    assert all(float(tf.reduce_sum(tf.abs(tf.convert_to_tensor(g)))) > 0 for g in eager[:3])
