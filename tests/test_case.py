"""The shared harness for model and layer tests, in the keras-hub manner: every test builds and checks through it."""

import contextlib
import json
import os

import keras
import numpy as np
import tensorflow as tf


def as_dict(outputs):
    return outputs if isinstance(outputs, dict) else {"logits": outputs}


def random_images(batch, height, width, seed=0):
    return np.random.default_rng(seed).standard_normal((batch, height, width, 3)).astype("float32")


@contextlib.contextmanager
def global_policy(name):
    """Build under the global dtype policy ``name`` (restored afterwards)."""
    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy(name)
    try:
        yield
    finally:
        keras.config.set_dtype_policy(previous)


def compute_dtypes(layer):
    """``{path: compute dtype}`` of every layer inside ``layer`` (nested models walked)."""
    found = {}
    for sub in layer._flatten_layers(include_self=False, recursive=True):
        found[sub.path or sub.name] = sub.compute_dtype
    return found


class ModelTestHarness:
    """Checks every kseg model (and layer) must pass; mixed into a pytest class or called as functions."""

    def run_output_shape_test(self, model, num_classes, sizes=((1, 64, 64), (2, 97, 131), (1, 33, 47))):
        for batch, height, width in sizes:
            outputs = as_dict(model(random_images(batch, height, width), training=False))
            for name, value in outputs.items():
                assert tuple(value.shape) == (batch, height, width, num_classes), (name, value.shape)
                assert np.all(np.isfinite(value)), name

    def run_config_roundtrip_test(self, model):
        """``get_config``/``from_config`` and ``serialize_keras_object`` through JSON give the same object,
        its dtype policy (and every sublayer's compute dtype) and metadata included, whatever the global policy."""
        config = model.get_config()
        serialized = json.loads(json.dumps(keras.saving.serialize_keras_object(model)))
        assert serialized["config"] == json.loads(json.dumps(config))
        # deserialize_keras_object calls from_config: one rebuild checks both.
        with global_policy("float32" if model.dtype_policy.name != "float32" else "mixed_bfloat16"):
            restored = keras.saving.deserialize_keras_object(serialized)
        assert isinstance(restored, model.__class__)
        assert restored.get_config() == config
        assert restored.count_params() == model.count_params()
        assert restored.dtype_policy.name == model.dtype_policy.name
        assert compute_dtypes(restored) == compute_dtypes(model)
        if hasattr(model, "metadata"):
            assert restored.metadata == model.metadata
        return restored

    @staticmethod
    def _keras_file_round_trip(model, tmp_path):
        path = os.path.join(tmp_path, "model.keras")
        model.save(path)
        restored = keras.models.load_model(path)
        assert isinstance(restored, model.__class__)
        if hasattr(model, "metadata"):
            assert restored.metadata == model.metadata
        return restored

    def run_saving_test(self, model, tmp_path, images):
        expected = as_dict(model(images, training=False))
        restored = self._keras_file_round_trip(model, tmp_path)
        self._assert_outputs_equal(as_dict(restored(images, training=False)), expected)

        weights = os.path.join(tmp_path, "model.weights.h5")
        model.save_weights(weights)
        fresh = model.__class__.from_config(model.get_config())
        fresh.load_weights(weights)
        self._assert_outputs_equal(as_dict(fresh(images, training=False)), expected)

    def run_weights_saving_test(self, model, tmp_path):
        """A ``.keras`` file, loaded under another global dtype policy, restores the config, the dtype of every
        layer, the metadata and every weight (for models too slow to run here); returns the restored model."""
        path = os.path.join(tmp_path, "model.keras")
        model.save(path)
        with global_policy("float32" if model.dtype_policy.name != "float32" else "mixed_bfloat16"):
            restored = keras.models.load_model(path)
        assert isinstance(restored, model.__class__)
        assert restored.get_config() == model.get_config()
        assert compute_dtypes(restored) == compute_dtypes(model)
        if hasattr(model, "metadata"):
            assert restored.metadata == model.metadata
        assert len(restored.weights) == len(model.weights)
        for ours, theirs in zip(restored.weights, model.weights, strict=True):
            np.testing.assert_array_equal(ours.numpy(), theirs.numpy(), err_msg=theirs.path)
        return restored

    def run_jit_test(self, model, images, atol=1e-5):
        eager = as_dict(model(images, training=False))
        compiled = tf.function(lambda x: model(x, training=False), jit_compile=True)
        jitted = as_dict(compiled(images))
        for name, value in eager.items():
            np.testing.assert_allclose(jitted[name], value, atol=atol, rtol=1e-5, err_msg=name)

    @staticmethod
    def _assert_outputs_equal(actual, expected):
        assert actual.keys() == expected.keys()
        for name, value in expected.items():
            np.testing.assert_allclose(actual[name], value, atol=1e-6, err_msg=name)


def weights_in_file(path):
    """Every array of a ``.weights.h5`` file by its HDF5 path (to compare two runs' results)."""
    import h5py

    arrays = {}
    with h5py.File(path, "r") as file:
        file.visititems(lambda name, item: arrays.update({name: item[()]}) if isinstance(item, h5py.Dataset) else None)
    return arrays
