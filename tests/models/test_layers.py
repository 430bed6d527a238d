"""kseg's drop-in Keras layers give Keras' own results with the same weights."""

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
