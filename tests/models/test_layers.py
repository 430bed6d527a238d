"""kseg's drop-in Keras layers give Keras' own results with the same weights."""

import json

import keras
import numpy as np
import pytest
import tensorflow as tf

from kseg.models.layers import After, ConcatConv2D, Conv2DTranspose


def pair(kernel, strides, filters=6, channels=5, use_bias=True):
    ours = Conv2DTranspose(filters, kernel, strides=strides, use_bias=use_bias)
    theirs = keras.layers.Conv2DTranspose(filters, kernel, strides=strides, use_bias=use_bias)
    ours.build((None, None, None, channels))
    theirs.build((None, None, None, channels))
    rng = np.random.default_rng(0)
    theirs.set_weights([rng.standard_normal(w.shape).astype("float32") for w in theirs.get_weights()])
    ours.set_weights(theirs.get_weights())
    return ours, theirs


@pytest.mark.parametrize("kernel", [2, 3])
@pytest.mark.parametrize("shape", [(1, 7, 7), (2, 5, 9)])
def test_transposed_convolution_equals_keras(kernel, shape):
    ours, theirs = pair(kernel, kernel)
    assert ours._is_pixel_shuffle()
    x = np.random.default_rng(1).standard_normal((*shape, 5)).astype("float32")
    np.testing.assert_allclose(ours(x), theirs(x), rtol=1e-5, atol=1e-5)


def test_overlapping_windows_keep_keras_path():
    ours, theirs = pair(3, 2, use_bias=False)
    assert not ours._is_pixel_shuffle()
    x = np.random.default_rng(2).standard_normal((2, 4, 6, 5)).astype("float32")
    np.testing.assert_allclose(ours(x), theirs(x), rtol=1e-6, atol=1e-6)


def test_output_padding_keeps_keras_path():
    ours = Conv2DTranspose(4, 2, strides=2, output_padding=1)
    theirs = keras.layers.Conv2DTranspose(4, 2, strides=2, output_padding=1)
    x = np.random.default_rng(4).standard_normal((1, 3, 5, 5)).astype("float32")
    theirs(x)
    ours(x)
    ours.set_weights(theirs.get_weights())
    assert not ours._is_pixel_shuffle()
    np.testing.assert_allclose(ours(x), theirs(x), rtol=1e-6, atol=1e-6)
    assert ours(x).shape == (1, 7, 11, 4)


def test_transposed_convolution_gradients_equal_keras():
    ours, theirs = pair(2, 2)
    x = tf.constant(np.random.default_rng(3).standard_normal((2, 3, 4, 5)).astype("float32"))
    grads = []
    for layer in (ours, theirs):
        with tf.GradientTape() as tape:
            tape.watch(x)
            loss = tf.reduce_sum(tf.square(layer(x)))
        grads.append(tape.gradient(loss, [x, *layer.trainable_variables]))
    for a, b in zip(*grads, strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-4)


def test_transposed_convolution_config_round_trip():
    ours, _ = pair(2, 2)
    clone = Conv2DTranspose.from_config(ours.get_config())
    assert clone.get_config() == ours.get_config()
    restored = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(ours))
    assert isinstance(restored, Conv2DTranspose)


# -- Every registered kseg layer through the shared harness ---------------------------------------------------------
def _layer_cases():
    from kseg.models.layers import (
        AdaptiveAveragePooling2D,
        BatchNormalization,
        Conv2D,
        PaddedMaxPooling2D,
        ResidualAdd,
        ResizeLike,
    )
    from kseg.models.mask_rcnn.network import CropLike

    image, small = (1, 13, 17, 4), (1, 5, 6, 4)
    return {
        "kseg>AdaptiveAveragePooling2D": (lambda **kw: AdaptiveAveragePooling2D((2, 3), **kw), [image]),
        "kseg>After": (lambda **kw: After(**kw), [image, small]),
        "kseg>BatchNormalization": (lambda **kw: BatchNormalization(**kw), [image]),
        "kseg>ConcatConv2D": (lambda **kw: ConcatConv2D(6, 3, padding="same", **kw), [image, (1, 13, 17, 2)]),
        "kseg>Conv2D": (lambda **kw: Conv2D(6, 3, padding="same", dilation_rate=2, **kw), [image]),
        "kseg>Conv2DTranspose": (lambda **kw: Conv2DTranspose(6, 2, strides=2, **kw), [small]),
        "kseg>CropLike": (lambda **kw: CropLike(**kw), [image, small]),
        "kseg>PaddedMaxPooling2D": (lambda **kw: PaddedMaxPooling2D(3, 2, 1, **kw), [image]),
        "kseg>ResidualAdd": (lambda **kw: ResidualAdd(**kw), [image, image]),
        "kseg>ResizeLike": (lambda **kw: ResizeLike(**kw), [small, image]),
    }


def _registered_layers():
    import kseg.models  # noqa: F401 - registers the layers

    return sorted(
        name
        for name, obj in keras.saving.get_custom_objects().items()
        if name.startswith("kseg>") and issubclass(obj, keras.layers.Layer) and not issubclass(obj, keras.Model)
    )


def test_every_registered_layer_has_a_harness_case():
    assert _registered_layers() == sorted(_layer_cases())


@pytest.mark.parametrize("name", sorted(_layer_cases()))
def test_layer_harness(name, tmp_path):
    """Output shape as declared, config and JSON round trips with the dtype policy, and a .keras file."""
    factory, shapes = _layer_cases()[name]
    rng = np.random.default_rng(0)
    values = [rng.standard_normal(shape).astype("float32") for shape in shapes]
    layer = factory(dtype="mixed_bfloat16")
    args = values if len(values) > 1 else values[0]
    out = layer(args)
    declared = layer.compute_output_shape([v.shape for v in values] if len(values) > 1 else values[0].shape)
    assert tuple(out.shape) == tuple(declared)
    assert out.dtype == tf.bfloat16

    config = layer.get_config()
    assert type(layer).from_config(config).get_config() == config
    restored = keras.saving.deserialize_keras_object(json.loads(json.dumps(keras.saving.serialize_keras_object(layer))))
    assert isinstance(restored, type(layer)) and restored.dtype_policy.name == "mixed_bfloat16"

    inputs = [keras.Input(v.shape[1:]) for v in values]
    model = keras.Model(inputs, factory()(inputs if len(inputs) > 1 else inputs[0]))
    expected = model(values)
    model.save(tmp_path / "layer.keras")
    reloaded = keras.models.load_model(tmp_path / "layer.keras")
    np.testing.assert_allclose(reloaded(values), expected, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize(
    "make",
    [
        lambda: __import__("kseg.training", fromlist=["GluonSGD"]).GluonSGD(0.1, 0.9, 1e-4, {"a": 10.0}),
        lambda: __import__("kseg.training", fromlist=["PolyLearningRate"]).PolyLearningRate(0.1, 100, 0.9, 5),
        lambda: __import__("kseg.metrics", fromlist=["MeanIoU"]).MeanIoU(5),
        lambda: __import__("kseg.metrics", fromlist=["PixelAccuracy"]).PixelAccuracy(5),
        lambda: __import__("kseg.losses", fromlist=["SegmentationCrossEntropy"]).SegmentationCrossEntropy(),
    ],
)
def test_registered_training_objects_round_trip(make):
    obj = make()
    restored = keras.saving.deserialize_keras_object(json.loads(json.dumps(keras.saving.serialize_keras_object(obj))))
    assert type(restored) is type(obj) and restored.get_config() == obj.get_config()


@pytest.mark.parametrize(
    ("pool", "strides", "padding", "shape"),
    [(3, 2, 1, (2, 11, 16, 3)), (3, 2, 1, (1, 8, 7, 2)), (3, 1, 1, (1, 5, 6, 2)), (2, 2, 1, (1, 7, 9, 2))],
)
@pytest.mark.parametrize("fast", [True, False])
def test_padded_max_pooling_equals_minus_infinity_padding(pool, strides, padding, shape, fast, monkeypatch):
    """TensorFlow's own padding (CPU inference) and mirror padding (elsewhere, where the padding is at most half
    the window) take the maxima and gradients of MXNet's -inf padding, negative inputs included; (2, 2, 1) keeps
    -inf padding."""
    from kseg.models.layers import PaddedMaxPooling2D

    monkeypatch.setenv("KSEG_FAST_CONV", "1" if fast else "0")

    x = tf.constant(np.random.default_rng(0).normal(size=shape).astype("float32") - 1.0)
    layer = PaddedMaxPooling2D(pool, strides, padding)

    def reference(inputs):
        p = [[0, 0], [padding, padding], [padding, padding], [0, 0]]
        return tf.nn.max_pool2d(tf.pad(inputs, p, constant_values=float("-inf")), pool, strides, "VALID")

    with tf.GradientTape(persistent=True) as tape:
        tape.watch(x)
        ours, theirs = layer(x), reference(x)
        weights = tf.random.stateless_normal(tf.shape(theirs), seed=[1, 2])
        ours_sum, theirs_sum = tf.reduce_sum(ours * weights), tf.reduce_sum(theirs * weights)
    np.testing.assert_array_equal(ours.numpy(), theirs.numpy())
    np.testing.assert_allclose(tape.gradient(ours_sum, x).numpy(), tape.gradient(theirs_sum, x).numpy(), atol=1e-6)


def test_padded_max_pooling_makes_no_padded_copy_at_cpu_inference():
    from kseg.models.layers import PaddedMaxPooling2D

    layer = PaddedMaxPooling2D(3, 2, 1)
    graph = tf.function(lambda x: layer(x, training=False)).get_concrete_function(tf.TensorSpec([1, 16, 16, 4])).graph
    kinds = {op.type for op in graph.get_operations()}
    assert "MaxPool" in kinds and not kinds & {"Pad", "PadV2", "MirrorPad"}
    x = tf.constant(np.random.default_rng(0).normal(size=(1, 9, 10, 2)).astype("float32"))
    np.testing.assert_array_equal(tf.function(layer, jit_compile=True)(x), layer(x))  # XLA: padded first


# -- ConcatConv2D: the convolution of a concatenation, without making it ---------------------------------------------
def _concat_case(kernel_size, dilation):
    rng = np.random.default_rng(kernel_size + dilation)
    parts = [rng.standard_normal((2, 11, 13, channels)).astype("float32") for channels in (3, 5, 4)]
    layer = ConcatConv2D(6, kernel_size, padding="same", dilation_rate=dilation, use_bias=True)
    layer.build([part.shape for part in parts])
    layer.set_weights([rng.standard_normal(w.shape).astype("float32") for w in layer.get_weights()])
    kernel, bias = layer.get_weights()
    assert kernel.shape == (kernel_size, kernel_size, 12, 6)
    expected = tf.nn.conv2d(np.concatenate(parts, axis=-1), kernel, 1, "SAME", dilations=dilation) + bias
    return layer, parts, expected.numpy()


@pytest.mark.parametrize(("kernel_size", "dilation"), [(1, 1), (3, 1), (3, 2)])
@pytest.mark.parametrize("fast", [True, False])
def test_concat_convolution_equals_the_convolution_of_the_concatenation(kernel_size, dilation, fast, monkeypatch):
    monkeypatch.setenv("KSEG_FAST_CONV", "1" if fast else "0")
    layer, parts, expected = _concat_case(kernel_size, dilation)
    assert layer._sums_inputs(training=False) is fast
    assert not layer._sums_inputs(training=True)
    np.testing.assert_allclose(layer(parts, training=False), expected, rtol=1e-5, atol=1e-4)
    np.testing.assert_allclose(layer(parts, training=True), expected, rtol=1e-5, atol=1e-4)
    graph = tf.function(lambda *p: layer(list(p), training=False))(*parts)
    np.testing.assert_allclose(graph, expected, rtol=1e-5, atol=1e-4)


def _traced_ops(function, parts):
    specs = [tf.TensorSpec(part.shape) for part in parts]
    return tf.function(function).get_concrete_function(*specs).graph.get_operations()


def test_concat_convolution_sums_products_one_input_at_a_time_at_cpu_inference():
    layer, parts, _ = _concat_case(1, 1)
    inference = _traced_ops(lambda *p: layer(list(p), training=False), parts)
    assert "ConcatV2" not in [op.type for op in inference]
    products = [op for op in inference if op.type == "Conv2D"]
    assert len(products) == 3
    # the second and third product wait for the sum so far, so one product at a time is held
    assert [len(op.control_inputs) for op in products] == [0, 1, 1]
    training = _traced_ops(lambda *p: layer(list(p), training=True), parts)
    assert [op.type for op in training].count("ConcatV2") == 1
    assert [op.type for op in training].count("Conv2D") == 1


def test_concat_convolution_in_a_model_loads_the_concatenations_weights(tmp_path):
    inputs = [keras.Input((None, None, 3)), keras.Input((None, None, 5))]
    plain = keras.Model(inputs, keras.layers.Conv2D(4, 3, padding="same")(keras.layers.Concatenate()(inputs)))
    ours = keras.Model(inputs, ConcatConv2D(4, 3, padding="same")(inputs))
    rng = np.random.default_rng(3)
    plain.set_weights([rng.standard_normal(w.shape).astype("float32") for w in plain.get_weights()])
    ours.set_weights(plain.get_weights())
    values = [rng.standard_normal((1, 9, 7, c)).astype("float32") for c in (3, 5)]
    np.testing.assert_allclose(ours(values), plain(values), rtol=1e-5, atol=1e-5)


def test_after_passes_its_value_on_ordered_only_at_cpu_inference():
    layer = After()
    value, predecessor = np.ones((1, 2, 3, 4), "float32"), np.zeros((1, 5), "float32")
    np.testing.assert_array_equal(layer([value, predecessor]), value)

    def ordered(training):
        ops = _traced_ops(lambda v, p: layer([v, p], training=training), [value, predecessor])
        return [op for op in ops if op.control_inputs]

    assert len(ordered(training=False)) == 1
    assert ordered(training=True) == []


def _conv_bn_relu_model(kernel_size, strides, use_bias, concatenated=False):
    """A kseg Conv2D (or ConcatConv2D), BatchNormalization and ReLU with seeded weights and statistics."""
    from kseg.models.layers import BatchNormalization, conv2d

    inputs = keras.Input((None, None, 8))
    if concatenated:
        inputs = [keras.Input((None, None, 3)), keras.Input((None, None, 5))]
    y = conv2d(inputs, 6, kernel_size, "conv", strides=strides, use_bias=use_bias)
    model = keras.Model(inputs, keras.layers.ReLU()(BatchNormalization(epsilon=1e-5, name="bn")(y)))
    rng = np.random.default_rng(7)
    for weight in model.weights:
        low = 0.5 if "variance" in weight.path else -1.0
        weight.assign(rng.uniform(low, 2.0, weight.shape).astype("float32"))
    return model


@pytest.mark.parametrize(
    ("kernel_size", "strides", "use_bias", "concatenated"),
    [
        (1, 1, False, False),
        (1, 2, True, False),
        (3, 1, False, False),
        (3, 2, True, False),
        (1, 1, False, True),
        (3, 1, True, True),
    ],
)
def test_batch_norm_folds_into_its_convolution_at_cpu_inference(kernel_size, strides, use_bias, concatenated):
    """In a traced graph at float32 inference no normalisation op is left, and the output is Keras' to rounding;
    eager calls, training and switched-off fast convolutions keep Keras' layer."""
    from kseg.ops.runtime import stock_tf_ops

    model = _conv_bn_relu_model(kernel_size, strides, use_bias, concatenated)
    rng = np.random.default_rng(8)
    shapes = [(2, 11, 9, 3), (2, 11, 9, 5)] if concatenated else [(2, 11, 9, 8)]
    values = [tf.constant(rng.standard_normal(shape), tf.float32) for shape in shapes]
    args = values if concatenated else values[0]
    with stock_tf_ops():
        expected = tf.function(lambda x: model(x, training=False))(args).numpy()
    ops = _traced_ops(lambda *v: model(list(v) if concatenated else v[0], training=False), values)
    assert not [op.name for op in ops if "batchnorm" in op.name]
    folded = tf.function(lambda x: model(x, training=False))(args)
    np.testing.assert_allclose(folded, expected, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(model(args, training=False), expected, rtol=1e-5, atol=1e-5)  # eager: unfolded
    with stock_tf_ops():
        kept = _traced_ops(lambda *v: model(list(v) if concatenated else v[0], training=False), values)
    assert [op.name for op in kept if "batchnorm" in op.name]
    trained = _traced_ops(lambda *v: model(list(v) if concatenated else v[0], training=True), values)
    assert any(op.type == "Mean" for op in trained)  # batch statistics


@pytest.mark.parametrize("concatenated", [False, True])
def test_batch_norm_folds_into_winograds_output_transform(concatenated):
    """Where the 3x3 convolution takes Winograd (128 channels), the normalisation's scale is applied in the output
    transform, not to the kernel; a concatenation whose kernel outweighs its output scales the summed output."""
    from kseg.models.layers import BatchNormalization, conv2d
    from kseg.ops.runtime import stock_tf_ops

    size = 48 if not concatenated else 8  # 8x8 with 160 input channels: the kernel is larger than the output
    inputs = (
        [keras.Input((size, size, 96)), keras.Input((size, size, 64))]
        if concatenated
        else keras.Input((size, size, 128))
    )
    model = keras.Model(inputs, BatchNormalization(epsilon=1e-5)(conv2d(inputs, 128, 3, "conv", dilation=2)))
    rng = np.random.default_rng(10)
    for weight in model.weights:
        low = 0.5 if "variance" in weight.path else -1.0
        weight.assign(rng.uniform(low, 2.0, weight.shape).astype("float32") / (30 if "kernel" in weight.path else 1))
    values = [tf.constant(rng.standard_normal((2, *i.shape[1:])), tf.float32) for i in tf.nest.flatten(inputs)]
    args = values if concatenated else values[0]
    with stock_tf_ops():
        expected = tf.function(lambda x: model(x, training=False))(args).numpy()
    ops = _traced_ops(lambda *v: model(list(v) if concatenated else v[0], training=False), values)
    assert not [op.name for op in ops if "batchnorm" in op.name]
    assert not [op for op in ops if op.type == "Mul" and op.inputs[0].shape.rank == 4 and op.inputs[0].shape[0] == 3]
    np.testing.assert_allclose(tf.function(lambda x: model(x, training=False))(args), expected, rtol=1e-5, atol=1e-5)


def test_batch_norm_folds_only_the_convolution_that_feeds_it():
    """A BatchNormalization on anything but a kseg convolution's own output (here: after a ReLU) normalises."""
    from kseg.models.layers import BatchNormalization, Conv2D

    inputs = keras.Input((None, None, 4))
    y = keras.layers.ReLU()(Conv2D(4, 1, use_bias=False)(inputs))
    model = keras.Model(inputs, BatchNormalization(epsilon=1e-5)(y))
    model.layers[-1].moving_mean.assign(np.full(4, 3.0, "float32"))
    x = tf.constant(np.random.default_rng(9).standard_normal((1, 5, 5, 4)), tf.float32)
    expected = model(x, training=False)
    np.testing.assert_allclose(tf.function(lambda x: model(x, training=False))(x), expected, rtol=1e-6, atol=1e-6)


def test_residual_sums_go_into_the_shortcuts_buffer_in_a_resnet(monkeypatch):
    """With the size threshold lowered, every bottleneck's last 1x1 product is added into its shortcut block by
    block (InplaceAdd), and every stage's output equals the plain sums' (stock ops) to rounding: no shortcut is
    overwritten while something still reads it."""
    from kseg.models.backbones import ResNetV1Backbone
    from kseg.ops import conv as fast_conv
    from kseg.ops.runtime import stock_tf_ops

    keras.utils.set_random_seed(4)
    backbone = ResNetV1Backbone(
        depth=None, variant="v1s", block="bottleneck", stage_depths=(1, 2, 2, 1), base_width=8, output_stride=8
    )
    rng = np.random.default_rng(4)
    for weight in backbone.weights:  # BatchNorm statistics away from the identity, so that the fold matters
        if "moving_variance" in weight.path or "gamma" in weight.path:
            weight.assign(rng.uniform(0.5, 1.5, weight.shape).astype("float32"))
        elif "moving_mean" in weight.path or "beta" in weight.path:
            weight.assign(rng.normal(0.0, 0.2, weight.shape).astype("float32"))
    images = tf.constant(rng.standard_normal((2, 61, 47, 3)), tf.float32)
    with stock_tf_ops():
        expected = tf.function(lambda x: backbone(x, training=False))(images)
    monkeypatch.setattr(fast_conv, "MIN_RESIDUAL_INTO_BYTES", 0)
    monkeypatch.setattr(fast_conv, "RESIDUAL_BLOCK_BYTES", 4096)
    forward = tf.function(lambda x: backbone(x, training=False))
    ops = _traced_ops(lambda x: backbone(x, training=False), [images])
    adds = [op for op in ops if op.type == "InplaceAdd"]
    assert len({op.name.split("/")[-2] for op in adds}) == 6  # one ResidualAdd per block
    outputs = forward(images)
    for name in expected:
        scale = np.abs(expected[name].numpy()).max()
        np.testing.assert_allclose(outputs[name] / scale, expected[name] / scale, rtol=0, atol=2e-6)
