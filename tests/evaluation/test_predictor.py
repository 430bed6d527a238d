"""Single-scale prediction and the per-shape compilation cache."""

import keras
import numpy as np

from kseg.evaluation import CompiledCall, Predictor
from kseg.models import ResNetV1Backbone, SemanticSegmenter


def tiny_model(aux=False):
    keras.utils.set_random_seed(0)
    backbone = ResNetV1Backbone(
        depth=None, variant="v1s", block="bottleneck", stage_depths=(1, 1, 1, 1), base_width=8, output_stride=8
    )
    return SemanticSegmenter(backbone, head="fcn", num_classes=5, aux=aux, head_channels=16)


def images(batch, height, width, seed=0):
    return np.random.default_rng(seed).standard_normal((batch, height, width, 3)).astype("float32")


def test_logits_at_image_size_for_a_batch():
    model = tiny_model(aux=True)  # aux logits are dropped
    predictor = Predictor(model, jit_compile=False)
    x = images(2, 37, 53)
    logits = predictor.logits(x)
    assert logits.shape == (2, 37, 53, 5)
    np.testing.assert_allclose(logits, model(x, training=False)["logits"], rtol=1e-5, atol=1e-5)
    labels = predictor.predict(x)
    assert labels.dtype == "int32"
    np.testing.assert_array_equal(labels, np.argmax(logits, -1))
    # One image without a batch axis.
    np.testing.assert_allclose(predictor.logits(x[0]), logits[0], rtol=1e-5, atol=1e-5)
    assert predictor.predict(x[0]).shape == (37, 53)


def test_xla_compiles_once_per_shape():
    model = tiny_model()
    predictor = Predictor(model, jit_compile=True)
    assert predictor.jit_compile
    a, b = images(1, 40, 48), images(2, 33, 41)
    np.testing.assert_allclose(predictor.logits(a), model(a, training=False), rtol=1e-4, atol=1e-4)
    predictor.logits(b)
    predictor.logits(a)
    predictor.logits(b)
    assert dict(predictor.traces) == {(1, 40, 48, 3): 1, (2, 33, 41, 3): 1}


def test_without_xla_one_relaxed_graph_serves_all_sizes():
    call = CompiledCall(lambda x: x * 2.0, jit_compile=False)
    for size in [(1, 5, 7, 3), (2, 6, 9, 3), (1, 11, 4, 3), (3, 8, 8, 3)]:
        np.testing.assert_array_equal(call(np.ones(size, np.float32)), 2 * np.ones(size))
    assert call.num_traces <= 2  # reduce_retracing generalises after the second shape


def test_unnormalised_or_non_rgb_images_are_refused():
    """uint8 pixels would run through the model silently and score garbage."""
    import pytest

    from kseg.evaluation import MultiScalePredictor

    model = tiny_model()
    for predictor in (Predictor(model, jit_compile=False), MultiScalePredictor(model, 40, 32, jit_compile=False)):
        with pytest.raises(TypeError, match=r"normalize_image.*got uint8"):
            predictor.predict(np.zeros((32, 32, 3), np.uint8))
        with pytest.raises(ValueError, match=r"must be RGB.*got shape \(32, 32, 4\)"):
            predictor.predict(np.zeros((32, 32, 4), np.float32))
    with pytest.raises(ValueError, match=r"must be RGB.*got shape \(32, 32\)"):
        Predictor(model, jit_compile=False).predict(np.zeros((32, 32), np.float32))
    # float64 is accepted (cast), as before.
    x = images(1, 24, 24).astype(np.float64)
    np.testing.assert_allclose(Predictor(model, jit_compile=False).logits(x), model(x.astype(np.float32)), atol=1e-5)
