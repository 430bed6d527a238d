"""The fast exact 3x3 convolutions against TensorFlow's direct convolution in float64."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from kseg.models.layers import Conv2D
from kseg.ops import conv as fast_conv
from kseg.ops.runtime import stock_tf_ops


def _case(batch, height, width, channels, filters, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((batch, height, width, channels)).astype(np.float32)
    kernel = (rng.standard_normal((3, 3, channels, filters)) / np.sqrt(9 * channels)).astype(np.float32)
    return x, kernel


def _relative_errors(fast, x, kernel, dilation):
    """(fast's error, direct float32's error), both against float64."""
    exact = tf.nn.conv2d(x.astype(np.float64), kernel.astype(np.float64), 1, "SAME", dilations=dilation).numpy()
    direct = tf.nn.conv2d(x, kernel, 1, "SAME", dilations=dilation).numpy()
    fast = np.asarray(fast)
    assert fast.shape == exact.shape and fast.dtype == np.float32

    def error(y):
        return np.linalg.norm(y - exact) / np.linalg.norm(exact)

    return error(fast), error(direct)


def _assert_float32_exact(fast, x, kernel, dilation):
    error, direct_error = _relative_errors(fast, x, kernel, dilation)
    # Winograd F(2x2, 3x3) adds a few roundings to each output: same order as the direct convolution.
    assert error < max(4 * direct_error, 1e-6), (error, direct_error)


@pytest.mark.parametrize(
    "batch, height, width, channels, filters, dilation",
    [
        (1, 8, 8, 4, 5, 1),
        (3, 9, 13, 6, 7, 1),  # odd sizes: a partial last tile
        (2, 17, 10, 8, 3, 2),  # height not a multiple of the dilation
        (1, 21, 22, 5, 4, 3),
        (1, 30, 31, 16, 16, 4),
        (1, 1, 1, 3, 2, 1),
        (2, 2, 5, 3, 2, 2),  # smaller than the dilation along one axis
    ],
)
def test_winograd_equals_direct_convolution(batch, height, width, channels, filters, dilation):
    x, kernel = _case(batch, height, width, channels, filters)
    _assert_float32_exact(fast_conv.conv2d_3x3_winograd(x, kernel, dilation), x, kernel, dilation)


@pytest.mark.parametrize(
    "batch, height, width, dilation, budget, block",
    [
        (1, 9, 13, 1, 7, (1, 7)),  # a block per tile row, a partial last tile
        (1, 9, 13, 1, 3, (1, 3)),  # blocks of columns: the last runs past the image
        (2, 17, 10, 2, 6, (2, 3)),  # sub-images of odd height: the last block runs past the image
        (1, 30, 31, 4, 10, (2, 4)),
        (1, 30, 31, 4, 3, (1, 2)),  # blocks of columns of the sub-images (DeepLab's ASPP on large frames)
        (3, 11, 12, 1, 24, (3, 6)),  # 6 tile rows in blocks of 3 (two blocks cost the same as 4 + 2)
    ],
)
def test_winograd_in_blocks_equals_one_pass(monkeypatch, batch, height, width, dilation, budget, block):
    x, kernel = _case(batch, height, width, 6, 5, seed=height)
    one_pass = fast_conv.conv2d_3x3_winograd(x, kernel, dilation).numpy()
    tile_bytes = 16 * batch * dilation**2 * 6 * 4
    monkeypatch.setattr(fast_conv, "MAX_BLOCK_BYTES", budget * tile_bytes)
    assert fast_conv._block_tiles(x.shape, 5, dilation) == block
    blocks = fast_conv.conv2d_3x3_winograd(x, kernel, dilation)
    _assert_float32_exact(blocks, x, kernel, dilation)
    np.testing.assert_allclose(blocks, one_pass, rtol=0, atol=1e-6 * float(np.abs(one_pass).max()))
    graph = tf.function(lambda x: fast_conv.conv2d_3x3_winograd(x, kernel, dilation))(tf.constant(x))
    # A graph may run the products in another matmul kernel than eager execution: rounding apart.
    np.testing.assert_allclose(graph, blocks, rtol=0, atol=1e-6 * float(np.abs(one_pass).max()))


def test_large_images_take_winograd_in_blocks():
    # FCN's head on Cityscapes' full frame: 2048 channels at 128x256 would be 1 GiB of tiles in one pass.
    rows, cols = fast_conv._block_tiles((1, 128, 256, 2048), 512, 1)
    assert 16 * rows * cols * 2048 * 4 <= fast_conv.MAX_BLOCK_BYTES and cols == 128
    # DeepLab's ASPP at rate 12 there: one tile row of its 144 sub-images (11x22) would hold 208 MiB.
    rows, cols = fast_conv._block_tiles((1, 128, 256, 2048), 256, 12)
    assert 16 * 144 * rows * cols * 2048 * 4 <= fast_conv.MAX_BLOCK_BYTES and rows == 1
    assert fast_conv._block_tiles((1, 60, 60, 512), 512, 4) is None  # 480x480's stage 4: one pass


def test_large_64_to_128_convolutions_take_the_direct_form_rather_than_blocks(calls, monkeypatch):
    """In blocks, Winograd's output is concatenated (a second copy of it): the stem's 64 -> 128 convolution, which
    Winograd speeds up little, goes direct where it would need blocks; 128 channels keep Winograd in blocks."""
    monkeypatch.setattr(fast_conv, "MAX_BLOCK_BYTES", 2**20)  # 46x46: 529 tiles of 64 channels are 2.1 MiB
    x, kernel = _case(1, 46, 46, 64, 128)
    _assert_float32_exact(fast_conv.conv2d_3x3(x, kernel), x, kernel, 1)
    assert calls == []  # in one pass it takes Winograd: test_conv2d_3x3_picks_the_cheaper_exact_form
    x, kernel = _case(1, 46, 46, 128, 128)
    _assert_float32_exact(fast_conv.conv2d_3x3(x, kernel), x, kernel, 1)
    assert calls == ["conv2d_3x3_winograd"] and fast_conv._block_tiles(x.shape, 128, 1) is not None


def _depends_on(tensor, source):
    """Whether ``tensor`` is computed from ``source`` in their graph (data edges)."""
    seen, stack = set(), [tensor.op]
    while stack:
        op = stack.pop()
        if op is source.op:
            return True
        if op.name not in seen:
            seen.add(op.name)
            stack.extend(t.op for t in op.inputs)
    return False


@pytest.mark.parametrize("side, ordered", [(64, False), (128, True)])  # 8 and 32 MiB of 512 channels
def test_kernel_work_waits_for_a_large_input(side, ordered):
    """Scaling a kernel reads no image: on a large input it is made to wait for it (a data edge), else the executor
    may scale every layer's kernel at the start and hold the copies."""
    rng = np.random.default_rng(0)
    kernel = tf.constant(rng.standard_normal((1, 1, 512, 4)).astype(np.float32))
    scale = tf.constant(rng.standard_normal(4).astype(np.float32))
    seen = {}

    def scaled(x):
        seen["x"], seen["kernel"] = x, fast_conv.kernel_after(x, kernel, scale)
        return seen["kernel"]

    spec = tf.TensorSpec([1, side, side, 512], tf.float32)
    tf.function(scaled).get_concrete_function(spec)
    assert _depends_on(seen["kernel"], seen["x"]) == ordered
    np.testing.assert_array_equal(fast_conv.kernel_after(tf.zeros(spec.shape), kernel, scale), kernel * scale)


def test_winograd_blocks_transform_the_kernel_once_their_input_is_there(monkeypatch):
    monkeypatch.setattr(fast_conv, "MAX_BLOCK_BYTES", 2**20)
    gates, original = [], fast_conv._kernel_tiles_after

    def spy(kernel, gate):
        gates.append(gate)
        return original(kernel, gate)

    monkeypatch.setattr(fast_conv, "_kernel_tiles_after", spy)
    _, kernel = _case(1, 46, 46, 128, 128)
    seen = {}

    def convolve(x):
        seen["x"] = x
        return fast_conv.conv2d_3x3_winograd(x, kernel)

    tf.function(convolve).get_concrete_function(tf.TensorSpec([1, 46, 46, 128], tf.float32))
    assert len(gates) == 1 and _depends_on(gates[0], seen["x"])


@pytest.mark.parametrize(
    "shape, filters, dilation, budget, form",
    [
        ((2, 40, 34, 128), 130, 2, None, "conv2d_3x3_winograd"),
        ((1, 48, 46, 128), 128, 1, 200, "conv2d_3x3_winograd"),  # in blocks
        ((1, 30, 30, 8), 6, 12, None, "conv2d_3x3_skip_padding"),
        ((2, 9, 13, 8), 6, 1, None, None),  # oneDNN's own convolution
    ],
)
def test_scale_and_bias_are_applied_in_every_form(calls, monkeypatch, shape, filters, dilation, budget, form):
    """A BatchNormalization folded in: Winograd applies it in its output transform, the others to the kernel."""
    x, kernel = _case(*shape, filters)
    rng = np.random.default_rng(3)
    scale = rng.uniform(0.5, 2.0, filters).astype(np.float32)
    bias = rng.standard_normal(filters).astype(np.float32)
    if budget:
        monkeypatch.setattr(fast_conv, "MAX_BLOCK_BYTES", budget * 16 * 128 * 4)
        assert fast_conv._block_tiles(x.shape, filters, dilation) is not None
    y = fast_conv.conv2d_3x3(x, kernel, dilation, scale=scale, bias=bias)
    assert calls == ([form] if form else [])
    exact = tf.nn.conv2d(x.astype(np.float64), kernel.astype(np.float64), 1, "SAME", dilations=dilation).numpy()
    exact = exact * scale + bias
    assert np.linalg.norm(y - exact) / np.linalg.norm(exact) < 1e-6


@pytest.mark.parametrize(
    "batch, height, width, dilation",
    [(1, 30, 30, 12), (2, 31, 17, 24), (1, 10, 10, 36), (1, 30, 30, 1), (1, 9, 40, 8)],
)
def test_skipping_padding_taps_equals_direct_convolution(batch, height, width, dilation):
    x, kernel = _case(batch, height, width, 8, 6, seed=dilation)
    _assert_float32_exact(fast_conv.conv2d_3x3_skip_padding(tf.constant(x), kernel, dilation), x, kernel, dilation)


@pytest.mark.parametrize(
    "batch, height, width, dilation",
    [(1, 30, 30, 12), (2, 31, 17, 4), (1, 5, 9, 6), (3, 9, 40, 2), (1, 7, 7, 1)],  # odd: a part of a sub-image
)
def test_space_to_batch_equals_direct_convolution(batch, height, width, dilation):
    x, kernel = _case(batch, height, width, 8, 6, seed=dilation)
    _assert_float32_exact(fast_conv.conv2d_3x3_space_to_batch(tf.constant(x), kernel, dilation), x, kernel, dilation)


@pytest.mark.parametrize("height, width, dilation", [(60, 60, 36), (60, 60, 12), (7, 30, 2), (5, 5, 9), (13, 1, 1)])
def test_padding_share_counts_zero_products(height, width, dilation):
    # Count by brute force: each output pixel and tap whose input lies outside the image.
    outside = 0
    for y in range(height):
        for x in range(width):
            for dy in (-dilation, 0, dilation):
                for dx in (-dilation, 0, dilation):
                    outside += not (0 <= y + dy < height and 0 <= x + dx < width)
    assert fast_conv.padding_share(height, width, dilation) == pytest.approx(outside / (9 * height * width))


@pytest.fixture
def calls(monkeypatch):
    """Which fast form each conv2d_3x3 call took."""
    taken = []
    for name in ("conv2d_3x3_winograd", "conv2d_3x3_skip_padding", "conv2d_3x3_space_to_batch"):
        original = getattr(fast_conv, name)

        def spy(*args, _original=original, _name=name, **kwargs):
            taken.append(_name)
            return _original(*args, **kwargs)

        monkeypatch.setattr(fast_conv, name, spy)
    return taken


@pytest.mark.parametrize(
    "shape, filters, dilation, expected",
    [
        ((1, 46, 46, 128), 128, 1, "conv2d_3x3_winograd"),
        ((2, 40, 33, 128), 256, 4, "conv2d_3x3_winograd"),
        ((1, 60, 60, 8), 8, 36, "conv2d_3x3_skip_padding"),  # 64% of the products are zeros
        ((1, 46, 46, 64), 128, 1, "conv2d_3x3_winograd"),  # the deep stem's third convolution
        ((1, 46, 46, 64), 64, 1, None),  # too few channels to pay for the transforms
        ((1, 46, 46, 32), 256, 1, None),
        ((1, 20, 20, 128), 128, 3, None),  # 7x7 sub-images: too small, and 19% padding products
        ((1, 24, 24, 256), 256, 1, None),  # 144 tiles: too few to pay for the kernel's transform
    ],
)
def test_conv2d_3x3_picks_the_cheaper_exact_form(calls, shape, filters, dilation, expected):
    x, kernel = _case(*shape, filters)
    y = fast_conv.conv2d_3x3(x, kernel, dilation)
    assert calls == ([expected] if expected else [])
    _assert_float32_exact(y, x, kernel, dilation)


@pytest.mark.parametrize(
    "shape, dilation, expected",
    [
        ((1, 60, 60, 16), 12, "conv2d_3x3_skip_padding"),  # ASPP at 480x480: 25% of the products are zeros
        ((2, 33, 20, 16), 2, "conv2d_3x3_space_to_batch"),
        ((1, 128, 256, 8), 12, "conv2d_3x3_space_to_batch"),  # ASPP on Cityscapes' full frame: 9% zeros
        ((1, 46, 46, 128), 1, None),  # oneDNN's own bfloat16 convolution: never Winograd
    ],
)
def test_bfloat16_takes_the_dilated_forms_that_are_fast_in_bfloat16(calls, shape, dilation, expected):
    x, kernel = _case(*shape, 16)
    x16, kernel16 = tf.cast(x, tf.bfloat16), tf.cast(kernel, tf.bfloat16)
    y = fast_conv.conv2d_3x3(x16, kernel16, dilation)
    assert calls == ([expected] if expected else []) and y.dtype == tf.bfloat16 and y.shape == (*shape[:3], 16)
    # Against float32 on the same bfloat16-rounded numbers: bfloat16's 8-bit mantissa (2^-9 = 2e-3), once per tap
    # in the skipping form, which sums the taps in float32.
    exact = tf.nn.conv2d(tf.cast(x16, tf.float32), tf.cast(kernel16, tf.float32), 1, "SAME", dilations=dilation)
    assert np.linalg.norm(tf.cast(y, tf.float32) - exact) / np.linalg.norm(exact) < 4e-3


def test_unknown_sizes_take_the_direct_convolution(calls):
    x, kernel = _case(1, 46, 46, 128, 128)
    relaxed = tf.function(
        lambda x: fast_conv.conv2d_3x3(x, kernel), input_signature=[tf.TensorSpec([None, None, None, 128])]
    )
    y = relaxed(x)
    assert calls == []
    _assert_float32_exact(y, x, kernel, 1)


def test_inside_an_xla_function(calls):
    x, kernel = _case(2, 48, 36, 128, 128)
    compiled = tf.function(lambda x: fast_conv.conv2d_3x3(x, kernel, 2), jit_compile=True)
    y = compiled(x)
    assert calls == ["conv2d_3x3_winograd"]
    _assert_float32_exact(y, x, kernel, 2)
    other, _ = _case(2, 48, 36, 128, 128, seed=5)
    _assert_float32_exact(compiled(other), other, kernel, 2)


def test_xla_stages_take_data_tensors_only():
    # A size passed between the stages as a tensor must be a compile-time constant; in an enclosing XLA
    # function that spreads back to the images, and XLA folds the whole network into constants.
    x, kernel = _case(1, 12, 10, 4, 3)
    before, after = fast_conv._winograd_stages(2)
    tiles, transformed = before(x, kernel)
    products = fast_conv._products(tiles, transformed)
    scale, bias = tf.ones([3]), tf.zeros([3])
    for stage, args in ((before, (x, kernel)), (after, (products, x, scale, bias))):
        inputs = stage.get_concrete_function(*args).inputs
        assert [t.dtype for t in inputs] == [tf.float32] * len(tf.nest.flatten(args))


def _layer(dilation=2, **kwargs):
    layer = Conv2D(128, 3, padding="same", dilation_rate=dilation, use_bias=True, activation="relu", **kwargs)
    layer.build((None, None, None, 128))
    rng = np.random.default_rng(1)
    layer.set_weights([w + rng.standard_normal(w.shape).astype(np.float32) * 0.1 for w in layer.get_weights()])
    return layer


def test_layer_inference_equals_keras_convolution(calls):
    layer = _layer()
    x, _ = _case(2, 46, 47, 128, 1)
    fast = layer(x, training=False)
    assert calls == ["conv2d_3x3_winograd"]
    with stock_tf_ops():
        direct = layer(x, training=False)
    assert calls == ["conv2d_3x3_winograd"]
    expected = keras.layers.Conv2D.call(layer, tf.constant(x))
    np.testing.assert_allclose(direct, expected, rtol=0, atol=0)
    np.testing.assert_allclose(fast, direct, atol=2e-5 * float(np.abs(direct).max()))


def test_layer_training_mixed_precision_and_switches_take_keras_convolution(calls, monkeypatch):
    x, _ = _case(1, 46, 46, 128, 1)
    layer = _layer()
    with tf.GradientTape() as tape:
        loss = tf.reduce_sum(layer(x, training=True))
    assert all(g is not None for g in tape.gradient(loss, layer.trainable_weights)) and loss.dtype == tf.float32
    assert calls == []

    layer_bf16 = _layer(dtype="mixed_bfloat16")
    with tf.GradientTape() as tape:
        loss = tf.reduce_sum(tf.cast(layer_bf16(x, training=True), tf.float32))
    assert all(g is not None for g in tape.gradient(loss, layer_bf16.trainable_weights))
    assert calls == []

    with tf.distribute.MirroredStrategy(["CPU:0"]).scope():
        assert not fast_conv.fast_convolutions_enabled()
        layer(x, training=False)
    assert calls == []

    monkeypatch.setenv("KSEG_FAST_CONV", "0")
    assert not fast_conv.fast_convolutions_enabled()
    layer(x, training=False)
    assert calls == []


def test_layer_inference_in_bfloat16_equals_keras_convolution(calls):
    layer = _layer(dilation=4, dtype="mixed_bfloat16")
    x, _ = _case(2, 30, 31, 128, 1)
    fast = layer(x, training=False)
    assert calls == ["conv2d_3x3_space_to_batch"] and fast.dtype == tf.bfloat16
    with stock_tf_ops():  # Keras' own convolution
        expected = layer(x, training=False)
    assert calls == ["conv2d_3x3_space_to_batch"] and expected.dtype == tf.bfloat16
    np.testing.assert_allclose(tf.cast(fast, tf.float32), tf.cast(expected, tf.float32),
                               atol=1e-2 * float(np.abs(tf.cast(expected, tf.float32)).max()))  # fmt: skip


def test_layer_config_round_trip():
    layer = _layer(dilation=3)
    clone = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(layer))
    assert type(clone) is Conv2D and clone.get_config() == layer.get_config()


@pytest.mark.parametrize(
    "batch, height, width, strides",
    [(1, 8, 8, 1), (2, 9, 13, 1), (2, 9, 13, 2), (1, 1, 1, 2), (2, 12, 8, 2), (1, 9, 6, 3)],  # last two: a reshape
)
def test_conv2d_1x1_equals_tf_convolution(batch, height, width, strides):
    rng = np.random.default_rng(3)
    x = rng.standard_normal((batch, height, width, 6)).astype(np.float32)
    kernel = rng.standard_normal((1, 1, 6, 5)).astype(np.float32)
    relaxed = tf.function(
        lambda x: fast_conv.conv2d_1x1(x, kernel, strides), input_signature=[tf.TensorSpec([None, None, None, 6])]
    )
    expected = tf.nn.conv2d(x, kernel, strides, "VALID").numpy()
    for y in (fast_conv.conv2d_1x1(x, kernel, strides), relaxed(x)):
        assert y.shape == expected.shape
        np.testing.assert_allclose(y, expected, rtol=1e-6, atol=1e-6)


def _op_types(fn, *args):
    """The types of the operations ``fn`` traces for tensors shaped as ``args``, one entry per operation."""
    graph = tf.function(fn).get_concrete_function(*[tf.TensorSpec(a.shape, a.dtype) for a in args]).graph
    return [op.type for op in graph.get_operations()]


@pytest.mark.parametrize("strides", [1, 2])
def test_layer_inference_takes_a_matmul_for_float32_1x1(strides):
    layer = Conv2D(7, 1, strides=strides, use_bias=True, activation="relu")
    x = tf.constant(np.random.default_rng(4).standard_normal((2, 11, 12, 5)), tf.float32)
    layer.build(x.shape)
    layer.bias.assign(np.linspace(-1, 1, 7))
    expected = keras.layers.Conv2D.call(layer, x)
    ops = _op_types(lambda x: layer(x, training=False), x)
    assert "MatMul" in ops and "Conv2D" not in ops
    np.testing.assert_allclose(layer(x, training=False), expected, rtol=1e-6, atol=1e-6)
    assert "Conv2D" in _op_types(lambda x: layer(x, training=True), x)
    with stock_tf_ops():
        assert "Conv2D" in _op_types(lambda x: layer(x, training=False), x)
    bf16 = Conv2D(7, 1, dtype="mixed_bfloat16")
    bf16.build(x.shape)
    assert "Conv2D" in _op_types(lambda x: bf16(x, training=False), x)  # oneDNN's bfloat16 1x1 is as fast


@pytest.mark.parametrize("rows_per_block, bias", [(7, True), (16, False), (10_000, True)])
def test_conv2d_1x1_into_adds_the_product_into_the_residual_in_blocks(monkeypatch, rows_per_block, bias):
    rng = np.random.default_rng(3)
    x = tf.constant(rng.standard_normal((2, 5, 9, 6)).astype(np.float32))  # 90 rows: uneven blocks of 7
    kernel = tf.constant(rng.standard_normal((1, 1, 6, 4)).astype(np.float32))
    offset = tf.constant(rng.standard_normal(4).astype(np.float32)) if bias else None
    residual = rng.standard_normal((2, 5, 9, 4)).astype(np.float32)
    monkeypatch.setattr(fast_conv, "MIN_RESIDUAL_INTO_BYTES", 0)
    monkeypatch.setattr(fast_conv, "RESIDUAL_BLOCK_BYTES", rows_per_block * 4 * 4)

    # The residual is made inside the function, as a block's shortcut is: the sum may overwrite it.
    def into(r, x):
        return fast_conv.conv2d_1x1_into(r * 1.0, x, kernel, offset)

    expected = residual + fast_conv.conv2d_1x1(x, kernel, bias=offset).numpy()
    np.testing.assert_allclose(tf.function(into)(residual, x).numpy(), expected, rtol=1e-6, atol=1e-6)
    blocks = -(-90 // min(rows_per_block, 90))
    assert _op_types(into, residual, x).count("InplaceAdd") == blocks


def test_conv2d_1x1_into_takes_the_plain_sum_when_small_or_eager():
    x, kernel = tf.ones([1, 4, 4, 2]), tf.ones([1, 1, 2, 3])
    residual = tf.ones([1, 4, 4, 3])
    small_ops = _op_types(lambda r, x: fast_conv.conv2d_1x1_into(r * 1.0, x, kernel), residual, x)
    assert "InplaceAdd" not in small_ops
    # A product the caller has already made is added as it is, not made again.
    reused = _op_types(lambda r, x, p: fast_conv.conv2d_1x1_into(r, x, kernel, product=p), residual, x, residual)
    assert "MatMul" not in reused and "AddV2" in reused
    # Eager: the caller's tensor is left as it was.
    np.testing.assert_array_equal(fast_conv.conv2d_1x1_into(residual, x, kernel), np.full([1, 4, 4, 3], 3.0))
    np.testing.assert_array_equal(residual, np.ones([1, 4, 4, 3]))


def test_conv2d_1x1_into_inside_an_xla_function(monkeypatch):
    monkeypatch.setattr(fast_conv, "MIN_RESIDUAL_INTO_BYTES", 0)
    x, kernel = tf.ones([1, 4, 4, 2]), tf.ones([1, 1, 2, 3])
    compiled = tf.function(lambda r, x: fast_conv.conv2d_1x1_into(r * 1.0, x, kernel), jit_compile=True)
    np.testing.assert_array_equal(compiled(tf.ones([1, 4, 4, 3]), x), np.full([1, 4, 4, 3], 3.0))
