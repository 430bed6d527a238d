"""``recipes/test.py`` as users run it, on small data sets in the official layouts."""

import json

import numpy as np
import pytest
from PIL import Image
from recipe_runner import output_of, run_recipe

from kseg.data.synthetic import write_dataset

SMALL_MODEL = ["--model", "fcn", "--backbone", "resnet18_v1b", "--weights", "none"]
SMALL_MODEL += ["--base-size", 64, "--crop-size", 48]


@pytest.fixture(scope="module")
def data_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("data")
    for key in ("ade20k", "pascal_voc", "citys"):
        write_dataset(key, root, num_train=1, num_val=3, size=(40, 56), seed=2)
    return root


def test_submission_pngs_in_each_benchmark_format(data_root, tmp_path):
    for key, split in (("pascal_voc", "test"), ("ade20k", "val"), ("citys", "val")):
        out = tmp_path / key
        result = run_recipe(
            "test.py", "--dataset", key, "--split", split, *SMALL_MODEL, "--nomulti-scale", "--batch-size", 2,
            "--dataset-dir", data_root, "--out-dir", out,
        )
        assert result.returncode == 0, output_of(result)
        pngs = sorted(out.glob("*.png"))
        assert len(pngs) == 3, output_of(result)
        with Image.open(pngs[0]) as png:
            values = np.asarray(png)
            assert png.size == (56, 40)
            if key == "pascal_voc":
                assert png.mode == "P" and values.max() <= 20
            elif key == "ade20k":
                assert png.mode == "P" and 1 <= values.min() and values.max() <= 150  # class + 1
            else:
                assert png.mode == "L" and set(np.unique(values)) <= {7, 8, 11, 12, 13, 17, *range(19, 29), 31, 32, 33}


def test_eval_writes_metrics_json_in_val_mode(data_root, tmp_path):
    result = run_recipe(
        "test.py", "--dataset", "ade20k", *SMALL_MODEL, "--eval", "--mode", "val", "--nomulti-scale",
        "--batch-size", 2, "--dataset-dir", data_root, "--out-dir", tmp_path,
    )
    assert result.returncode == 0, output_of(result)
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert metrics["images"] == 3 and metrics["mode"] == "val" and metrics["split"] == "val"
    assert 0.0 <= metrics["mIoU"] <= 1.0 and 0.0 <= metrics["pixAcc"] <= 1.0
    assert len(metrics["IoU"]) == 150 and "wall" in metrics["IoU"]
    assert "pixAcc" in result.stdout and not list(tmp_path.glob("*.png"))


def test_multiscale_eval_on_a_zoo_name_with_max_images(data_root, tmp_path):
    result = run_recipe(
        "test.py", "--dataset", "citys", "--model", "psp", "--backbone", "resnet18_v1b", "--weights", "none",
        "--eval", "--scales", "0.75,1.0", "--base-size", 56, "--crop-size", 40, "--max-images", 2,
        "--dataset-dir", data_root, "--out-dir", tmp_path,
    )
    assert result.returncode == 0, output_of(result)
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert metrics["images"] == 2 and metrics["multi_scale"] and metrics["flip"] and metrics["scales"] == [0.75, 1.0]


def test_missing_data_folder_names_the_layout(tmp_path):
    result = run_recipe("test.py", "--dataset", "ade20k", *SMALL_MODEL, "--eval", "--dataset-dir", tmp_path / "nowhere")
    assert result.returncode != 0
    assert "No ade20k data set" in result.stderr and "images/validation" in result.stderr


def test_unknown_zoo_name_suggests_close_ones(tmp_path):
    result = run_recipe("test.py", "--model-zoo", "fcn_resnet50_ad", "--eval", "--dataset-dir", tmp_path)
    assert result.returncode != 0 and "Did you mean: fcn_resnet50_ade" in result.stderr


def test_a_zoo_model_on_another_data_set_is_refused_before_any_download(data_root, tmp_path):
    """GluonCV's ADE file on Cityscapes would score untrained class layers (kseg.models.get fine-tunes)."""
    env = {"KSEG_HOME": str(tmp_path / "home"), "KSEG_MODEL_STORE_URL": "http://127.0.0.1:9/"}
    result = run_recipe(
        "test.py", "--model-zoo", "fcn_resnet50_ade", "--dataset", "citys", "--eval", "--dataset-dir", data_root,
        "--out-dir", tmp_path / "out", env=env,
    )
    assert result.returncode != 0, output_of(result)
    assert "predicts its 150 ade20k classes, but 19 are asked" in result.stderr, output_of(result)
    assert not (tmp_path / "out").exists() and not list((tmp_path / "home").glob("*.params"))
