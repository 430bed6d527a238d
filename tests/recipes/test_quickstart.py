"""README's main job: recipes/quickstart.flags trains, validates, exports and predicts, offline on the CPU."""

import json

import numpy as np
import pytest
from PIL import Image
from recipe_runner import output_of, run_recipe


@pytest.mark.large
def test_quickstart_learns_exports_and_predicts(tmp_path):
    run, data = tmp_path / "run", tmp_path / "data"
    image = data / "cityscapes/leftImg8bit/val/frankfurt/frankfurt_000000_000019_leftImg8bit.png"
    result = run_recipe(
        "train.py", "--flagfile=recipes/quickstart.flags", f"--run-dir={run}", f"--dataset-dir={data}",
        f"--predict={image}",
    )
    assert result.returncode == 0, output_of(result)
    metrics = json.loads((run / "metrics.json").read_text())
    # Four classes are drawn; a constant guess of the commonest scores about 1.5 mIoU (of 19 classes).
    assert metrics["classes_present"] == 4
    assert metrics["mIoU_present"] > 0.6 and metrics["pixAcc"] > 0.85, metrics
    assert metrics["mIoU"] > 5 * metrics["mIoU_constant_guess"]
    assert (run / "export" / "1" / "saved_model.pb").is_file()
    overlay = run / "predictions" / f"{image.stem}_overlay.png"
    with Image.open(overlay) as png, Image.open(image) as original:
        assert png.size == original.size
        assert not np.array_equal(np.asarray(png.convert("RGB")), np.asarray(original.convert("RGB")))


@pytest.mark.large
@pytest.mark.training_run  # 7.4 min beside the suite's other worker; the same code runs in test_mask_rcnn_recipe.py
def test_mask_rcnn_quickstart_learns_its_own_categories(tmp_path):
    """README's second command: Mask R-CNN from scratch on procedural COCO-format shapes, in a few CPU minutes."""
    run, data = tmp_path / "run", tmp_path / "data"
    image = data / "shapes_coco/val2017/000000001001.jpg"
    result = run_recipe(
        "train.py", "--flagfile=recipes/quickstart_mask_rcnn.flags", f"--run-dir={run}", f"--dataset-dir={data}",
        f"--predict={image}",
    )
    assert result.returncode == 0, output_of(result)
    metrics = json.loads((run / "metrics.json").read_text())
    # Measured: box AP 79.7, mask AP 81.0 on the 8 validation images (a random guess scores about 0).
    assert metrics["segm"]["AP"] > 0.5 and metrics["bbox"]["AP"] > 0.4, (metrics["bbox"], metrics["segm"])
    assert len(json.loads((run / "validation.json").read_text())) == 2  # GluonCV's validation every 4 epochs
    assert (run / "export" / "1" / "saved_model.pb").is_file()
    assert "0 detection(s)" not in output_of(result)
    with Image.open(run / "predictions" / f"{image.stem}_instances.png") as png, Image.open(image) as original:
        assert png.size == original.size
