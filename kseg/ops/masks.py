"""Paste MxM mask predictions into the image, as GluonCV's ``data.transforms.mask.fill``.

:func:`paste_masks` is GluonCV's numpy rule, for evaluation; :func:`paste_masks_tf`
its graph twin, for the detection SavedModel.

Both of GluonCV's paths start alike: pad each ``M x M`` mask with one zero
pixel on every side and grow its box about the centre by ``(M + 2) / M``, so
the padded mask covers the grown box.

- ``fast_fill=True`` (GluonCV's default, used by its training-time
  validation): round the grown box to integers (numpy, half to even), resize
  the float32 padded mask with PIL ``BILINEAR`` to ``(x2 - x1 + 1, y2 - y1 + 1)``,
  keep ``> 0.5`` and paste the part inside the image. PIL is used here as well,
  so this path is bit-exact.
- ``fast_fill=False`` (the evaluation script): for every image pixel centre
  ``(x + 0.5, y + 0.5)`` take the mask coordinate
  ``(x + 0.5 - x1) / (x2 - x1) * (M + 2)`` and interpolate the padded mask
  linearly between pixel centres ``0.5 .. M + 1.5`` (``scipy.interp2d``,
  linear, 0 outside), keeping ``>= 0.5``. ``interp2d`` was removed in SciPy
  1.14, so this is written out directly: same sample points, bilinear weights
  in float64, only pixels inside the grown box computed.

Returns ``uint8 [N, height, width]``.
"""

import numpy as np
import tensorflow as tf
from PIL import Image


def _grow(masks, boxes):
    m_h, m_w = masks.shape[1:]
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    x1, y1, x2, y2 = boxes.T
    x, y, hw, hh = (x1 + x2) / 2, (y1 + y2) / 2, (x2 - x1) / 2, (y2 - y1) / 2
    hw = hw * (float(m_w + 2) / m_w)
    hh = hh * (float(m_h + 2) / m_h)
    padded = np.pad(masks, [(0, 0), (1, 1), (1, 1)], mode="constant").astype(np.float32)
    return padded, x - hw, y - hh, x + hw, y + hh


def _fast(padded, x1, y1, x2, y2, width, height):
    x1, y1, x2, y2 = (np.round(v).astype(int) for v in (x1, y1, x2, y2))
    w, h = x2 - x1 + 1, y2 - y1 + 1
    xx1, yy1 = np.maximum(0, x1), np.maximum(0, y1)
    xx2, yy2 = np.minimum(width, x2 + 1), np.minimum(height, y2 + 1)
    out = np.zeros((len(padded), height, width), dtype=np.uint8)
    for i, mask in enumerate(padded):
        if xx2[i] <= xx1[i] or yy2[i] <= yy1[i]:
            continue
        resized = np.asarray(Image.fromarray(mask).resize((int(w[i]), int(h[i])), Image.BILINEAR))
        out[i, yy1[i] : yy2[i], xx1[i] : xx2[i]] = (
            resized[yy1[i] - y1[i] : yy2[i] - y1[i], xx1[i] - x1[i] : xx2[i] - x1[i]] > 0.5
        )
    return out


def _linear_weights(coords, size):
    """``[len(coords), size]`` linear-interpolation weights on pixel centres ``0.5 .. size - 0.5``; 0 outside."""
    u = coords - 0.5
    inside = (u >= 0) & (u <= size - 1)
    low = np.clip(np.floor(u), 0, size - 2).astype(int)
    frac = u - low
    weights = np.zeros((len(coords), size))
    rows = np.nonzero(inside)[0]
    weights[rows, low[rows]] = 1.0 - frac[rows]
    weights[rows, low[rows] + 1] = frac[rows]
    return weights


def _exact(padded, x1, y1, x2, y2, width, height):
    size_y, size_x = padded.shape[1:]
    out = np.zeros((len(padded), height, width), dtype=np.uint8)
    centres_x = np.arange(width) + 0.5
    centres_y = np.arange(height) + 0.5
    for i, mask in enumerate(padded):
        if not (x2[i] > x1[i] and y2[i] > y1[i]):
            continue
        xs = (centres_x - x1[i]) / (x2[i] - x1[i]) * size_x
        ys = (centres_y - y1[i]) / (y2[i] - y1[i]) * size_y
        cols = np.nonzero((xs >= 0.5) & (xs <= size_x - 0.5))[0]
        rows = np.nonzero((ys >= 0.5) & (ys <= size_y - 0.5))[0]
        if not len(cols) or not len(rows):
            continue
        wy = _linear_weights(ys[rows], size_y)
        wx = _linear_weights(xs[cols], size_x)
        values = wy @ mask.astype(np.float64) @ wx.T
        out[i, rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1] = values >= 0.5
    return out


def paste_masks(masks, boxes, size, fast_fill=True):
    """GluonCV ``mask.fill(masks, boxes, size, fast_fill)``.

    ``masks [N, M, M]`` mask probabilities, ``boxes [N, 4]`` (x1, y1, x2, y2)
    in the output image's pixels, ``size = (width, height)``.
    Returns binary ``uint8 [N, height, width]``.
    """
    masks = np.asarray(masks)
    width, height = int(size[0]), int(size[1])
    if masks.ndim != 3:
        raise ValueError(f"masks must be [N, M, M], got {masks.shape}")
    padded, x1, y1, x2, y2 = _grow(masks, boxes)
    if fast_fill:
        return _fast(padded, x1, y1, x2, y2, width, height)
    return _exact(padded, x1, y1, x2, y2, width, height)


def paste_masks_tf(masks, boxes, height, width):
    """The graph twin of ``paste_masks(..., fast_fill=False)``: ``[K, M, M]`` probabilities -> uint8 ``[K, H, W]``.

    The same rule (a 1-pixel zero border, the box grown by ``(M + 2) / M``,
    bilinear resampling at pixel centres, ``>= 0.5``) with
    ``tf.image.crop_and_resize`` in float32, for the detection SavedModel.
    """
    m = tf.shape(masks)[1]
    padded = tf.pad(masks, [[0, 0], [1, 1], [1, 1]])[..., None]
    size = tf.cast(m + 2, tf.float32)
    grow = size / tf.cast(m, tf.float32)
    x1, y1, x2, y2 = tf.unstack(boxes, 4, axis=-1)
    cx, cy = (x1 + x2) / 2, (y1 + y2) / 2
    bw, bh = tf.maximum((x2 - x1) * grow, 1.0), tf.maximum((y2 - y1) * grow, 1.0)
    ex1, ey1 = cx - bw / 2, cy - bh / 2

    def mask_coordinate(pixel, start, extent):
        return ((pixel + 0.5 - start) / extent * size - 0.5) / (size - 1.0)

    h, w = tf.cast(height, tf.float32), tf.cast(width, tf.float32)
    crop_boxes = tf.stack(
        [
            mask_coordinate(0.0, ey1, bh),
            mask_coordinate(0.0, ex1, bw),
            mask_coordinate(h - 1.0, ey1, bh),
            mask_coordinate(w - 1.0, ex1, bw),
        ],
        axis=-1,
    )
    count = tf.shape(masks)[0]
    pasted = tf.image.crop_and_resize(
        padded, crop_boxes, tf.range(count), tf.stack([height, width]), extrapolation_value=0.0
    )
    return tf.cast(pasted[..., 0] >= 0.5, tf.uint8)
