"""RoIAlign as MXNet's ``contrib.ROIAlign(aligned=False)``, with gathers (XLA compilable).

MXNet's CPU kernel (Detectron/Caffe2 legacy RoIAlign), for a roi
``(x1, y1, x2, y2)`` in image pixels and ``spatial_scale = 1 / stride``:

- ``start = x1 * scale`` (no half-pixel offset), ``size = max((x2 - x1) * scale, 1)``,
  ``bin = size / pooled``;
- ``sampling_ratio`` (2 in GluonCV) samples per bin and axis, at
  ``start + p * bin + (i + 0.5) * bin / sampling_ratio``;
- a sample with ``y < -1`` or ``y > H`` (or the same in x) contributes 0;
  otherwise ``y`` is clamped to ``>= 0``, and a sample at or beyond ``H - 1``
  reads row ``H - 1`` alone; then plain bilinear interpolation;
- the bin value is the sum over samples divided by ``sampling_ratio ** 2``
  (dropped samples still count).

The bilinear weights are separable, so each output needs ``(2 s) ** 2``
feature reads: they are done as ``(2 s) ** 2`` gathers of output size, summed
in MXNet's order, so memory stays at a few outputs' worth. The gathers and
sums are XLA-compiled (fused into one pass: 11x faster on a CPU than 16
materialised gathers) except within :func:`kseg.ops.runtime.stock_tf_ops`,
which SavedModel export uses since stock TF-Serving lacks XLA. The backward
pass (to the features only, as MXNet's) scatters each tap into one
accumulator in turn instead of keeping the 16 gathers: a two-step R18 FPN
training run on a 64x96 canvas peaked at 5.2 GiB through autodiff, 2.3 GiB so.

Inputs are NHWC features ``[B, H, W, C]`` and rois ``[B, N, 4]`` in image
coordinates; outputs are ``[B, N, PH, PW, C]``.
"""

import tensorflow as tf

from kseg.ops.runtime import custom_kernels_allowed

FPN_ROI_STRIDES = (4, 8, 16, 32)  # P2..P5; GluonCV never pools from P6


def _axis_taps(start, length, bins, sampling_ratio, limit):
    """Rows (or columns) and weights of each sample along one axis.

    ``start``, ``length``, ``limit`` are ``[B, N]`` float32. Returns
    ``low, high`` (int32) and ``w_low, w_high`` (float32), each
    ``[B, N, bins, sampling_ratio]``; weights are zero for dropped samples.
    """
    bin_size = (length / bins)[..., None, None]
    p = tf.range(bins, dtype=tf.float32)[:, None]
    i = tf.range(sampling_ratio, dtype=tf.float32)[None, :]
    coord = start[..., None, None] + p * bin_size + (i + 0.5) * bin_size / sampling_ratio
    limit = limit[..., None, None]
    inside = (coord >= -1.0) & (coord <= limit)
    valid = tf.cast(inside, tf.float32)
    # Dropped (or NaN) samples read row 0 with weight 0; valid ones are clamped to >= 0 as in MXNet.
    coord = tf.maximum(tf.where(inside, coord, 0.0), 0.0)
    low = tf.floor(coord)
    edge = low >= limit - 1.0
    low = tf.where(edge, limit - 1.0, low)
    high = tf.where(edge, low, low + 1.0)
    coord = tf.where(edge, low, coord)
    frac = coord - low
    return tf.cast(low, tf.int32), tf.cast(high, tf.int32), (1.0 - frac) * valid, frac * valid


def roi_align_flat(flat, base, rois, scale, height, width, output_size, sampling_ratio=2, roi_mask=None,
                   row_stride=None):
    """The core every RoIAlign here calls: ``flat [R, C]`` maps, flattened, ``base [B, N]`` the row offset
    of each roi's map, ``scale``, ``height``, ``width`` ``[B, N]`` (float32) per-roi map parameters;
    rois where ``roi_mask [B, N]`` is 0 give zeros. ``row_stride`` (default ``width``): the rows' pitch
    in ``flat``, when the border rule applies to a ``height x width`` corner of a larger map. Integer
    maps (masks) are read as they are and interpolated in float32."""
    ph, pw = output_size
    x1, y1, x2, y2 = tf.unstack(tf.cast(rois, tf.float32), 4, axis=-1)
    x0 = x1 * scale
    y0 = y1 * scale
    roi_w = tf.maximum(x2 * scale - x0, 1.0)
    roi_h = tf.maximum(y2 * scale - y0, 1.0)
    # The sample positions stay outside XLA: its fused arithmetic rounds them differently (by an ulp of a
    # coordinate, i.e. up to 1e-5 of a bilinear weight), and MXNet's are matched exactly here.
    ylo, yhi, wyl, wyh = _axis_taps(y0, roi_h, ph, sampling_ratio, height)
    if roi_mask is not None:
        wyl = wyl * roi_mask[..., None, None]
        wyh = wyh * roi_mask[..., None, None]
    xlo, xhi, wxl, wxh = _axis_taps(x0, roi_w, pw, sampling_ratio, width)
    row_stride = tf.cast(width if row_stride is None else row_stride, tf.int32)
    row_stride = tf.broadcast_to(row_stride, tf.shape(base))
    interpolate = _compiled_interpolate if custom_kernels_allowed() else _interpolate
    taps = (base, row_stride, ylo, yhi, wyl, wyh, xlo, xhi, wxl, wxh)
    if not flat.dtype.is_floating:  # masks: nothing to differentiate
        return interpolate(flat, *taps)

    @tf.custom_gradient
    def pooled(features):
        def gradient(upstream):
            return _scatter_taps(features, upstream, *taps)

        return interpolate(features, *taps), gradient

    return pooled(flat)


def _interpolate(flat, base, row_stride, ylo, yhi, wyl, wyh, xlo, xhi, wxl, wxh):
    """The ``(2 s) ** 2`` gathers of output size and their weighted sum, in MXNet's order.

    ``base``, ``row_stride`` ``[B, N]``; the taps ``[B, N, bins, s]`` from :func:`_axis_taps`.
    """
    sampling_ratio = ylo.shape[-1]
    row_stride = row_stride[..., None, None]
    base = base[..., None, None]
    dtype = flat.dtype if flat.dtype.is_floating else tf.float32

    def read(rows, cols):
        # rows [B, N, PH], cols [B, N, PW] -> [B, N, PH, PW, C]
        index = base + rows[..., :, None] * row_stride + cols[..., None, :]
        return tf.cast(tf.gather(flat, index), dtype)

    def weight(wy, wx):
        return tf.cast(wy[..., :, None] * wx[..., None, :], dtype)[..., None]

    out = None
    for iy in range(sampling_ratio):
        for ix in range(sampling_ratio):
            yl, yh, hy, ly = ylo[..., iy], yhi[..., iy], wyl[..., iy], wyh[..., iy]
            xl, xh, hx, lx = xlo[..., ix], xhi[..., ix], wxl[..., ix], wxh[..., ix]
            value = (
                weight(hy, hx) * read(yl, xl)
                + weight(hy, lx) * read(yl, xh)
                + weight(ly, hx) * read(yh, xl)
                + weight(ly, lx) * read(yh, xh)
            )
            out = value if out is None else out + value
    return out / tf.cast(sampling_ratio * sampling_ratio, dtype)


def _scatter_taps(flat, upstream, base, row_stride, ylo, yhi, wyl, wyh, xlo, xhi, wxl, wxh):
    """The gradient of :func:`_interpolate` with respect to ``flat``: each of the ``(2 s) ** 2`` taps adds its
    weighted share of ``upstream [B, N, PH, PW, C]`` into one ``[R, C]`` accumulator, in turn.

    Autodiff of the gathers would instead keep all their outputs for the backward pass and concatenate the 16
    sparse gradients before summing them: 16 outputs' worth twice over (2.7 GiB in the backward pass of one R18
    FPN training step on a 64x96 canvas; 0.08 GiB so). MXNet's backward scatters per sample too; the roi
    coordinates get no gradient, as there.
    """
    sampling_ratio = ylo.shape[-1]
    row_stride = row_stride[..., None, None]
    base = base[..., None, None]
    share = upstream / tf.cast(sampling_ratio * sampling_ratio, upstream.dtype)
    channels = tf.shape(flat)[-1]
    grad = tf.zeros_like(flat)

    def add(grad, rows, cols, wy, wx):
        index = base + rows[..., :, None] * row_stride + cols[..., None, :]
        weight = tf.cast(wy[..., :, None] * wx[..., None, :], share.dtype)[..., None]
        return tf.tensor_scatter_nd_add(grad, tf.reshape(index, [-1, 1]), tf.reshape(weight * share, [-1, channels]))

    for iy in range(sampling_ratio):
        for ix in range(sampling_ratio):
            yl, yh, hy, ly = ylo[..., iy], yhi[..., iy], wyl[..., iy], wyh[..., iy]
            xl, xh, hx, lx = xlo[..., ix], xhi[..., ix], wxl[..., ix], wxh[..., ix]
            grad = add(grad, yl, xl, hy, hx)
            grad = add(grad, yl, xh, hy, lx)
            grad = add(grad, yh, xl, ly, hx)
            grad = add(grad, yh, xh, ly, lx)
    return grad


# One fused pass instead of 16 materialised gathers: 11x faster on a CPU. Data tensors only (see
# kseg.ops.conv._winograd_stages for why); one compilation per shape.
_compiled_interpolate = tf.function(_interpolate, jit_compile=True)


def roi_align(features, rois, output_size, spatial_scale, sampling_ratio=2):
    """MXNet ``ROIAlign(features, rois, output_size, spatial_scale, sample_ratio, aligned=False)``.

    ``features [B, H, W, C]``, ``rois [B, N, 4]`` (x1, y1, x2, y2) in image
    pixels, roi ``n`` of image ``b`` pooling from image ``b``. Returns
    ``[B, N, PH, PW, C]``.
    """
    features = tf.convert_to_tensor(features)
    shape = tf.shape(features)
    b, h, w, c = shape[0], shape[1], shape[2], shape[3]
    n = tf.shape(rois)[1]
    flat = tf.reshape(features, [-1, c])
    base = tf.broadcast_to(tf.range(b)[:, None] * (h * w), [b, n])
    per_roi = tf.ones([b, n], tf.float32)
    return roi_align_flat(
        flat,
        base,
        rois,
        per_roi * spatial_scale,
        per_roi * tf.cast(h, tf.float32),
        per_roi * tf.cast(w, tf.float32),
        output_size,
        sampling_ratio,
    )


def fpn_roi_levels(rois, min_level=2, max_level=5, canonical_scale=224.0, canonical_level=4, eps=1e-6):
    """GluonCV's ``_pyramid_roi_feats`` level rule, ``[B, N]`` int32.

    ``clip(floor(4 + log2(sqrt(w * h) / 224 + 1e-6)), 2, 5)`` with +1 widths
    ``w = x2 - x1 + 1``. Written as threshold comparisons on the float32
    ``sqrt(w * h) / 224 + 1e-6`` (exact powers of two), which equals the
    log2 form except within an ulp of a level boundary.
    """
    x1, y1, x2, y2 = tf.unstack(tf.cast(rois, tf.float32), 4, axis=-1)
    size = tf.sqrt((x2 - x1 + 1.0) * (y2 - y1 + 1.0)) / canonical_scale + eps
    level = tf.fill(tf.shape(size), min_level)
    for lvl in range(min_level + 1, max_level + 1):
        level += tf.cast(size >= 2.0 ** (lvl - canonical_level), tf.int32)
    return level


def multilevel_roi_align(features, rois, output_size, strides=FPN_ROI_STRIDES, sampling_ratio=2, min_level=2):
    """FPN RoIAlign: each roi pooled from its :func:`fpn_roi_levels` level, results in roi order.

    ``features`` is the list of maps for levels ``min_level, min_level + 1, ...``
    (P2..P5, ``[B, Hl, Wl, C]``) with ``strides``; ``rois [B, N, 4]``.
    Returns ``[B, N, PH, PW, C]``, as GluonCV's masked per-level ROIAlign sum
    (zeros for a malformed roi with ``(x2 - x1 + 1) * (y2 - y1 + 1) < 0``,
    whose level is NaN there).
    """
    if len(features) != len(strides):
        raise ValueError(f"{len(features)} feature maps for {len(strides)} strides")
    features = [tf.convert_to_tensor(f) for f in features]
    b = tf.shape(features[0])[0]
    c = tf.shape(features[0])[3]
    heights = tf.stack([tf.shape(f)[1] for f in features])
    widths = tf.stack([tf.shape(f)[2] for f in features])
    sizes = heights * widths
    offsets = tf.concat([[0], tf.cumsum(sizes)[:-1]], 0)
    total = tf.reduce_sum(sizes)
    flat = tf.concat([tf.reshape(f, [b, -1, c]) for f in features], axis=1)
    flat = tf.reshape(flat, [-1, c])

    level = fpn_roi_levels(rois, min_level, min_level + len(features) - 1) - min_level  # [B, N]
    # GluonCV's level is NaN when (x2 - x1 + 1) * (y2 - y1 + 1) < 0 (only malformed rois), matching no level.
    x1, y1, x2, y2 = tf.unstack(tf.cast(rois, tf.float32), 4, axis=-1)
    roi_mask = tf.cast((x2 - x1 + 1.0) * (y2 - y1 + 1.0) >= 0.0, tf.float32)
    n = tf.shape(level)[1]
    base = tf.range(b)[:, None] * total + tf.gather(offsets, level)
    scales = tf.constant([1.0 / s for s in strides], tf.float32)
    return roi_align_flat(
        flat,
        tf.reshape(base, [b, n]),
        rois,
        tf.gather(scales, level),
        tf.cast(tf.gather(heights, level), tf.float32),
        tf.cast(tf.gather(widths, level), tf.float32),
        output_size,
        sampling_ratio,
        roi_mask,
    )
