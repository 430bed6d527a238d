"""The zoo table, ``kseg.models.get`` and ``list_models``."""

import math
import re
from pathlib import Path

import numpy as np
import pytest

import kseg
from kseg.models import SEMANTIC_ZOO, get, get_entry, list_models

EXPECTED = [
    "fcn_resnet50_ade", "fcn_resnet101_ade", "fcn_resnet101_coco", "fcn_resnet101_voc",
    "psp_resnet50_ade", "psp_resnet101_ade", "psp_resnet101_coco", "psp_resnet101_voc", "psp_resnet101_citys",
    "deeplab_resnet50_ade", "deeplab_resnet101_ade", "deeplab_resnet101_coco", "deeplab_resnet101_voc",
    "deeplab_resnet152_voc", "deeplab_v3b_plus_wideresnet_citys",
]  # fmt: skip
PARAM_NAMES = Path(__file__).resolve().parents[2].parent / "shared" / "reference" / "gluoncv-param-names"


def test_list_models_has_the_15_gluoncv_names():
    assert list_models("semantic") == EXPECTED
    assert kseg.models.list_models()[: len(EXPECTED)] == EXPECTED
    assert len(list_models("instance")) == 6 and list_models() == EXPECTED + list_models("instance")


@pytest.mark.parametrize("name", EXPECTED)
def test_entry_metadata_is_complete(name):
    entry = get_entry(name)
    assert re.fullmatch(r"[0-9a-f]{40}", entry.sha1)
    assert entry.gluoncv_file == f"{name}-{entry.sha1[:8]}.params"
    assert (
        len(entry.classes)
        == entry.num_classes
        == {"ade20k": 150, "pascal_voc": 21, "coco": 21, "citys": 19}[entry.dataset]
    )
    assert entry.miou is not None and 30 < entry.miou < 90
    assert entry.crop_size < entry.base_size
    assert entry.recipe == f"recipes/{name}.flags"


def test_unknown_name_lists_close_matches():
    with pytest.raises(ValueError, match="Did you mean: deeplab_resnet101_voc"):
        get("deeplab_resnet101_vocc")
    with pytest.raises(ValueError, match="Unknown model 'unet'"):
        get("unet")


def test_missing_weights_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="nothing.params"):
        get("fcn_resnet50_ade", weights=tmp_path / "nothing.params")


def test_pretrained_offline_says_where_to_put_the_file(tmp_path, monkeypatch):
    monkeypatch.setenv("KSEG_HOME", str(tmp_path))
    monkeypatch.setenv("KSEG_MODEL_STORE_URL", "http://127.0.0.1:9/")  # nothing listens there: offline
    with pytest.raises(FileNotFoundError, match=r"fcn_resnet50_ade-3479525a\.params"):
        get("fcn_resnet50_ade", weights="pretrained")


def _gluoncv_param_count(name):
    total = 0
    for line in (PARAM_NAMES / f"{name}.txt").read_text().splitlines():
        dims = re.search(r"\((.*)\)", line).group(1)
        total += math.prod(int(d) for d in dims.split(",") if d.strip())
    return total


@pytest.mark.large
@pytest.mark.parametrize(
    "name", ["fcn_resnet101_voc", "psp_resnet101_voc", "deeplab_resnet101_voc", "deeplab_v3b_plus_wideresnet_citys"]
)
def test_parameter_count_equals_gluoncv(name):
    if not PARAM_NAMES.is_dir():
        pytest.skip(f"GluonCV parameter listings not found at {PARAM_NAMES}")
    model = get(name, aux=SEMANTIC_ZOO[name].aux)
    assert model.count_params() == _gluoncv_param_count(name)


@pytest.mark.large
@pytest.mark.parametrize("name", EXPECTED)
def test_every_zoo_model_builds(name):
    model = get(name)
    assert model.num_classes == SEMANTIC_ZOO[name].num_classes
    assert model.name == name


def test_gluoncv_script_names_resolve_to_zoo_names():
    assert kseg.models.canonical_backbone("resnet101") == "resnet101_v1s"
    assert kseg.models.canonical_backbone("resnet18_v1b") == "resnet18_v1b"
    assert kseg.models.canonical_backbone("wideresnet") == "wideresnet38"
    assert kseg.models.zoo_name("psp", "resnet101", "pascal_aug") == "psp_resnet101_voc"
    assert kseg.models.zoo_name("deeplab_v3b_plus", "wideresnet", "citys") in SEMANTIC_ZOO
    with pytest.raises(ValueError, match="Unknown dataset"):
        kseg.models.zoo_name("fcn", "resnet50", "imagenet")


def test_build_outside_the_zoo_and_reload_its_weights(tmp_path):
    model = kseg.models.build("psp", "resnet18_v1b", num_classes=5, name="psp_small")
    logits = model(np.zeros((1, 33, 45, 3), np.float32))
    assert logits.shape == (1, 33, 45, 5)
    path = tmp_path / "psp_small.weights.h5"
    model.save_weights(path)
    again = kseg.models.build("psp", "resnet18_v1b", num_classes=5, name="psp_small")
    kseg.models.registry.load_weights(again, path)
    for a, b in zip(model.weights, again.weights, strict=True):
        np.testing.assert_array_equal(a.numpy(), b.numpy())
    other = kseg.models.build("fcn", "resnet18_v1b", num_classes=5)
    with pytest.raises(ValueError, match="does not hold weights"):
        kseg.models.registry.load_weights(other, path)


def test_unknown_method_lists_close_matches():
    with pytest.raises(ValueError, match="Did you mean: psp"):
        kseg.models.build("pspp", "resnet18_v1b", num_classes=3)
