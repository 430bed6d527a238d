"""Numerical parity with GluonCV on GluonCV's own files and outputs.

``tools/gluoncv_reference.py`` (side venv) builds each GluonCV model with seeded
random weights, writes its ``.params`` and GluonCV's outputs; kseg loads the
file and must agree to a relative error of 1e-5 in float32.

Seeds and sizes come from the environment, so a reviewer can pick their own:
``KSEG_PARITY_SEED`` (default 0), ``KSEG_PARITY_INPUTS`` (default
``480x480x1,97x131x2``: height x width x batch), ``KSEG_PARITY_CACHE`` (where
GluonCV's files are kept between runs; default a temporary directory).
"""

import json
import os
import subprocess
from pathlib import Path

import numpy as np
import pytest

from kseg.models import get, list_models
from kseg.presets import get_preset
from kseg.weights.mxnet_params import read_params

REPO = Path(__file__).resolve().parents[2]
TOLERANCE = 1e-5
SEED = int(os.environ.get("KSEG_PARITY_SEED", "0"))
INPUTS = os.environ.get("KSEG_PARITY_INPUTS", "480x480x1,97x131x2")
# The reference tool can also check its hooked forward against GluonCV's predict(); that doubles its
# run time, so one model per head family checks it.
SELF_CHECKED = {"fcn_resnet50_ade", "psp_resnet50_ade", "deeplab_resnet50_ade", "deeplab_v3b_plus_wideresnet_citys"}


@pytest.fixture(scope="session")
def reference_dir(tmp_path_factory):
    root = os.environ.get("KSEG_PARITY_CACHE")
    base = Path(root) if root else tmp_path_factory.mktemp("parity")
    path = base / f"seed{SEED}_{INPUTS.replace(',', '_')}"
    path.mkdir(parents=True, exist_ok=True)
    return path


def gluoncv_reference(side_python, directory, name):
    params, outputs = directory / f"{name}.params", directory / f"{name}.npz"
    if not (params.is_file() and outputs.is_file()):
        command = [
            side_python, str(REPO / "tools" / "gluoncv_reference.py"),
            "--model", name, "--seed", str(SEED), "--inputs", INPUTS, "--out", str(directory),
            "--check" if name in SELF_CHECKED else "--no-check",
        ]  # fmt: skip
        result = subprocess.run(command, capture_output=True, text=True)
        assert result.returncode == 0, (
            f"GluonCV reference failed for {name}:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
        )
    return params, np.load(outputs)


def relative_error(actual, expected):
    return float(np.linalg.norm(actual - expected) / np.linalg.norm(expected))


@pytest.mark.gluoncv
@pytest.mark.parity
@pytest.mark.large
@pytest.mark.parametrize("name", list_models("semantic"))
def test_parity_with_gluoncv(name, side_python, reference_dir):
    aux = get_preset(name).architecture["aux"]
    params, reference = gluoncv_reference(side_python, reference_dir, name)
    model = get(name, weights=params, aux=aux)

    arrays = read_params(params)
    gluoncv_count = sum(a.size for a in arrays.values())
    assert model.count_params() == gluoncv_count, "parameter count differs from GluonCV's"
    assert get_preset(name).metadata.num_params == gluoncv_count, "the preset's parameter count is not GluonCV's"

    errors = {}
    inputs = sorted(k for k in reference.files if k.startswith("input_"))
    assert len(inputs) == len(INPUTS.split(","))
    for key in inputs:
        index = key.removeprefix("input_")
        images = reference[key]
        outputs = model(images, training=False)
        outputs = outputs if isinstance(outputs, dict) else {"logits": outputs}
        size = "x".join(str(d) for d in images.shape[:3])
        errors[f"logits@{size}"] = relative_error(np.asarray(outputs["logits"]), reference[f"output_{index}"])
        if aux:
            errors[f"aux@{size}"] = relative_error(np.asarray(outputs["aux_logits"]), reference[f"aux_{index}"])
    with open(reference_dir / f"{name}.kseg_errors.json", "w") as f:
        json.dump(errors, f, indent=1)
    worst = max(errors.values())
    print(f"{name}: worst relative error {worst:.2e} {errors}")
    assert worst < TOLERANCE, errors
