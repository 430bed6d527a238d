"""Exact 3x3 convolutions that do fewer multiplications, for float32 inference on CPUs.

A dilated ResNet spends about 60% of its time in 3x3 convolutions, and on a
CPU those run at the speed of the matrix multiply: only fewer multiply-adds
make them faster. Two exact rewrites do that:

- Winograd's minimal filtering F(2x2, 3x3) (Lavin & Gray, "Fast Algorithms
  for Convolutional Neural Networks", 2016): each 2x2 output tile takes 16
  products per input/output channel pair instead of 36, i.e. 2.25x fewer. The
  transforms' coefficients are 0, +-1 and +-1/2, so float32 rounding stays at
  the level of a direct convolution (unlike F(4x4, 3x3)). A dilated
  convolution is a plain one on the ``d x d`` interleaved sub-images
  (``space_to_batch``, as TF's own atrous convolution does).
- Skipping the taps that fall wholly in the zero padding: at DeepLab's ASPP
  rates (12, 24, 36) on a 60x60 feature map, 25-64% of the direct
  convolution's products multiply padding zeros.

In bfloat16 (oneDNN on AVX512-BF16 / AMX) the direct convolution is the fast one, but not at large
dilations: DeepLab's ASPP (2048 -> 256 channels, rates 12/24/36) took 236/523/458 ms at 60x60 and
2.3-5.5 s at Cityscapes' 128x256, where skipping the padding taps takes 99/64/51 ms and the
sub-image form (``space_to_batch``, then an undilated convolution) 0.43-0.68 s (2 threads, Intel Xeon
with AMX). :func:`conv2d_3x3` takes those two forms for dilated bfloat16 convolutions; Winograd's
transforms would add bfloat16 roundings, so bfloat16 never takes it.

The transforms are memory-bound elementwise work that XLA fuses; the 16
matrix products between them (one per position in a transformed tile) run in
TensorFlow's own kernel, whose rounding is that of ``tf.nn.conv2d``. A
BatchNormalization folded into the convolution is applied in the output
transform. :func:`conv2d_3x3` picks the cheapest exact form per call from the
(static) shapes and falls back to ``tf.nn.conv2d``.

:func:`fast_convolutions_enabled` says whether kseg's ``Conv2D`` layers use
this path: float32 or bfloat16, inference, no GPU/TPU (cuDNN and XLA:TPU choose their own
algorithms) and no distribution strategy; ``KSEG_FAST_CONV=0`` or
:func:`kseg.ops.runtime.stock_tf_ops` switch it off (SavedModel export does,
since TF-Serving's stock builds lack XLA).
"""

import functools
import os

import numpy as np
import tensorflow as tf

from kseg.ops.runtime import accelerator, custom_kernels_allowed, inside_xla

# Winograd F(2x2, 3x3): Y = A^T [(G g G^T) * (B^T d B)] A.
_B_T = ((1, 0, -1, 0), (0, 1, 1, 0), (0, -1, 1, 0), (0, 1, 0, -1))
_G = np.array([[1, 0, 0], [0.5, 0.5, 0.5], [0.5, -0.5, 0.5], [0, 0, 1]])
_A_T = ((1, 1, 1, 0), (0, 1, -1, -1))

# Below these sizes the transforms (the kernel's among them, whatever the image size) cost more than the
# products they save (measured on a 2-core AVX2 CPU; channels on a 2-core AVX-512 EPYC: 64 -> 128 took 0.86-0.92
# of the direct convolution's time at 60x60 to 240x240, 64 -> 64 0.94-1.01, 128 -> 128 0.78).
MIN_WINOGRAD_CHANNELS = 64
MIN_WINOGRAD_CHANNEL_PRODUCT = 64 * 128
MIN_WINOGRAD_SUBIMAGE = 8
MIN_WINOGRAD_TILES = 512
# Skip padding taps when they hold at least this share of the products.
MIN_SKIPPED_SHARE = 0.2
# In blocks, Winograd's output is assembled by a concatenation: a second copy of it. Below these channels (the deep
# stem's 64 -> 128, where Winograd takes 0.86-0.92 of the direct time) the gain does not pay for that copy: at
# 1024x2048 it is 268 MB, and fcn_resnet101's process peaked at 2312 MiB with it, 2159-2195 without, at a speed
# within the runs' spread.
MIN_BLOCKED_WINOGRAD_CHANNELS = 128
# Kernel work for a convolution of an input this large waits for the input (kernel_after).
MIN_ORDERED_INPUT_BYTES = 32 * 2**20
# A residual sum this large or larger is added into its shortcut's buffer (conv2d_1x1_into), this many bytes of the
# product at a time. Below it the plain sum: InplaceAdd takes 1.7x a plain add's time (7.1 against 4.1 ms for
# 32 MiB), and at 32 MiB (ResNet-101's layer3 at 1024x2048 too) fcn's peak was no lower (1909-1965 MiB).
MIN_RESIDUAL_INTO_BYTES = 256 * 2**20
RESIDUAL_BLOCK_BYTES = 32 * 2**20
# At most this many bytes of tiles (or of products) at once. In one pass, FCN's head on a 1024x2048 image
# (2048 channels at 128x256) holds 1 GiB of tiles, and the process peaked at 2.1x GluonCV's memory.
MAX_BLOCK_BYTES = 64 * 2**20


def fast_convolutions_enabled():
    """Whether kseg's 3x3 ``Conv2D`` layers take :func:`conv2d_3x3` at inference here and now."""
    if not custom_kernels_allowed() or os.environ.get("KSEG_FAST_CONV", "1") == "0":
        return False
    return not tf.distribute.has_strategy() and accelerator() == "cpu"


def _combine(coefficients, parts):
    """``[sum_j c[i][j] * parts[j] for each row i]`` with the zero and unit terms left out."""
    rows = []
    for row in coefficients:
        total = None
        for c, part in zip(row, parts, strict=True):
            if c == 0:
                continue
            term = part if c == 1 else -part if c == -1 else part * float(c)
            total = term if total is None else total + term
        rows.append(total)
    return rows


def _transform_tiles(padded, th, tw):
    """``B^T d B`` for each of the ``th x tw`` 4x4 tiles (stride 2) of ``padded``, NHWC with 2 * th + 2 rows and
    2 * tw + 2 columns: 16 ``[tiles, C]`` planes, one per position in the transformed tile.

    Planes, not one ``[16, tiles, C]`` array: XLA:CPU writes a stack of 16 computed arrays at about half the
    speed of the 16 arrays themselves (60x60x256: 2.3 against 1.1 ms).
    """
    rows = _combine(_B_T, [padded[:, i : i + 2 * th : 2] for i in range(4)])
    channels = tf.shape(padded)[3]
    planes = []
    for row in rows:
        columns = _combine(_B_T, [row[:, :, i : i + 2 * tw : 2] for i in range(4)])
        planes += [tf.reshape(p, [-1, channels]) for p in columns]
    return planes


def _input_tiles(x):
    """``B^T d B`` for every 4x4 tile of NHWC ``x`` padded by one zero on each side ('same'): 16 planes."""
    shape = tf.shape(x)
    h, w = shape[1], shape[2]
    th, tw = (h + 1) // 2, (w + 1) // 2
    x = tf.pad(x, [[0, 0], [1, 2 * th + 1 - h], [1, 2 * tw + 1 - w], [0, 0]])
    return _transform_tiles(x, th, tw)


def _kernel_tiles(kernel):
    """``G g G^T`` of a ``[3, 3, C, K]`` kernel: 16 ``[C, K]`` planes (G's halves are exact in binary)."""
    rows = _combine(_G.tolist(), [kernel[i] for i in range(3)])
    planes = []
    for row in rows:
        planes += _combine(_G.tolist(), [row[j] for j in range(3)])
    return planes


def _products(tiles, kernels):
    """The 16 matrix products of Winograd's tile and kernel planes, each in TensorFlow's own kernel."""
    return [tf.matmul(t, k) for t, k in zip(tiles, kernels, strict=True)]


def _output_tiles(products, batch, h, w, scale, bias):
    """``A^T m A`` of every tile's 16 product planes (``[tiles, K]`` each), times ``scale`` plus ``bias`` (``[K]``
    each), assembled into ``[batch, h, w, K]`` (``batch`` may be -1)."""
    th, tw = (h + 1) // 2, (w + 1) // 2
    k = tf.shape(products[0])[-1]
    outputs = []
    for coefficients in _A_T:
        row = [_combine([coefficients], [products[4 * i + j] for i in range(4)])[0] for j in range(4)]
        outputs += [y * scale + bias for y in _combine(_A_T, row)]
    y = tf.reshape(tf.stack(outputs, axis=-2), [batch, th, tw, 4 * k])
    return tf.nn.depth_to_space(y, 2)[:, :h, :w, :]


@functools.cache
def _winograd_stages(dilation):
    """The two XLA-compiled halves around the matrix multiply, for one dilation.

    Both take only data tensors: a size passed as a tensor would have to be a
    compile-time constant, and in an enclosing XLA function that requirement
    spreads back to the input images (XLA would then fold the whole network
    into constants, one compilation per image).
    """

    def _sub_shape(x):
        """``[batch, height, width]`` of the ``dilation x dilation`` interleaved sub-images of ``x``."""
        shape = tf.shape(x)
        return shape[0] * dilation * dilation, -(-shape[1] // dilation), -(-shape[2] // dilation)

    def before(x, kernel):
        sub = x
        if dilation > 1:
            h, w = tf.shape(x)[1], tf.shape(x)[2]
            sub = tf.space_to_batch(x, [dilation, dilation], [[0, (-h) % dilation], [0, (-w) % dilation]])
        return _input_tiles(sub), _kernel_tiles(kernel)

    def after(products, x, scale, bias):
        """``x`` only lends its (static) shape."""
        y = _output_tiles(products, *_sub_shape(x), scale, bias)
        if dilation == 1:
            return y
        h, w = tf.shape(x)[1], tf.shape(x)[2]
        return tf.batch_to_space(y, [dilation, dilation], [[0, (-h) % dilation], [0, (-w) % dilation]])

    return tf.function(before, jit_compile=True), tf.function(after, jit_compile=True)


@functools.cache
def _block_stages(tile_rows, tile_cols):
    """The XLA-compiled halves around the matrix multiply for a block of ``tile_rows x tile_cols`` tiles, its
    input already padded: every block of a convolution has the same shapes, so one compilation serves them all
    (each costs the process about 10 MiB for good)."""

    def tiles(piece):
        return _transform_tiles(piece, tile_rows, tile_cols)

    def output(products, scale, bias):
        return _output_tiles(products, -1, 2 * tile_rows, 2 * tile_cols, scale, bias)

    return tf.function(tiles, jit_compile=True), tf.function(output, jit_compile=True)


def _first_element(x):
    """One element of ``x``: as an operation's input, it makes the operation wait for ``x`` at no cost."""
    return tf.reshape(x, [-1])[:1]


@functools.partial(tf.function, jit_compile=True)
def _kernel_tiles_after(kernel, gate):
    del gate  # only waited for (kernel_after)
    return _kernel_tiles(kernel)


@functools.partial(tf.function, jit_compile=True)
def _scaled_kernel_after(kernel, scale, gate):
    del gate  # only waited for (kernel_after)
    return kernel * scale


def kernel_after(inputs, kernel, scale):
    """``kernel * scale`` (per output channel): at inference a BatchNormalization's scale on the kernel of the
    convolution of ``inputs``; where ``inputs`` is large, computed only once it has been.

    Work on a kernel reads no image, so TensorFlow's executor may run every layer's at once, at the start, and
    hold all the results until their convolutions run: for a dilated ResNet-101, about 100 MB of scaled 1x1
    kernels and (on large images, in blocks) 200 MB of Winograd-transformed 3x3 ones. Where it matters, this runs
    in one XLA-compiled operation that also takes an element of ``inputs`` and ignores it: a data dependency,
    which TensorFlow's graph optimizer keeps (a control dependency on a fused convolution's input made graph
    cycles). fcn_resnet101 on a 1024x2048 image (2 threads): the process peaked at 2312 MiB with this, 2527-2539
    without. On inputs under :data:`MIN_ORDERED_INPUT_BYTES` (all of a 480x480 image's) the kernels' copies are
    not the peak, and running them early lets them overlap other work: ordered, fcn and deeplab_resnet101 took
    1.6% longer there.

    Example:
        >>> kernel_after(tf.ones([1, 8, 8, 2]), tf.ones([1, 1, 2, 3]), tf.constant([1.0, 2.0, 3.0]))[0, 0, 0].numpy()
        array([1., 2., 3.], dtype=float32)
    """
    kernel = tf.convert_to_tensor(kernel)
    scale = tf.convert_to_tensor(scale, kernel.dtype)
    inputs = tf.convert_to_tensor(inputs)
    elements = inputs.shape.num_elements()
    if elements is None or elements * inputs.dtype.size < MIN_ORDERED_INPUT_BYTES:
        return kernel * scale
    return _scaled_kernel_after(kernel, scale, _first_element(inputs))


def _even_split(total, most):
    """The size of the fewest equal parts of at most ``most`` that cover ``total``."""
    return -(-total // -(-total // most))


def _tile_grid(h, w, dilation):
    """``(sub-image height, width, tile rows, tile columns)`` of a dilated 3x3 convolution on ``h x w``."""
    sub_h, sub_w = -(-h // dilation), -(-w // dilation)
    return sub_h, sub_w, -(-sub_h // 2), -(-sub_w // 2)


def _block_tiles(shape, filters, dilation):
    """``(tile rows, tile columns)`` of the blocks to run one after the other when one pass would hold more
    than :data:`MAX_BLOCK_BYTES` of tiles or products; None when one pass holds less."""
    batch, h, w, c = shape
    if batch is None or h is None or w is None or c is None:
        return None
    _, _, rows, cols = _tile_grid(h, w, dilation)
    tiles = max(1, MAX_BLOCK_BYTES // (16 * batch * dilation**2 * max(c, filters) * 4))
    if tiles >= rows * cols:
        return None
    if tiles >= cols:
        return _even_split(rows, tiles // cols), cols
    return 1, _even_split(cols, tiles)


def _padded_piece(x, dilation, first, last, axis):
    """``x``'s rows (``axis`` 1) or columns (2) ``[first, last)`` of its sub-images, zeros outside the image."""
    size = x.shape[axis]
    first, last = first * dilation, last * dilation
    index = [slice(None)] * 4
    index[axis] = slice(max(first, 0), min(last, size))
    return x[tuple(index)], [max(0, -first), max(0, last - size)]


def _winograd_in_blocks(x, kernel, dilation, block, scale, bias):
    """Winograd over blocks of ``block = (tile rows, tile columns)`` tiles, one after the other.

    Each block reads its part of the input (with the one-pixel halo its tiles overlap by, and the 'same' padding
    at the image's edges), interleaved into its ``dilation x dilation`` sub-images, and runs to its output before
    the next block starts: only one block's input, tiles and products exist at a time.
    """
    _, h, w, _ = x.shape
    sub_h, sub_w, _, _ = _tile_grid(h, w, dilation)
    block_rows, block_cols = block
    transformed = _kernel_tiles_after(kernel, _first_element(x))  # not before x: see kernel_after
    tiles, output = _block_stages(block_rows, block_cols)
    rows, last_output = [], []
    for top in range(0, sub_h, 2 * block_rows):
        with tf.control_dependencies(last_output):  # in a graph too: one block at a time
            band, padding = _padded_piece(x, dilation, top - 1, top + 2 * block_rows + 1, 1)
        row = []
        for left in range(0, sub_w, 2 * block_cols):
            with tf.control_dependencies(last_output):
                piece, side = _padded_piece(band, dilation, left - 1, left + 2 * block_cols + 1, 2)
            if dilation > 1:
                piece = tf.space_to_batch(piece, [dilation, dilation], [padding, side])
            elif any(padding + side):
                piece = tf.pad(piece, [[0, 0], padding, side, [0, 0]])
            out = output(_products(tiles(piece), transformed), scale, bias)
            row.append(out[:, : sub_h - top, : sub_w - left])
            last_output = row[-1:]
        rows.append(row[0] if len(row) == 1 else tf.concat(row, axis=2))
    y = rows[0] if len(rows) == 1 else tf.concat(rows, axis=1)
    if dilation > 1:
        y = tf.batch_to_space(y, [dilation, dilation], [[0, (-h) % dilation], [0, (-w) % dilation]])
    return y


def conv2d_3x3_winograd(x, kernel, dilation=1, scale=None, bias=None):
    """``tf.nn.conv2d(x, kernel, 1, "SAME", dilations=dilation)`` by Winograd F(2x2, 3x3), times ``scale`` plus
    ``bias`` per output channel where given (in the output transform, at no extra pass).

    In one pass, or in blocks of tiles where one pass would hold too much memory.
    """
    x = tf.convert_to_tensor(x)
    kernel = tf.convert_to_tensor(kernel)
    dilation = int(dilation)
    scale = tf.ones([kernel.shape[-1]], x.dtype) if scale is None else tf.convert_to_tensor(scale, x.dtype)
    bias = tf.zeros([kernel.shape[-1]], x.dtype) if bias is None else tf.convert_to_tensor(bias, x.dtype)
    block = _block_tiles(x.shape, kernel.shape[-1], dilation)
    if block is not None:
        return _winograd_in_blocks(x, kernel, dilation, block, scale, bias)
    before, after = _winograd_stages(dilation)
    tiles, transformed = before(x, kernel)
    return after(_products(tiles, transformed), x, scale, bias)


def _valid_range(size, offset):
    """Output positions ``[start, stop)`` whose input ``position + offset`` lies inside ``[0, size)``."""
    return max(0, -offset), min(size, size - offset)


def padding_share(height, width, dilation):
    """The share of a 3x3 'same' convolution's products that multiply zero padding."""
    valid = 0
    for dy in (-dilation, 0, dilation):
        y0, y1 = _valid_range(height, dy)
        for dx in (-dilation, 0, dilation):
            x0, x1 = _valid_range(width, dx)
            valid += max(0, y1 - y0) * max(0, x1 - x0)
    return 1.0 - valid / (9 * height * width)


def conv2d_3x3_skip_padding(x, kernel, dilation):
    """The 'same' dilated 3x3 convolution as a sum of 1x1 products over each tap's valid region.

    Needs static height and width. The taps' products are summed in float32 (bfloat16 input too, as a direct
    convolution accumulates them), rounded to the input's dtype once at the end.
    """
    _, h, w, _ = x.shape
    out = None
    for i, dy in enumerate((-dilation, 0, dilation)):
        y0, y1 = _valid_range(h, dy)
        for j, dx in enumerate((-dilation, 0, dilation)):
            x0, x1 = _valid_range(w, dx)
            if y1 <= y0 or x1 <= x0:
                continue
            with tf.control_dependencies([] if out is None else [out]):  # in a graph too: one window at a time
                window = x[:, y0 + dy : y1 + dy, x0 + dx : x1 + dx, :]
            part = tf.cast(tf.tensordot(window, kernel[i, j], axes=1), tf.float32)
            if (y0, y1, x0, x1) != (0, h, 0, w):
                part = tf.pad(part, [[0, 0], [y0, h - y1], [x0, w - x1], [0, 0]])
            out = part if out is None else out + part
    return tf.cast(out, x.dtype)


def conv2d_3x3_space_to_batch(x, kernel, dilation):
    """The 'same' dilated 3x3 convolution as an undilated one on the ``d x d`` interleaved sub-images.

    Needs static height and width.
    """
    _, h, w, _ = x.shape
    padding = [[0, -h % dilation], [0, -w % dilation]]  # whole sub-images; the zeros are 'same' padding anyway
    sub_images = tf.space_to_batch_nd(x, [dilation, dilation], padding)
    y = tf.nn.conv2d(sub_images, kernel, 1, "SAME")
    return tf.batch_to_space(y, [dilation, dilation], padding)


def _form_3x3(x, kernel, dilation):
    """Which exact form of :func:`conv2d_3x3` is the cheapest for these (static) shapes."""
    _, h, w, c = x.shape
    k = kernel.shape[-1]
    if h is None or w is None or c is None or k is None:
        return "direct"
    if dilation > 1 and padding_share(h, w, dilation) >= MIN_SKIPPED_SHARE:
        return "skip_padding"
    if x.dtype == tf.bfloat16:  # oneDNN's dilated bfloat16 kernel is slow; Winograd would add bfloat16 roundings
        return "space_to_batch" if dilation > 1 else "direct"
    sub_h, sub_w, rows, cols = _tile_grid(h, w, dilation)
    tiles = (x.shape[0] or 1) * dilation**2 * rows * cols
    small = min(sub_h, sub_w) < MIN_WINOGRAD_SUBIMAGE or tiles < MIN_WINOGRAD_TILES
    few_channels = min(c, k) < MIN_WINOGRAD_CHANNELS or c * k < MIN_WINOGRAD_CHANNEL_PRODUCT
    few_for_blocks = min(c, k) < MIN_BLOCKED_WINOGRAD_CHANNELS and _block_tiles(x.shape, k, dilation) is not None
    return "direct" if few_channels or few_for_blocks or small else "winograd"


def conv2d_3x3(x, kernel, dilation=1, scale=None, bias=None):
    """A 'same', stride-1 3x3 convolution of NHWC float32 or bfloat16 ``x``, computed the cheapest exact way;
    times ``scale`` plus ``bias`` per output channel where given (a BatchNormalization folded in).

    Equals ``tf.nn.conv2d(x, kernel, 1, "SAME", dilations=dilation) * scale + bias`` up to rounding. Winograd
    applies them in its output transform; the other forms convolve with the kernel scaled.
    """
    x = tf.convert_to_tensor(x)
    kernel = tf.convert_to_tensor(kernel)
    form = _form_3x3(x, kernel, dilation)
    if form == "winograd":
        y = conv2d_3x3_winograd(x, kernel, dilation, scale, bias)
        y.set_shape(x.shape[:-1].concatenate([kernel.shape[-1]]))
        return y
    if scale is not None:
        kernel = kernel * scale
    if form == "skip_padding":
        y = conv2d_3x3_skip_padding(x, kernel, dilation)
    elif form == "space_to_batch":
        y = conv2d_3x3_space_to_batch(x, kernel, dilation)
    else:
        y = tf.nn.conv2d(x, kernel, 1, "SAME", dilations=dilation)
    return y if bias is None else tf.nn.bias_add(y, bias)


def _every_nth_pixel(x, n):
    """``x[:, ::n, ::n, :]``; where ``n`` divides the (static) height and width, by a reshape and a slice of whole
    pixels (ResNet's stride-2 shortcut on a 120x120x256 map: 0.4 ms against 5.6 ms for the strided slice)."""
    _, h, w, c = x.shape
    if h is None or w is None or c is None or h % n or w % n:
        return x[:, ::n, ::n, :]
    return tf.reshape(x, [-1, h // n, n, w // n, n * c])[:, :, 0, :, :c]


def conv2d_1x1(x, kernel, strides=1, bias=None):
    """``tf.nn.conv2d(x, kernel, strides, "VALID")`` of a ``[1, 1, C, K]`` kernel, as one matrix multiply; plus
    ``bias`` when given (added to the product before it takes the image's shape, where TensorFlow fuses the two).

    The same products, summed in another order. On the CPU, TensorFlow's (oneDNN's) float32 1x1 convolution
    is slower than its matrix multiply of the same shapes: ResNet-101's 60x60 maps (1024->256, 256->1024,
    1024->2048, 2048->512 channels) ran at 110/68/156/137 GFLOP/s as convolutions, 142/151/204/165 as
    ``[pixels, C] @ [C, K]`` (2 threads, Intel Xeon with AMX). In bfloat16 neither is consistently faster, and
    :class:`kseg.models.layers.Conv2D` keeps the convolution there.
    """
    x = tf.convert_to_tensor(x)
    if strides > 1:  # a 1x1 window with stride s reads every s-th pixel, from the first
        x = _every_nth_pixel(x, strides)
    shape = tf.shape(x)
    c, k = kernel.shape[2], kernel.shape[3]
    y = tf.matmul(tf.reshape(x, [-1, c]), tf.reshape(kernel, [c, k]))
    if bias is not None:
        y = tf.nn.bias_add(y, bias)
    y = tf.reshape(y, tf.concat([shape[:3], [k]], axis=0))
    y.set_shape(x.shape[:-1].concatenate([k]))
    return y


def conv2d_1x1_into(residual, x, kernel, bias=None, product=None):
    """``residual + conv2d_1x1(x, kernel, bias=bias)``: a ResNet block's last 1x1 convolution and its shortcut's sum.

    Where ``residual`` holds at least :data:`MIN_RESIDUAL_INTO_BYTES`, the product is made
    :data:`RESIDUAL_BLOCK_BYTES` of rows at a time and each block added into ``residual``'s own buffer
    (``InplaceAdd``), so neither the whole product nor a new sum is ever held: at Cityscapes' 1024x2048 a
    ResNet-101's layer4 product is 268 MB, beside a shortcut as large (fcn_resnet101's process peaked at
    1899-1910 MiB with this, 2190-2202 without, at the same speed). ``residual`` is overwritten: the caller
    passes a tensor nothing else reads after this (a block's shortcut, read before by the block's first
    convolution, which this product depends on). Smaller sums, eager calls, dynamic shapes and XLA (which has
    no ``InplaceAdd``) take the plain sum, of ``product`` where the caller has made the product already.

    Example:
        >>> x, kernel = tf.ones([1, 4, 4, 2]), tf.ones([1, 1, 2, 3])
        >>> conv2d_1x1_into(tf.ones([1, 4, 4, 3]), x, kernel)[0, 0, 0].numpy()
        array([3., 3., 3.], dtype=float32)
    """
    residual = tf.convert_to_tensor(residual)
    x = tf.convert_to_tensor(x)
    shape = residual.shape
    c, k = kernel.shape[2], kernel.shape[3]
    if (
        not shape.is_fully_defined()
        or shape.num_elements() * residual.dtype.size < MIN_RESIDUAL_INTO_BYTES
        or x.shape[:-1] != shape[:-1]
        or tf.executing_eagerly()
        or inside_xla()
    ):
        return residual + (conv2d_1x1(x, kernel, bias=bias) if product is None else product)
    rows = shape[:-1].num_elements()
    block = max(1, RESIDUAL_BLOCK_BYTES // (k * residual.dtype.size))
    pixels, weights = tf.reshape(x, [rows, c]), tf.reshape(kernel, [c, k])
    total = tf.reshape(residual, [rows, k])
    for start in range(0, rows, block):
        stop = min(rows, start + block)
        with tf.control_dependencies([total]):  # one block of the product at a time
            part = tf.matmul(pixels[start:stop], weights)
        if bias is not None:
            part = tf.nn.bias_add(part, bias)
        total = tf.raw_ops.InplaceAdd(x=total, i=tf.range(start, stop), v=part)
    return tf.reshape(total, shape)


__all__ = [
    "conv2d_1x1",
    "conv2d_1x1_into",
    "conv2d_3x3",
    "conv2d_3x3_skip_padding",
    "conv2d_3x3_space_to_batch",
    "conv2d_3x3_winograd",
    "fast_convolutions_enabled",
    "kernel_after",
    "padding_share",
]
