"""RPN anchors, exactly as GluonCV's ``RPNAnchorGenerator`` (Detectron-legacy).

GluonCV (``model_zoo/rcnn/rpn/anchor.py``) builds the base anchors of one
feature level from a reference window ``[0, 0, stride - 1, stride - 1]``:

1. ratio enumeration: ``ws = round(sqrt(stride**2 / ratio))``,
   ``hs = round(ws * ratio)`` (numpy rounding, half to even), windows centred
   on ``(stride - 1) / 2`` with corners ``ctr -/+ 0.5 * (w - 1)``;
2. scale enumeration of each of those windows by ``size / stride``;

giving ``len(ratios) * len(sizes)`` anchors in **ratio-major** order. They are
shifted by ``(x, y) * stride`` for every feature cell, and flattened in
``(H, W, A)`` order, which is the order of the RPN head's
``transpose(0, 2, 3, 1).reshape(B, -1, 4)`` outputs (and of an NHWC head's
``reshape(B, -1, 4)``).

GluonCV pre-computes the grid for ``alloc_size`` cells and crops the top-left
``(H, W)`` of it, which equals generating the grid for ``(H, W)`` directly as
long as ``H, W <= alloc_size`` (C4: 128 at stride 16; FPN: 384, 192, 96, 48,
24 for P2..P6, i.e. images up to 1536-2048 px).

Anchors are corner boxes ``(x1, y1, x2, y2)`` in input-image pixels. All values
are half-integers, so float32 holds them exactly.
"""

import numpy as np
import tensorflow as tf

RATIOS = (0.5, 1.0, 2.0)
# Mask R-CNN C4: one level at stride 16, base size 16 x scales (2, 4, 8, 16, 32).
C4_STRIDE = 16
C4_SIZES = (32, 64, 128, 256, 512)
# Mask R-CNN FPN: P2..P6, one size (16 x scale) per level.
FPN_STRIDES = (4, 8, 16, 32, 64)
FPN_SIZES = (32, 64, 128, 256, 512)


def _whctrs(anchor):
    w = anchor[2] - anchor[0] + 1
    h = anchor[3] - anchor[1] + 1
    return w, h, anchor[0] + 0.5 * (w - 1), anchor[1] + 0.5 * (h - 1)


def _make(ws, hs, x_ctr, y_ctr):
    ws, hs = ws[:, None], hs[:, None]
    return np.hstack([x_ctr - 0.5 * (ws - 1), y_ctr - 0.5 * (hs - 1), x_ctr + 0.5 * (ws - 1), y_ctr + 0.5 * (hs - 1)])


def base_anchors(stride, sizes, ratios=RATIOS):
    """The ``(len(ratios) * len(sizes), 4)`` float32 base anchors of one level (ratio-major)."""
    scales = np.asarray(sizes, dtype=np.float64) / stride
    ratios = np.asarray(ratios, dtype=np.float64)
    w, h, x_ctr, y_ctr = _whctrs(np.array([0.0, 0.0, stride - 1.0, stride - 1.0]))
    ws = np.round(np.sqrt(w * h / ratios))
    hs = np.round(ws * ratios)
    per_ratio = _make(ws, hs, x_ctr, y_ctr)
    rows = []
    for window in per_ratio:
        w, h, x_ctr, y_ctr = _whctrs(window)
        rows.append(_make(w * scales, h * scales, x_ctr, y_ctr))
    return np.vstack(rows).astype(np.float32)


def grid_anchors(height, width, stride, base):
    """Shift ``base`` (A, 4) over an ``(height, width)`` map: float32 ``(height * width * A, 4)``.

    ``height`` and ``width`` may be Python ints (static shape) or scalar tensors.
    """
    base = tf.constant(base, tf.float32) if isinstance(base, np.ndarray) else tf.cast(base, tf.float32)
    xs = tf.cast(tf.range(width), tf.float32) * float(stride)
    ys = tf.cast(tf.range(height), tf.float32) * float(stride)
    sy, sx = tf.meshgrid(ys, xs, indexing="ij")
    shifts = tf.stack([sx, sy, sx, sy], axis=-1)  # (H, W, 4)
    anchors = shifts[:, :, None, :] + base[None, None, :, :]
    return tf.reshape(anchors, [-1, 4])


def c4_anchors(height, width, stride=C4_STRIDE, sizes=C4_SIZES, ratios=RATIOS):
    """Anchors of a C4 model's stride-16 map: ``(H * W * 15, 4)``."""
    return grid_anchors(height, width, stride, base_anchors(stride, sizes, ratios))


def fpn_anchors(level_shapes, strides=FPN_STRIDES, sizes=FPN_SIZES, ratios=RATIOS):
    """Per-level anchors for FPN maps of shapes ``[(H2, W2), ..., (H6, W6)]``.

    Returns a list of ``(Hl * Wl * 3, 4)`` tensors; GluonCV concatenates them
    (P2 first) along the anchor axis, as do the RPN outputs.
    """
    if len(level_shapes) != len(strides):
        raise ValueError(f"{len(level_shapes)} level shapes for {len(strides)} strides")
    return [
        grid_anchors(h, w, stride, base_anchors(stride, (size,), ratios))
        for (h, w), stride, size in zip(level_shapes, strides, sizes, strict=True)
    ]


def feature_sizes(height, width, fpn):
    """The feature-map sizes of an ``height x width`` input: ``[(h, w)]`` (C4, stride 16) or P2..P6 (FPN).

    Every stride-2 stage of MXNet's ResNets (stem, max pool, stride-2 blocks, v1d's ceil-mode
    average-pool shortcut) maps ``n`` to ``ceil(n / 2)``; P6 halves P5 the same way. Data pipelines
    need the sizes without running the network (GluonCV calls ``infer_shape``).

    Example:
        >>> feature_sizes(321, 479, fpn=False)
        [(21, 30)]
    """

    def halve(n, times):
        for _ in range(times):
            n = -(-n // 2)
        return n

    if not fpn:
        return [(halve(int(height), 4), halve(int(width), 4))]
    return [(halve(int(height), level), halve(int(width), level)) for level in (2, 3, 4, 5, 6)]


def image_anchors(height, width, fpn):
    """All anchors of an ``height x width`` input, levels concatenated (FPN: P2 first), as the RPN's outputs."""
    shapes = feature_sizes(height, width, fpn)
    if fpn:
        return tf.concat(fpn_anchors(shapes), axis=0)
    return c4_anchors(*shapes[0])
