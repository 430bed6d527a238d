"""Every zoo entry has a flagfile; each parses and builds its model (a dry run, no data)."""

import re

import pytest
from recipe_runner import REPO, output_of

from kseg.presets import PRESETS, list_presets

RECIPES = REPO / "recipes"
SHORT_NAMES = ("fcn_ade", "psp_ade", "deeplab_ade", "fcn_coco", "psp_coco", "deeplab_coco", "fcn_voc", "psp_voc",
               "deeplab_voc", "psp_citys", "deeplab_plus_citys")


def flags_of(path):
    lines = path.read_text().splitlines()
    return dict(line.lstrip("-").partition("=")[::2] for line in lines if line.startswith("--"))


def test_every_zoo_entry_has_its_recipe():
    for name in list_presets("semantic"):
        preset = PRESETS[name]
        path = REPO / preset.metadata.recipe
        assert path.is_file(), path
        values = flags_of(path)
        resize = preset.metadata.preprocessing.resize
        assert values["model-zoo"] == preset.name
        assert int(values["base-size"]) == resize.base_size and int(values["crop-size"]) == resize.crop_size
        assert values["batch-size"] == "16" and values["momentum"] == "0.9" and values["weight-decay"] == "1e-4"
        assert f"{preset.metrics['mIoU']}" in path.read_text().splitlines()[0]  # the published score is quoted


def test_every_flag_is_a_config_field():
    """recipes/train.py's flags are made from kseg.training.TrainConfig: one flag per field, nothing else."""
    import dataclasses

    from absl import flags

    from kseg.cli.train_command import config_from_flags, define_train_flags
    from kseg.training import TrainConfig

    flag_values = flags.FlagValues()
    define_train_flags(flag_values)
    fields = {field.name.replace("_", "-") for field in dataclasses.fields(TrainConfig)}
    assert set(flag_values) == fields
    for path in sorted(RECIPES.glob("*.flags")):  # every flagfile parses into a config
        flag_values.unparse_flags()
        flag_values(["train.py", f"--flagfile={path}"])
        config = config_from_flags(flag_values)
        if not path.stem.startswith("quickstart_"):  # the quickstarts are small on purpose
            assert config.epochs >= 10 and config.batch_size >= 8, path


@pytest.mark.parametrize("short", SHORT_NAMES)
def test_short_names_copy_their_full_recipe(short):
    text = (RECIPES / f"{short}.flags").read_text()
    full = re.search(r"a copy of recipes/(\w+)\.flags", text).group(1)
    assert text.split("\n", 1)[1] == (RECIPES / f"{full}.flags").read_text()


def test_gluoncv_recipes_are_reproduced():
    # GluonCV's scripts (dmlc/web-data gluoncv/logs/segmentation/*.sh, linked from its zoo tables): ADE/COCO
    # 4 GPUs, lr 0.01, aux, SyncBN, --epochs 120 (ADE) / 30 (COCO); facts §6 says 50, from the scripts' first
    # version. Cityscapes 8 GPUs, 240 epochs; VOC in two stages, both with --aux.
    for name in ("fcn_resnet50_ade", "fcn_resnet101_ade", "psp_resnet50_ade", "psp_resnet101_ade",
                 "deeplab_resnet50_ade", "deeplab_resnet101_ade"):
        assert flags_of(RECIPES / f"{name}.flags")["epochs"] == "120", name
    for name in ("fcn_resnet101_coco", "psp_resnet101_coco", "deeplab_resnet101_coco"):
        assert flags_of(RECIPES / f"{name}.flags")["epochs"] == "30", name
    for name in ("fcn_resnet101_voc_aug", "psp_resnet101_voc_aug", "deeplab_resnet101_voc_aug"):
        stage1 = flags_of(RECIPES / f"{name}.flags")
        assert "aux" in stage1 and stage1["aux-weight"] == "1.0" and stage1["epochs"] == "50", name
    ade = flags_of(RECIPES / "psp_resnet101_ade.flags")
    assert ade["lr"] == "0.01" and ade["gradient-scale"] == "0.25"
    assert "aux" in ade and "syncbn" in ade and ade["aux-weight"] == "1.0"
    assert ade["pretrained-backbone"] == "resnet101_v1s"
    citys = flags_of(RECIPES / "psp_resnet101_citys.flags")
    assert citys["epochs"] == "240" and citys["gradient-scale"] == "0.5" and citys["crop-size"] == "768"
    stage1, stage2 = flags_of(RECIPES / "fcn_resnet101_voc_aug.flags"), flags_of(RECIPES / "fcn_resnet101_voc.flags")
    assert stage1["dataset"] == "pascal_aug" and stage1["init-from"] == "fcn_resnet101_coco" and stage1["lr"] == "0.001"
    assert stage2["dataset"] == "pascal_voc" and stage2["lr"] == "0.0001" and "aux" in stage2
    # GluonCV's stage 2 resumed stage 1's checkpoint.params, the aux head included.
    assert stage2["init-from"] == f"{stage1['run-dir']}/checkpoint.weights.h5"


@pytest.mark.large
def test_flagfiles_build_and_compile_their_models(tmp_path):
    """One process parses flagfiles as train.py does and builds and compiles their models (a dry run): one of
    each method and data-set shape. Every flagfile parses into a TrainConfig (test_every_flag_is_a_config_field);
    every zoo model builds (tests/models/test_preset_models.py)."""
    import subprocess
    import sys

    script = """
import sys
from absl import flags
from kseg.cli.train_command import config_from_flags, define_train_flags
from kseg.training import train
define_train_flags()
for path in sys.argv[1:]:
    flags.FLAGS.unparse_flags()
    flags.FLAGS(["train.py", "--flagfile=" + path, "--dry-run"])
    report = train(config_from_flags())
    assert report.dry_run and report.parameters > 1e6, path
    print("OK", path, flush=True)
"""
    chosen = ("fcn_resnet50_ade", "psp_resnet101_citys", "deeplab_resnet152_voc", "deeplab_resnet101_voc_aug",
              "deeplab_v3b_plus_wideresnet_citys", "quickstart")
    paths = [str(RECIPES / f"{name}.flags") for name in chosen]
    result = subprocess.run([sys.executable, "-c", script, *paths], cwd=REPO, capture_output=True, text=True,
                            timeout=1200)
    assert result.returncode == 0, output_of(result)
    assert result.stdout.count("OK ") == len(paths)


def test_every_mask_rcnn_entry_has_gluoncvs_recipe():
    for name in list_presets("instance"):
        preset = PRESETS[name]
        path = REPO / preset.metadata.recipe
        values = flags_of(path)
        assert values["model-zoo"] == name
        assert (values["batch-size"], values["lr"], values["epochs"], values["lr-decay-epochs"]) == ("8", "0.01", "26",
                                                                                                     "17,23")
        assert (values["short"], values["max-size"], values["warmup-steps"]) == ("800", "1333", "1000")
        assert values["pretrained-backbone"] == {18: "resnet18_v1b", 50: "resnet50_v1b", 101: "resnet101_v1d"}[
            preset.architecture["depth"]]
        first = path.read_text().splitlines()[0]
        assert f"box AP {preset.metrics['box AP']}" in first and f"mask AP {preset.metrics['mask AP']}" in first
