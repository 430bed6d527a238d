"""recipes/train.py trains Mask R-CNN under MirroredStrategy on two logical CPUs as on one device."""

import json

import numpy as np
from recipe_runner import output_of, run_recipe
from test_case import weights_in_file

MODEL = "mask_rcnn_fpn_resnet18_v1b_coco"


def test_two_replicas_make_the_update_of_one(shapes, tmp_path):
    """MirroredStrategy on two logical CPUs, one image each, against one replica with both images: the loss is
    scaled so that the summed gradients are the global batch's mean, and each image samples the same RoIs."""
    common = [f"--model-zoo={MODEL}", f"--dataset-dir={shapes}", "--epochs=1", "--batch-size=2", "--short=64",
              "--max-size=80", "--lr=0.01", "--warmup-steps=2", "--precision=float32", "--val-every=0", "--seed=5",
              "--max-val-images=1"]  # fmt: skip
    one = run_recipe("train.py", *common, f"--run-dir={tmp_path / 'one'}")
    assert one.returncode == 0, output_of(one)
    two = run_recipe("train.py", *common, f"--run-dir={tmp_path / 'two'}", "--strategy=mirrored", "--cpu-devices=2")
    assert two.returncode == 0, output_of(two)
    assert "2 replica(s), MirroredStrategy" in two.stdout
    name = f"{MODEL}.weights.h5"
    a, b = weights_in_file(tmp_path / "one" / name), weights_in_file(tmp_path / "two" / name)
    for key in a:
        np.testing.assert_allclose(b[key], a[key], rtol=1e-4, atol=1e-6, err_msg=key)
    assert json.loads((tmp_path / "two" / "metrics.json").read_text())["steps"] == 2
