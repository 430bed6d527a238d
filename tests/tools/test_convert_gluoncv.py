"""tools/convert_gluoncv.py on GluonCV-style files made from tiny kseg models."""

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from kseg.weights.gluoncv import gluoncv_arrays
from kseg.weights.mxnet_params import write_params

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "tools"))

import convert_gluoncv  # noqa: E402


def run_tool(*args):
    return subprocess.run(
        [sys.executable, str(REPO / "tools" / "convert_gluoncv.py"), *args], capture_output=True, text=True
    )


def test_cli_requires_arguments():
    result = run_tool("--model", "fcn_resnet50_ade")
    assert result.returncode == 2 and "--params is required" in result.stderr


def test_cli_rejects_unknown_model_and_missing_file(tmp_path):
    result = run_tool("--model", "fcn_resnet50_adee", "--params", "x.params", "--out", str(tmp_path / "o.weights.h5"))
    assert result.returncode == 1 and "Did you mean: fcn_resnet50_ade" in result.stderr
    result = run_tool(
        "--model",
        "fcn_resnet50_ade",
        "--params",
        str(tmp_path / "none.params"),
        "--out",
        str(tmp_path / "o.weights.h5"),
    )
    assert result.returncode == 1 and "not found" in result.stderr


def test_verify_rejects_a_wrong_sha1(tmp_path):
    params = tmp_path / "fcn.params"
    write_params(params, {"a": np.zeros(3, "float32")})
    with pytest.raises(ValueError, match="SHA-1 mismatch"):
        convert_gluoncv.convert("fcn_resnet50_ade", params, tmp_path / "o.weights.h5", verify=True)
    assert not (tmp_path / "o.weights.h5").exists()


def test_mismatched_file_leaves_nothing_behind(tmp_path):
    params = tmp_path / "fcn.params"
    write_params(params, {"conv1.0.weight": np.zeros((64, 3, 3, 3), "float32")})
    with pytest.raises(ValueError, match="missing array"):
        convert_gluoncv.convert("fcn_resnet50_ade", params, tmp_path / "o.weights.h5")
    assert list(tmp_path.iterdir()) == [params]


@pytest.mark.large
def test_convert_roundtrip_full_model(tmp_path):
    import kseg

    source = kseg.models.get("fcn_resnet50_ade", aux=True)
    params = tmp_path / "fcn_resnet50_ade.params"
    write_params(params, gluoncv_arrays(source))
    out = tmp_path / "fcn_resnet50_ade.weights.h5"
    result = run_tool("--model", "fcn_resnet50_ade", "--params", str(params), "--out", str(out))
    assert result.returncode == 0, result.stderr
    images = np.random.default_rng(0).standard_normal((1, 65, 49, 3)).astype("float32")
    expected = source(images, training=False)["logits"]
    for aux in (True, False):
        model = kseg.models.get("fcn_resnet50_ade", weights=out, aux=aux)
        logits = model(images, training=False)
        logits = logits["logits"] if aux else logits
        np.testing.assert_allclose(logits, expected, atol=1e-5)
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []
