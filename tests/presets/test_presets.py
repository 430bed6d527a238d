"""The preset tables, driven by the registry (torchvision's meta-schema test): every preset says all it must.

These tests import no TensorFlow: the tables are plain data.
"""

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from kseg import presets
from kseg.presets import BACKBONE, INSTANCE, PRESETS, SEMANTIC, ModelMetadata, Preprocessing, get_preset

REPO = Path(__file__).resolve().parents[2]
METRIC_KEYS = {
    SEMANTIC: {"pixAcc", "mIoU"},
    INSTANCE: {f"{kind} {metric}" for kind in ("box", "mask") for metric in ("AP", "AP50", "AP75")},
    BACKBONE: {"top-1"},
}
BUILDERS = {SEMANTIC: "semantic_segmenter", INSTANCE: "mask_rcnn", BACKBONE: "resnet_v1"}


def test_the_registry_holds_every_published_model():
    assert [len(presets.list_presets(task)) for task in ("semantic", "instance", "backbone")] == [15, 6, 10]
    assert len(PRESETS) == 31


@pytest.mark.parametrize("name", list(PRESETS))
def test_every_preset_has_its_metadata(name):
    preset = get_preset(name)
    assert preset.name == name and preset.builder == BUILDERS[preset.task]
    weights = preset.weights
    assert re.fullmatch(r"[0-9a-f]{40}", weights.sha1) and weights.name == name
    assert weights.gluoncv_file == f"{name}-{weights.sha1[:8]}.params"
    assert weights.url.endswith(f"gluon/models/{name}-{weights.sha1[:8]}.zip")
    assert weights.converter in ("gluoncv_semantic", "gluoncv_rcnn", "gluoncv_imagenet")
    metadata = preset.metadata
    assert set(metadata.metrics) == METRIC_KEYS[preset.task]
    assert metadata.evaluation and metadata.num_params > 1_000_000
    assert metadata.preprocessing.mean == presets.IMAGENET_MEAN and metadata.preprocessing.std == presets.IMAGENET_STD
    if preset.task == SEMANTIC:
        assert preset.dataset in presets.DATASET_KEYS
        assert preset.classes == presets.CLASSES_BY_DATASET[preset.dataset]
        resize = metadata.preprocessing.resize
        assert resize.policy == "base_crop" and resize.crop_size < resize.base_size
        assert metadata.metrics["mIoU"] is not None and 30 < metadata.metrics["mIoU"] < 90
        assert metadata.recipe == f"recipes/{name}.flags" and (REPO / metadata.recipe).is_file()
    elif preset.task == INSTANCE:
        assert preset.num_classes == 80 and preset.classes[0] == "person"
        assert metadata.preprocessing.resize.policy == "short_side"
        assert 25 < metadata.metrics["mask AP"] < metadata.metrics["box AP"] < 45
    else:
        assert preset.classes is None and metadata.preprocessing.resize is None


def test_architectures_hold_architecture_only():
    for preset in PRESETS.values():
        assert not {"sha1", "name", "classes", "short", "max_size", "box_ap", "miou"} & set(preset.architecture)


def test_a_zoo_models_metadata_round_trips():
    metadata = get_preset("psp_resnet101_citys").model_metadata()
    assert metadata.num_classes == 19 and metadata.preset == "psp_resnet101_citys"
    again = ModelMetadata.from_config(json.loads(json.dumps(metadata.to_config())))
    assert again == metadata and again.preprocessing.resize.crop_size == 768
    assert Preprocessing.from_config(Preprocessing().to_config()) == Preprocessing()
    tuned = metadata.with_classes(["road", "car"])
    assert tuned.num_classes == 2 and tuned.dataset is None and tuned.preset == "psp_resnet101_citys"


def test_store_url_is_derived_in_one_place(monkeypatch):
    monkeypatch.setenv("KSEG_MODEL_STORE_URL", "http://mirror.example/models")
    for preset in PRESETS.values():
        assert preset.weights.url == f"http://mirror.example/models/gluon/models/{preset.weights.archive}"


def test_unknown_names_and_tasks_are_refused():
    with pytest.raises(ValueError, match="Did you mean: mask_rcnn_resnet18_v1b_coco"):
        get_preset("mask_rcnn_resnet18_v1b_cocoo")
    with pytest.raises(ValueError, match="Unknown task"):
        presets.list_presets("detection")


def test_tables_and_the_command_line_import_no_tensorflow():
    """`kseg --help`, `kseg list` and `kseg info` answer from the tables alone."""
    script = (
        "import sys, contextlib, io\n"
        "from kseg.cli.main import main\n"
        "with contextlib.redirect_stdout(io.StringIO()):\n"
        "    codes = [main(['--help']), main(['list']), main(['list', '--json']), main(['info', 'psp_resnet101_ade']),"
        " main(['info', 'mask_rcnn_fpn_resnet50_v1b_coco'])]\n"
        "assert codes == [0, 0, 0, 0, 0], codes\n"
        "heavy = sorted(m for m in ('tensorflow', 'keras', 'numpy', 'PIL') if m in sys.modules)\n"
        "print(heavy)\n"
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=REPO, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]", f"imported: {result.stdout}"
