"""tools/predict.py: mask and overlay PNGs for image files."""

import importlib.util
import re
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import kseg
from kseg.data.preprocessing import normalize_image
from kseg.evaluation import MultiScalePredictor, Predictor

TOOL = Path(__file__).resolve().parents[2] / "tools" / "predict.py"
MODEL = "fcn_resnet50_ade"


def load_tool():
    spec = importlib.util.spec_from_file_location("predict_tool", TOOL)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def write_images(folder, sizes, suffix=".jpg"):
    rng = np.random.default_rng(0)
    paths = []
    for i, size in enumerate(sizes):
        path = folder / f"image{i}{suffix}"
        Image.fromarray(rng.integers(0, 256, (*size, 3), dtype=np.uint8)).save(path)
        paths.append(path)
    return paths


@pytest.fixture(scope="module")
def random_model():
    """One random-weight zoo model, handed to the tool in place of kseg.models.get's (one build, not three)."""
    return kseg.models.get(MODEL, weights=None)


@pytest.fixture
def tool(random_model, monkeypatch):
    calls = []

    def get(name, weights="pretrained", **options):
        calls.append((name, weights))
        return random_model

    monkeypatch.setattr(kseg.models, "get", get)
    module = load_tool()
    module.calls = calls
    return module


def read_rgb(path):
    with Image.open(path) as source:
        return np.asarray(source.convert("RGB"))


def test_single_scale_masks_equal_the_predictor(tool, random_model, tmp_path, capsys):
    paths = write_images(tmp_path, [(40, 56), (33, 47)])
    written = tool.main(["--model", MODEL, "--weights", "none", "--out", str(tmp_path / "out"), *map(str, paths)])
    assert tool.calls == [(MODEL, "none")]  # kseg.models.get reads 'none' as random weights
    predictor = Predictor(random_model, jit_compile=False)
    for path, (mask_path, overlay_path) in zip(paths, written, strict=True):
        assert mask_path == tmp_path / "out" / f"{path.stem}_mask.png"
        assert overlay_path == tmp_path / "out" / f"{path.stem}_overlay.png"
        image = read_rgb(path)
        with Image.open(mask_path) as mask, Image.open(overlay_path) as overlay:
            assert mask.mode == "P" and overlay.mode == "RGB"
            assert mask.size == overlay.size == (image.shape[1], image.shape[0])
            expected = np.asarray(predictor.predict(normalize_image(image)))
            np.testing.assert_array_equal(np.asarray(mask), expected + 1)  # GluonCV's ADE palette: class + 1
            assert len(mask.getpalette()) == 151 * 3
    out = capsys.readouterr().out  # one line per image (above the progress bar), with class shares
    assert re.findall(r"(image\d\.jpg): [^\n]*%", out) == ["image0.jpg", "image1.jpg"]
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == [
        "image0_mask.png", "image0_overlay.png", "image1_mask.png", "image1_overlay.png"]  # no temp files left


def test_multi_scale_without_flip(tool, random_model, tmp_path):
    (path,) = write_images(tmp_path, [(30, 38)], suffix=".png")
    args = ["--model", MODEL, "--multi-scale", "--no-flip", "--base-size", "40", "--crop-size", "32"]
    [(mask_path, _)] = tool.main([*args, "--dataset", "ade20k", "--out", str(tmp_path), str(path)])
    assert tool.calls == [(MODEL, "pretrained")]
    predictor = MultiScalePredictor(random_model, base_size=40, crop_size=32, flip=False, jit_compile=False)
    expected = np.asarray(predictor.predict(normalize_image(read_rgb(path))))
    with Image.open(mask_path) as mask:
        np.testing.assert_array_equal(np.asarray(mask), expected + 1)


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--no-flip"], "--multi-scale is needed for --no-flip"),
        (["--base-size", "64", "--no-flip"], "--multi-scale is needed for --no-flip, --base-size"),
        (["--multi-scale", "--crop-size", "0"], "--crop-size must be positive"),
        (["--alpha", "2"], "--alpha must lie in"),
        (["--dataset", "voc"], "invalid choice: 'voc'"),
    ],
)
def test_bad_flags_are_named(tmp_path, capsys, extra, message):
    (path,) = write_images(tmp_path, [(8, 8)])
    with pytest.raises(SystemExit):
        load_tool().main(["--model", MODEL, *extra, str(path)])
    assert message in capsys.readouterr().err


def test_input_errors_are_named_before_loading_a_model(tmp_path):
    tool = load_tool()
    with pytest.raises(SystemExit, match="Image not found: .*nowhere.jpg"):
        tool.main(["--model", MODEL, str(tmp_path / "nowhere.jpg")])
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    same = [*write_images(tmp_path / "a", [(8, 8)]), *write_images(tmp_path / "b", [(8, 8)], suffix=".png")]
    with pytest.raises(SystemExit, match="share the name image0"):
        tool.main(["--model", MODEL, *map(str, same)])
    (path,) = write_images(tmp_path, [(8, 8)])
    with pytest.raises(SystemExit, match="--dataset citys has 19 classes, but fcn_resnet50_ade predicts 150"):
        tool.main(["--model", MODEL, "--dataset", "citys", str(path)])
    with pytest.raises(SystemExit, match="Unknown model 'fcn_resnet50_ad'.*fcn_resnet50_ade"):
        tool.main(["--model", "fcn_resnet50_ad", str(path)])
    text = tmp_path / "notes.jpg"
    text.write_text("not an image")
    with pytest.raises(SystemExit, match=r"Not an image file PIL can read .*: .*notes.jpg"):
        tool.main(["--model", MODEL, str(text)])


def test_missing_weights_file_is_named(tmp_path):
    (path,) = write_images(tmp_path, [(8, 8)])
    with pytest.raises(SystemExit, match="--weights: no file .*absent.params"):
        load_tool().main(["--model", MODEL, "--weights", str(tmp_path / "absent.params"), str(path)])


def test_an_unreadable_or_huge_image_is_skipped_and_the_exit_says_so(tool, tmp_path, capsys):
    good, = write_images(tmp_path, [(20, 24)])
    text = tmp_path / "notes.jpg"
    text.write_text("not an image")
    (tmp_path / "big").mkdir()
    big = write_images(tmp_path / "big", [(40, 50)], suffix=".png")[0].rename(tmp_path / "big" / "large.png")
    with pytest.raises(SystemExit, match=r"2 of 3 image\(s\) not predicted \(--max-pixels 0 lifts the size limit\)"):
        tool.main(["--model", MODEL, "--weights", "none", "--max-pixels", "1000", "--out", str(tmp_path / "out"),
                   str(good), str(text), str(big)])
    err = capsys.readouterr()
    assert "notes.jpg: skipped: Not an image file" in err.err and "large.png: skipped" in err.out
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["image0_mask.png", "image0_overlay.png"]
    assert "\x1b" not in err.out  # no terminal escape codes in a captured (redirected) output
