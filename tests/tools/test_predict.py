"""tools/predict.py: mask and overlay PNGs for image files."""

import importlib.util
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import kseg
from kseg.data.preprocessing import normalize_image
from kseg.evaluation import Predictor

TOOL = Path(__file__).resolve().parents[2] / "tools" / "predict.py"


def load_tool():
    spec = importlib.util.spec_from_file_location("predict_tool", TOOL)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.large
def test_writes_palettised_masks_and_overlays(tmp_path):
    rng = np.random.default_rng(0)
    paths = []
    for i, size in enumerate([(40, 56), (33, 47)]):
        path = tmp_path / f"image{i}.jpg"
        Image.fromarray(rng.integers(0, 256, (*size, 3), dtype=np.uint8)).save(path)
        paths.append(path)
    weights = tmp_path / "fcn.weights.h5"
    keras_model = kseg.models.get("fcn_resnet50_ade")
    keras_model.save_weights(weights)

    written = load_tool().main(["--model", "fcn_resnet50_ade", "--weights", str(weights), "--out",
                                str(tmp_path / "out"), *map(str, paths)])
    predictor = Predictor(keras_model, jit_compile=False)
    for path, (mask_path, overlay_path) in zip(paths, written, strict=True):
        with Image.open(path) as source:
            image = np.asarray(source.convert("RGB"))
        with Image.open(mask_path) as mask, Image.open(overlay_path) as overlay:
            assert mask.mode == "P" and overlay.mode == "RGB"
            assert mask.size == overlay.size == (image.shape[1], image.shape[0])
            expected = np.asarray(predictor.predict(normalize_image(image)))
            np.testing.assert_array_equal(np.asarray(mask), expected + 1)  # ADE colours index class + 1


def test_missing_image_is_named_before_loading_a_model(tmp_path):
    with pytest.raises(SystemExit, match="Image not found: .*nowhere.jpg"):
        load_tool().main(["--model", "fcn_resnet50_ade", str(tmp_path / "nowhere.jpg")])
