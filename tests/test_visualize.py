"""Palettes and palettised masks against GluonCV's get_color_pallete; overlays."""

import subprocess
import textwrap

import numpy as np
import pytest
from PIL import Image

from kseg import visualize

GLUONCV_SCRIPT = textwrap.dedent(
    """
    import sys, numpy as np
    from gluoncv.utils.viz import get_color_pallete
    masks = np.load(sys.argv[1])
    out = {}
    for key in masks.files:
        image = get_color_pallete(masks[key].copy(), key)
        out[key + "_pixels"] = np.asarray(image)
        out[key + "_palette"] = np.asarray(image.getpalette(), np.int64)
    np.savez(sys.argv[2], **out)
    """
)


@pytest.mark.gluoncv
def test_colorize_equals_gluoncv_get_color_pallete(side_python, tmp_path):
    rng = np.random.default_rng(0)
    masks = {  # every key with ignore (-1) pixels; VOC also with its raw boundary value 255
        "pascal_voc": rng.integers(-1, 21, (7, 9)),
        "pascal_aug": rng.integers(-1, 21, (7, 9)),
        "coco": rng.integers(-1, 21, (7, 9)),
        "ade20k": rng.integers(-1, 150, (7, 9)),
        "citys": rng.integers(-1, 19, (7, 9)),
    }
    masks["pascal_voc"][0, :3] = [-1, 255, 20]
    masks["ade20k"][0, :3] = [-1, 0, 149]
    np.savez(tmp_path / "masks.npz", **masks)
    result = subprocess.run(
        [side_python, "-c", GLUONCV_SCRIPT, str(tmp_path / "masks.npz"), str(tmp_path / "out.npz")],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    expected = np.load(tmp_path / "out.npz")
    for key, mask in masks.items():
        image = visualize.colorize(mask, key)
        assert image.mode == "P"
        np.testing.assert_array_equal(np.asarray(image), expected[key + "_pixels"], err_msg=key)
        np.testing.assert_array_equal(np.asarray(image.getpalette()), expected[key + "_palette"], err_msg=key)


def test_palettes_have_the_known_colours():
    assert visualize.palette("pascal_voc")[15].tolist() == [192, 128, 128]  # person
    assert visualize.palette("citys")[0].tolist() == [128, 64, 128]  # road
    assert visualize.palette("ade20k")[1].tolist() == [120, 120, 120]  # wall
    # GluonCV's lengths, kept so that colorize's PNG palettes equal get_color_pallete's.
    shapes = {key: visualize.palette(key).shape for key in visualize.DATASET_KEYS}
    assert shapes == {"ade20k": (151, 3), "pascal_voc": (256, 3), "pascal_aug": (256, 3), "coco": (256, 3),
                      "citys": (19, 3)}
    assert all(visualize.palette(key).dtype == np.uint8 for key in visualize.DATASET_KEYS)
    with pytest.raises(ValueError, match="Unknown dataset 'voc'"):
        visualize.palette("voc")


def test_color_mask_and_overlay():
    mask = np.array([[0, 1], [-1, 2]])
    image = np.full((2, 2, 3), 200, np.uint8)
    colors = visualize.color_mask(mask, "pascal_voc")
    assert colors[0, 1].tolist() == [128, 0, 0] and colors[1, 0].tolist() == [0, 0, 0]
    np.testing.assert_array_equal(visualize.overlay(image, mask, "pascal_voc", alpha=0.0), image)
    full = visualize.overlay(image, mask, "pascal_voc", alpha=1.0)
    assert full[0, 1].tolist() == [128, 0, 0]
    assert full[1, 0].tolist() == [200, 200, 200]  # ignored pixels keep the image
    half = visualize.overlay(image, mask, "pascal_voc", alpha=0.5)
    assert half[0, 1].tolist() == [164, 100, 100]
    ade = visualize.color_mask(np.array([[0]]), "ade20k")
    assert ade[0, 0].tolist() == [120, 120, 120]  # class 0 (wall) has ADE colour 1


def test_bad_input_is_named(tmp_path):
    with pytest.raises(ValueError, match="uint8 RGB"):
        visualize.overlay(np.zeros((2, 2, 3), np.float32), np.zeros((2, 2), int), "citys")
    with pytest.raises(ValueError, match="differ in size"):
        visualize.overlay(np.zeros((2, 2, 3), np.uint8), np.zeros((3, 2), int), "citys")
    with pytest.raises(ValueError, match="no colour"):
        visualize.color_mask(np.array([[19]]), "citys")
    with pytest.raises(ValueError, match="integer array"):
        visualize.colorize(np.zeros((2, 2), np.float32), "coco")
    with pytest.raises(ValueError, match=r"classes 0\.\.254, got -1\.\.255"):
        visualize.colorize(np.array([[-1, 255]]), "ade20k")  # ADE indices are shifted by one
    with pytest.raises(ValueError, match="got -2..0"):
        visualize.colorize(np.array([[-2, 0]]), "pascal_voc")
    with pytest.raises(ValueError, match="alpha"):
        visualize.overlay(np.zeros((2, 2, 3), np.uint8), np.zeros((2, 2), int), "citys", alpha=1.5)
    with pytest.raises(ValueError, match="Unknown dataset 'mhpv1'"):
        visualize.colorize(np.zeros((2, 2), int), "mhpv1")


def test_legend_and_save_png(tmp_path):
    mask = np.array([[15, 15, 15], [0, -1, 15]])
    rows = visualize.legend(mask, "pascal_voc")
    assert [name for name, _, _ in rows] == ["person", "background"]
    assert rows[0][1] == (192, 128, 128) and rows[0][2] == pytest.approx(4 / 6)
    path = tmp_path / "sub" / "mask.png"
    visualize.save_png(path, visualize.colorize(mask, "pascal_voc"))
    with Image.open(path) as png:
        assert png.mode == "P"
        np.testing.assert_array_equal(np.asarray(png), np.where(mask < 0, 255, mask))
    assert [p.name for p in path.parent.iterdir()] == ["mask.png"]  # no temp file left
