"""MultiScalePredictor with tiny models, against a line-by-line numpy transcription of GluonCV's loop."""

import math

import keras
import numpy as np
import pytest

from kseg.evaluation import MultiScalePredictor
from kseg.evaluation.grid import normalized_black
from kseg.evaluation.multiscale import pad_bottom_right
from kseg.models import ResNetV1Backbone, SemanticSegmenter
from kseg.ops import resize_bilinear_align_corners

BASE, CROP = 64, 48  # stride 32
SCALES = (0.5, 0.75, 1.0, 1.75)  # 0.5, 0.75: long <= crop (0.75 exactly = crop); 1.0: pad the short side; 1.75: 3x3


def tiny_model(name=None):
    keras.utils.set_random_seed(0)
    backbone = ResNetV1Backbone(
        depth=None, variant="v1s", block="bottleneck", stage_depths=(1, 1, 1, 1), base_width=8, output_stride=8
    )
    return SemanticSegmenter(backbone, head="fcn", num_classes=5, head_channels=16, name=name)


@pytest.fixture(scope="module")
def model():
    return tiny_model()


def image(height, width, seed=0):
    return np.random.default_rng(seed).standard_normal((height, width, 3)).astype("float32")


def gluoncv_multi_eval(f, image, nclass, base_size, crop_size, scales, flip=True):
    """``MultiEvalModel.__call__`` (segbase.py, cb07ee2a) line by line in NHWC numpy, one window per call."""

    def resize(img, h, w):  # _resize_image: BilinearResize2D
        return np.asarray(resize_bilinear_align_corners(img[None], (h, w)))[0]

    def pad(img, crop_size):  # _pad_image
        h, w, c = img.shape
        padh = crop_size - h if h < crop_size else 0
        padw = crop_size - w if w < crop_size else 0
        pad_values = -np.array([0.485, 0.456, 0.406]) / np.array([0.229, 0.224, 0.225])
        out = np.empty((h + padh, w + padw, c), np.float32)
        out[...] = pad_values.astype(np.float32)
        out[:h, :w] = img
        return out

    def flip_inference(img):
        output = np.asarray(f(img[None]))[0]
        if flip:
            output = output + np.asarray(f(img[None, :, ::-1]))[0][:, ::-1]
        return np.exp(output)

    h, w = image.shape[:2]
    stride = int(crop_size * 2.0 / 3.0)
    scores = np.zeros((h, w, nclass), np.float32)
    for scale in scales:
        long_size = int(math.ceil(base_size * scale))
        if h > w:
            height, width = long_size, int(1.0 * w * long_size / h + 0.5)
            short_size = width
        else:
            width, height = long_size, int(1.0 * h * long_size / w + 0.5)
            short_size = height
        cur_img = resize(image, height, width)
        if long_size <= crop_size:
            outputs = flip_inference(pad(cur_img, crop_size))[:height, :width]
        else:
            pad_img = pad(cur_img, crop_size) if short_size < crop_size else cur_img
            ph, pw = pad_img.shape[:2]
            h_grids = int(math.ceil(1.0 * (ph - crop_size) / stride)) + 1
            w_grids = int(math.ceil(1.0 * (pw - crop_size) / stride)) + 1
            outputs = np.zeros((ph, pw, nclass), np.float32)
            count_norm = np.zeros((ph, pw, 1), np.float32)
            for idh in range(h_grids):
                for idw in range(w_grids):
                    h0, w0 = idh * stride, idw * stride
                    h1, w1 = min(h0 + crop_size, ph), min(w0 + crop_size, pw)
                    output = flip_inference(pad(pad_img[h0:h1, w0:w1], crop_size))
                    outputs[h0:h1, w0:w1] += output[: h1 - h0, : w1 - w0]
                    count_norm[h0:h1, w0:w1] += 1
            outputs = (outputs / count_norm)[:height, :width]
        scores += resize(outputs, h, w)
    return scores


def relative_error(actual, expected):
    return float(np.linalg.norm(actual - expected) / np.linalg.norm(expected))


@pytest.mark.parametrize("size,flip", [((50, 37), True), ((41, 70), True), ((48, 48), False)])
def test_matches_gluoncv_loop(model, size, flip):
    x = image(*size)
    expected = gluoncv_multi_eval(lambda v: model(v, training=False), x, 5, BASE, CROP, SCALES, flip=flip)
    predictor = MultiScalePredictor(model, BASE, CROP, SCALES, flip=flip, max_batch=6, jit_compile=False)
    labels, scores = predictor.predict(x, return_scores=True)
    assert scores.shape == (*size, 5) and labels.shape == size and labels.dtype == "int32"
    assert relative_error(np.asarray(scores), expected) < 1e-5
    assert np.mean(np.asarray(labels) == expected.argmax(-1)) >= 0.999


def test_batched_windows_equal_one_by_one(model):
    x = image(50, 37, seed=1)
    one = MultiScalePredictor(model, BASE, CROP, SCALES, max_batch=1, jit_compile=False)
    many = MultiScalePredictor(model, BASE, CROP, SCALES, max_batch=64, jit_compile=False)
    assert one.windows_per_call == 1 and many.windows_per_call == 32
    np.testing.assert_allclose(one.scores(x), many.scores(x), rtol=1e-5, atol=1e-6)
    # A batch of one image is accepted too.
    np.testing.assert_allclose(many.scores(x[None]), many.scores(x), rtol=1e-6)


def test_flip_adds_flipped_back_logits_before_exp(model):
    predictor = MultiScalePredictor(model, BASE, CROP, SCALES, jit_compile=False)
    windows = np.stack([image(CROP, CROP, seed=s) for s in range(3)])
    logits = np.asarray(model(windows, training=False))
    flipped = np.asarray(model(windows[:, :, ::-1], training=False))[:, :, ::-1]
    np.testing.assert_allclose(predictor._score_windows(windows), np.exp(logits + flipped), rtol=1e-5)
    # Hence a flipped window scores as the flipped score.
    mirrored = np.asarray(predictor._score_windows(windows))[:, :, ::-1]
    np.testing.assert_allclose(predictor._score_windows(windows[:, :, ::-1]), mirrored, rtol=1e-5)
    no_flip = MultiScalePredictor(model, BASE, CROP, SCALES, flip=False, jit_compile=False)
    np.testing.assert_allclose(no_flip._score_windows(windows), np.exp(logits), rtol=1e-5)


def test_windows_are_padded_with_normalised_black(model):
    predictor = MultiScalePredictor(model, BASE, CROP, SCALES, jit_compile=False)
    x = image(41, 70)
    black = normalized_black()
    plan = predictor.plan(41, 70)[3]  # scale 1.75: 66x112, windows 2x3, the last ones cut and padded
    assert (plan.height, plan.width, plan.rows, plan.cols) == (66, 112, (0, 32), (0, 32, 64))
    windows = np.asarray(predictor._windows(x, plan))
    resized = np.asarray(resize_bilinear_align_corners(x[None], (66, 112)))[0]
    canvas = np.broadcast_to(black, (80, 112, 3)).copy()
    canvas[:66] = resized
    for k, (h0, w0) in enumerate((h0, w0) for h0 in plan.rows for w0 in plan.cols):
        np.testing.assert_array_equal(windows[k], canvas[h0 : h0 + CROP, w0 : w0 + CROP])
    np.testing.assert_array_equal(windows[-1, 34:], np.broadcast_to(black, (14, CROP, 3)))

    small = predictor.plan(41, 70)[0]  # scale 0.5: 19x32 padded on both sides to 48x48
    window = np.asarray(predictor._windows(x, small))[0]
    np.testing.assert_array_equal(window[19:], np.broadcast_to(black, (29, CROP, 3)))
    np.testing.assert_array_equal(window[:, 32:], np.broadcast_to(black, (CROP, 16, 3)))
    padded = pad_bottom_right(np.zeros((2, 3, 3), np.float32), 4, 5, black)
    assert padded.shape == (4, 5, 3) and np.all(np.asarray(padded)[2:] == black) and np.all(padded[:2, :3] == 0)


def test_one_compilation_per_window_shape(model):
    predictor = MultiScalePredictor(model, BASE, CROP, SCALES, max_batch=8, jit_compile=True)
    eager = MultiScalePredictor(model, BASE, CROP, SCALES, max_batch=8, jit_compile=False)
    a, b = image(50, 37), image(41, 70)
    # 13 windows -> chunks 4, 4, 4, 1; then 10 windows -> 4, 4, 2.
    np.testing.assert_allclose(predictor.scores(a), eager.scores(a), rtol=1e-4)
    assert dict(predictor.traces) == {(4, CROP, CROP, 3): 1, (1, CROP, CROP, 3): 1}
    predictor.scores(b)
    predictor.scores(a)
    assert dict(predictor.traces) == {(4, CROP, CROP, 3): 1, (1, CROP, CROP, 3): 1, (2, CROP, CROP, 3): 1}


def test_sizes_default_to_the_models_own_metadata():
    """From the model's metadata, never from its name: a model called psp_resnet101_citys is not thereby one."""
    import dataclasses

    from kseg.presets import get_preset

    citys_metadata = dataclasses.replace(get_preset("psp_resnet101_citys").model_metadata(), classes=tuple("abcde"))
    citys = tiny_model()
    citys.metadata = citys_metadata
    citys = MultiScalePredictor(citys, jit_compile=False)
    assert (citys.base_size, citys.crop_size, citys.flip) == (2048, 768, True)
    assert citys.scales == (0.5, 0.75, 1.0, 1.25, 1.5, 1.75)
    named = MultiScalePredictor(tiny_model(name="psp_resnet101_citys"), jit_compile=False)
    assert (named.base_size, named.crop_size) == (520, 480)
    with pytest.raises(ValueError, match="max_batch"):
        MultiScalePredictor(tiny_model(), max_batch=0)
