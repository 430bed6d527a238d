"""kseg's drop-in Keras layers give Keras' own results with the same weights."""

import json

import keras
import numpy as np
import pytest
import tensorflow as tf

from kseg.models.layers import Conv2DTranspose


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
    from kseg.models.layers import AdaptiveAveragePooling2D, Conv2D, PaddedMaxPooling2D, ResizeLike
    from kseg.models.mask_rcnn.network import CropLike

    image, small = (1, 13, 17, 4), (1, 5, 6, 4)
    return {
        "kseg>AdaptiveAveragePooling2D": (lambda **kw: AdaptiveAveragePooling2D((2, 3), **kw), [image]),
        "kseg>Conv2D": (lambda **kw: Conv2D(6, 3, padding="same", dilation_rate=2, **kw), [image]),
        "kseg>Conv2DTranspose": (lambda **kw: Conv2DTranspose(6, 2, strides=2, **kw), [small]),
        "kseg>CropLike": (lambda **kw: CropLike(**kw), [image, small]),
        "kseg>PaddedMaxPooling2D": (lambda **kw: PaddedMaxPooling2D(3, 2, 1, **kw), [image]),
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


@pytest.mark.parametrize(("pool", "strides", "padding", "shape"), [(3, 2, 1, (2, 11, 16, 3)), (3, 2, 1, (1, 8, 7, 2)),
                                                                    (3, 1, 1, (1, 5, 6, 2)), (2, 2, 1, (1, 7, 9, 2))])
def test_padded_max_pooling_equals_minus_infinity_padding(pool, strides, padding, shape):
    """Mirror padding (used where the padding is at most half the window) takes the maxima and gradients of
    MXNet's -inf padding, negative inputs included; (2, 2, 1) keeps -inf padding."""
    from kseg.models.layers import PaddedMaxPooling2D

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
