"""GluonCV weights -> kseg convert -> kseg export -> SavedModel on real JPEGs, against GluonCV's own predictions."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "recipes"))

from recipe_runner import REALDATA, REPO  # noqa: E402

SERVE = r"""
import json, sys
from pathlib import Path
import numpy as np
import tensorflow as tf
served = tf.saved_model.load(sys.argv[1])
out = {}
for path in sorted(Path(sys.argv[2]).glob("*.jpg")):
    result = served.signatures["serving_bytes"](image_bytes=tf.constant([path.read_bytes()]))
    out[path.stem] = result["class_map"][0].numpy()
np.savez(sys.argv[3], **out)
print(json.dumps(sorted(out)))
"""


@pytest.mark.gluoncv
@pytest.mark.large
def test_savedmodel_predicts_as_gluoncv_on_real_images(side_python, tmp_path):
    images = REALDATA / "ADEChallengeData2016" / "images" / "validation"
    if not images.is_dir():
        pytest.skip(f"real ADE20K samples not found in {REALDATA}")
    command = [side_python, str(REPO / "tools" / "gluoncv_evaluate.py"), "--model", "fcn_resnet50_ade", "--dataset",
               "ade20k", "--root", str(REALDATA), "--single-scale", "--out", str(tmp_path)]
    reference = subprocess.run(command, capture_output=True, text=True, cwd=REPO)
    assert reference.returncode == 0, reference.stderr[-3000:]
    gluoncv = np.load(tmp_path / "gluoncv_predictions.npz")

    kseg = [sys.executable, "-m", "kseg.cli.main"]
    converted = tmp_path / "fcn_resnet50_ade.weights.h5"
    steps = [
        ["convert", "--model", "fcn_resnet50_ade", "--params", tmp_path / "fcn_resnet50_ade.params",
         "--out", converted],
        ["export", "--model", "fcn_resnet50_ade", "--weights", converted, "--out", tmp_path / "serving"],
    ]
    for step in steps:
        result = subprocess.run([*kseg, *map(str, step)], capture_output=True, text=True, cwd=REPO)
        assert result.returncode == 0, result.stderr[-3000:]

    served = tmp_path / "served.npz"
    result = subprocess.run([sys.executable, "-c", SERVE, str(tmp_path / "serving" / "1"), str(images), str(served)],
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-3000:]
    ours = np.load(served)
    assert sorted(ours.files) == sorted(gluoncv.files) and json.loads(result.stdout)
    for stem in gluoncv.files:
        assert ours[stem].shape == gluoncv[stem].shape, stem
        agreement = np.mean(ours[stem] == gluoncv[stem])
        assert agreement >= 0.999, f"{stem}: {agreement:.5f} of the pixels agree with GluonCV"
