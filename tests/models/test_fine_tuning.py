"""``kseg.models.get(name, weights=..., num_classes=K)`` keeps every weight but the class layers;
inference entry points (test.py, kseg export) refuse to score class layers that were started afresh."""

import dataclasses

import numpy as np
import pytest

import kseg
from kseg.presets import PRESETS, WeightsSource, get_preset
from kseg.weights.gluoncv import gluoncv_arrays
from kseg.weights.mxnet_params import params_to_bytes
from kseg.weights.transfer import weighted_layers

NAME = "fcn_resnet18_finetune_probe"
CLASS_LAYERS = {"head_classifier", "aux_classifier"}


@pytest.fixture(scope="module")
def source_files(tmp_path_factory):
    """A 21-class model with its aux head, as a GluonCV ``.params`` and as a kseg ``.weights.h5``."""
    folder = tmp_path_factory.mktemp("finetune")
    import keras

    keras.utils.set_random_seed(3)
    source = kseg.models.build("fcn", "resnet18_v1b", 21, aux=True, name=NAME)
    params = folder / f"{NAME}.params"
    params.write_bytes(params_to_bytes(gluoncv_arrays(source)))
    h5 = folder / f"{NAME}.weights.h5"
    source.save_weights(h5)
    return source, params, h5


@pytest.fixture
def entry(monkeypatch):
    """A preset for the small model, shaped as the VOC zoo entries (21 classes, aux head in the file)."""
    entry = dataclasses.replace(
        get_preset("fcn_resnet101_voc"),
        name=NAME,
        architecture={"method": "fcn", "backbone": "resnet18_v1b", "aux": True, "output_stride": 8},
        weights=WeightsSource(NAME, "0" * 40, "gluoncv_semantic"),
    )
    monkeypatch.setitem(PRESETS, NAME, entry)
    return entry


def weights_by_layer(model):
    return {path: [w.numpy() for w in layer.weights] for path, layer in weighted_layers(model)}


@pytest.mark.parametrize("kind", ["params", "h5"])
def test_every_weight_but_the_class_layers_is_kept(source_files, entry, kind):
    source, params, h5 = source_files
    model = kseg.models.get(NAME, weights=params if kind == "params" else h5, num_classes=5, aux=True)
    expected, got = weights_by_layer(source), weights_by_layer(model)
    assert expected.keys() == got.keys()
    kept = 0
    for path, values in got.items():
        if path.rsplit("/", 1)[-1] in CLASS_LAYERS:
            assert values[0].shape[-1] == 5  # new class layers, at their initialisation
            continue
        for value, reference in zip(values, expected[path], strict=True):
            np.testing.assert_array_equal(value, reference, err_msg=path)
        kept += 1
    assert kept == len(got) - len(CLASS_LAYERS) > 20


def infer(weights):
    """As the inference entry points build a model (test.py, kseg predict, kseg export): strict."""
    return kseg.models.get(NAME, weights=weights, num_classes=5, strict=True)


def test_inference_refuses_untrained_class_layers(source_files, entry, tmp_path):
    _, params, h5 = source_files
    for weights in ("pretrained", str(params), str(h5)):  # all of them hold the entry's 21 classes
        with pytest.raises(ValueError, match=r"21 pascal_voc classes, but 5|does not hold weights for"):
            infer(weights)
    # A fine-tuned 5-class file (saved with or without the aux head) loads exactly; random weights are allowed.
    for aux in (False, True):
        tuned = kseg.models.get(NAME, weights=h5, num_classes=5, aux=aux)
        path = tmp_path / f"tuned_{aux}.weights.h5"
        tuned.save_weights(path)
        model = infer(str(path))
        images = np.random.default_rng(0).standard_normal((1, 33, 41, 3)).astype("float32")
        logits = tuned(images, training=False)
        logits = logits["logits"] if isinstance(logits, dict) else logits
        np.testing.assert_array_equal(model(images, training=False), logits)
    assert infer(None).num_classes == 5


def test_loading_a_file_with_the_aux_head_gives_no_false_warning(source_files, entry, recwarn):
    """Keras warns "will retain their freshly-initialized weights" before its direct load fails; the
    transfer that follows loads every layer, so that warning must not reach the user."""
    source, _, h5 = source_files
    model = kseg.models.get(NAME, weights=h5)  # no aux head: the direct load fails, the transfer runs
    assert not [w for w in recwarn if "freshly-initialized" in str(w.message)]
    images = np.random.default_rng(1).standard_normal((1, 29, 35, 3)).astype("float32")
    np.testing.assert_allclose(model(images, training=False), source(images, training=False)["logits"], atol=1e-6)


def test_a_file_of_another_model_is_refused_in_a_short_message(source_files, entry, tmp_path):
    other = kseg.models.build("psp", "resnet18_v1b", 7, name="other")
    path = tmp_path / "other.weights.h5"
    other.save_weights(path)
    with pytest.raises(ValueError, match="does not hold weights for") as error:
        kseg.models.get(NAME, weights=path)
    assert len(str(error.value)) < 1200 and "\n" not in str(error.value)


@pytest.mark.parametrize("kind", ["params", "h5"])
def test_rows_of_classes_kept_by_name_are_reused(source_files, entry, kind):
    """GluonCV's ``reset_class(reuse_weights=...)`` for a semantic model: the rows of "cat" and "dog" come from the
    file (in their new order); the new class starts afresh; every other weight is the file's."""
    source, params, h5 = source_files
    old = list(entry.classes)
    model = kseg.models.get(NAME, weights=params if kind == "params" else h5, classes=["dog", "unicorn", "cat"],
                            aux=True, reuse_classes=True)  # fmt: skip
    expected, got = weights_by_layer(source), weights_by_layer(model)
    for path, values in got.items():
        if path.rsplit("/", 1)[-1] not in CLASS_LAYERS:
            assert all(np.array_equal(a, b) for a, b in zip(values, expected[path], strict=True)), path
            continue
        for new, old_row in ((0, old.index("dog")), (2, old.index("cat"))):
            for value, reference in zip(values, expected[path], strict=True):
                np.testing.assert_array_equal(value[..., new], reference[..., old_row], err_msg=path)
        old_columns = np.moveaxis(expected[path][0], -1, 0)
        assert not any(np.array_equal(values[0][..., 1], column) for column in old_columns), path  # fresh


def test_bad_reuse_requests_are_refused_in_one_line(source_files, entry):
    _, params, _ = source_files
    for reuse, error in [
        (["unicorn"], "'unicorn' is not one of the old classes"),
        ({"dog": 40}, "index 40 is outside the 21 old classes"),
        ("dog", "reuse_classes takes True, a list of class names"),
    ]:
        with pytest.raises((TypeError, ValueError), match=error):
            kseg.models.get(NAME, weights=params, classes=["dog", "unicorn"], reuse_classes=reuse)
    with pytest.raises(ValueError, match="give weights= and classes="):
        kseg.models.get(NAME, weights=params, reuse_classes=True)  # its own classes: nothing to reuse
