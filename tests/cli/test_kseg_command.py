"""The ``kseg`` command: subcommands, --help, errors and exit codes."""

import json
import os
import subprocess
import sys

import pytest

from kseg.models import list_models


def kseg(*args):
    return subprocess.run([sys.executable, "-m", "kseg.cli.main", *map(str, args)], capture_output=True, text=True,
                          timeout=300)


def test_list_and_info():
    listed = kseg("list")
    assert listed.returncode == 0, listed.stderr
    for name in list_models():
        assert name in listed.stdout
    as_json = json.loads(kseg("list", "--json", "--dataset", "citys").stdout)
    assert {e["name"] for e in as_json} == {"psp_resnet101_citys", "deeplab_v3b_plus_wideresnet_citys"}
    info = json.loads(kseg("info", "psp_resnet101_ade").stdout)
    assert info["num_classes"] == 150 and info["sha1"].startswith("240a4758") and info["recipe"].endswith(".flags")


@pytest.mark.parametrize("command", ["list", "info", "convert", "predict", "export", "bench"])
def test_every_command_has_help(command):
    result = kseg(command, "--help")
    assert result.returncode == 0, result.stderr
    assert "usage" in result.stdout.lower() or "flags" in result.stdout.lower()


def test_errors_and_exit_codes(tmp_path):
    unknown = kseg("lst")
    assert unknown.returncode == 2 and "Did you mean: list" in unknown.stderr
    assert kseg().returncode == 2
    model = kseg("info", "fcn_resnet5_ade")
    assert model.returncode == 1 and "Did you mean: fcn_resnet50_ade" in model.stderr
    usage = kseg("convert", "--model", "fcn_resnet50_ade")
    assert usage.returncode == 2 and "--params" in usage.stderr
    missing = kseg("convert", "--model", "fcn_resnet50_ade", "--params", tmp_path / "no.params", "--out",
                   tmp_path / "x.weights.h5")
    assert missing.returncode == 1 and "not found" in missing.stderr
    image = kseg("predict", tmp_path / "none.jpg", "--model", "fcn_resnet50_ade")
    assert image.returncode == 1 and "Image not found" in image.stderr
    dataset = kseg("list", "--dataset", "cityscapes")  # not a key: an error, not an empty table
    assert dataset.returncode == 2 and "invalid choice: 'cityscapes'" in dataset.stderr


def test_export_with_other_classes_needs_a_fine_tuned_file(tmp_path):
    """--num-classes with GluonCV's file would export untrained class layers: refused, nothing written."""
    env = {**os.environ, "KSEG_HOME": str(tmp_path / "home"), "KSEG_MODEL_STORE_URL": "http://127.0.0.1:9/"}
    result = subprocess.run(
        [sys.executable, "-m", "kseg.cli.main", "export", "--model", "fcn_resnet50_ade", "--num-classes", "5",
         "--out", str(tmp_path / "serving")],
        capture_output=True, text=True, timeout=300, env=env,
    )
    assert result.returncode == 1, result.stderr
    assert "predicts its 150 ade20k classes, but 5 are asked" in result.stderr
    assert not (tmp_path / "serving").exists()


def test_predict_in_bfloat16_and_its_refusal_without_bfloat16_hardware(tmp_path, monkeypatch):
    import numpy as np
    from PIL import Image

    from kseg.cli import predict
    from kseg.ops import runtime

    image = tmp_path / "street.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (40, 56, 3), dtype=np.uint8)).save(image)
    argv = [str(image), "--model", "fcn_resnet50_ade", "--weights", "none", "--precision", "mixed_bfloat16",
            "--out", str(tmp_path / "out")]
    monkeypatch.setattr(runtime, "accelerator", lambda: "cpu")
    monkeypatch.setattr(runtime, "_cpu_flags", lambda: {"avx2"})
    with pytest.raises(SystemExit, match="mixed_bfloat16 needs bfloat16 arithmetic"):
        predict.main(argv)
    monkeypatch.setattr(runtime, "_cpu_flags", lambda: {"avx2", "avx512_bf16"})
    predict.main(argv)
    with Image.open(tmp_path / "out" / "street_mask.png") as mask:
        assert mask.size == (56, 40)
