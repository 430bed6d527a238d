"""``recipes/test.py`` on the real samples against GluonCV's own evaluation of the same weights.

``tools/gluoncv_evaluate.py`` (side venv) builds a zoo network with seeded
weights, writes its ``.params`` and evaluates it with GluonCV's data set class,
``MultiEvalModel`` and ``SegmentationMetric``, as GluonCV's test.py did for the
published table. kseg's test.py then evaluates the same file on the same
folder: the predictions must agree on at least 99.9% of the pixels and
pixAcc, per-class IoU and mIoU must be GluonCV's (to within what the few
differing pixels can change).
"""

import json
import subprocess

import numpy as np
import pytest
from PIL import Image
from recipe_runner import REALDATA, REPO, output_of, run_recipe


def gluoncv_evaluation(side_python, out, *args):
    command = [side_python, str(REPO / "tools" / "gluoncv_evaluate.py"), "--out", str(out), *map(str, args)]
    result = subprocess.run(command, capture_output=True, text=True, cwd=REPO)
    assert result.returncode == 0, f"GluonCV side failed:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
    predictions = np.load(out / "gluoncv_predictions.npz")
    return json.loads((out / "gluoncv_metrics.json").read_text()), {k: predictions[k] for k in predictions.files}


def compare(kseg_dir, gluoncv_metrics, gluoncv_predictions, offset):
    """Pixel agreement >= 99.9%, and pixAcc, per-class IoU and mIoU no further from GluonCV's than the
    differing pixels can move them (equal when every pixel agrees: random weights give tiny IoUs, so a
    fixed tolerance would not notice a wrong metric)."""
    kseg_metrics = json.loads((kseg_dir / "metrics.json").read_text())
    assert kseg_metrics["images"] == gluoncv_metrics["images"] == len(gluoncv_predictions)
    differing = 0
    for stem, expected in gluoncv_predictions.items():
        with Image.open(kseg_dir / f"{stem}.png") as png:
            predicted = np.asarray(png).astype(np.int64) - offset
        assert predicted.shape == expected.shape, stem
        agreement = np.mean(predicted == expected)
        assert agreement >= 0.999, f"{stem}: {agreement:.5f} of pixels agree with GluonCV"
        differing += int(np.sum(predicted != expected))
    labelled = gluoncv_metrics["labelled"]
    assert sum(kseg_metrics["label_pixels"]) == labelled > 0  # the same labelled pixels (readers agree)
    # d differing pixels move the correct count, and each class's intersection and union, by at most d.
    assert abs(kseg_metrics["pixAcc"] - gluoncv_metrics["pixAcc"]) <= differing / labelled + 1e-12
    iou = kseg_metrics["IoU"]
    iou = np.array(list(iou.values()) if isinstance(iou, dict) else iou)
    union = np.array(gluoncv_metrics["union"], np.float64)
    bounds = np.where(union > 0, np.minimum(1.0, 2.0 * differing / np.maximum(union - differing, 1.0)), 0.0)
    assert np.all(np.abs(iou - np.array(gluoncv_metrics["IoU"])) <= bounds + 1e-12)
    assert abs(kseg_metrics["mIoU"] - gluoncv_metrics["mIoU"]) <= bounds.mean() + 1e-12
    return kseg_metrics


@pytest.mark.gluoncv
@pytest.mark.large
def test_ade20k_multiscale_matches_gluoncv(side_python, tmp_path):
    if not (REALDATA / "ADEChallengeData2016").is_dir():
        pytest.skip(f"real ADE20K samples not found in {REALDATA}")
    sizes = ["--base-size", 240, "--crop-size", 160]
    reference, predictions = gluoncv_evaluation(
        side_python, tmp_path, "--model", "fcn_resnet50_ade", "--dataset", "ade20k", "--root", REALDATA,
        "--scales", "0.5,1.0", *sizes,
    )
    out = tmp_path / "kseg"
    result = run_recipe(
        "test.py", "--dataset", "ade20k", "--model-zoo", "fcn_resnet50_ade", "--eval", "--save-predictions",
        "--weights", tmp_path / "fcn_resnet50_ade.params", "--dataset-dir", REALDATA, "--scales", "0.5,1.0",
        "--out-dir", out, *sizes,
    )
    assert result.returncode == 0, output_of(result)
    assert "pixAcc" in result.stdout
    metrics = compare(out, reference, predictions, offset=1)  # ADE submissions hold class + 1
    assert metrics["multi_scale"] and metrics["flip"] and metrics["scales"] == [0.5, 1.0]


@pytest.mark.gluoncv
@pytest.mark.large
def test_cityscapes_single_scale_matches_gluoncv(side_python, tmp_path):
    if not (REALDATA / "cityscapes" / "gtFine").is_dir():
        pytest.skip(f"real Cityscapes sample not found in {REALDATA}")
    reference, predictions = gluoncv_evaluation(
        side_python, tmp_path, "--model", "psp_resnet101_citys", "--dataset", "citys",
        "--root", REALDATA / "cityscapes", "--single-scale",
    )
    out = tmp_path / "kseg"
    result = run_recipe(
        "test.py", "--model-zoo", "psp_resnet101_citys", "--eval", "--save-predictions", "--nomulti-scale",
        "--weights", tmp_path / "psp_resnet101_citys.params", "--dataset-dir", REALDATA, "--out-dir", out,
    )
    assert result.returncode == 0, output_of(result)
    label_ids = np.array([7, 8, 11, 12, 13, 17, 19, 20, 21, 22, 23, 24, 25, 26, 27, 28, 31, 32, 33])
    # The Cityscapes submission holds labelIds: map GluonCV's trainIds the same way to compare.
    labelled = {stem: label_ids[p] for stem, p in predictions.items()}
    compare(out, reference, labelled, offset=0)
