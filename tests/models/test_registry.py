"""The zoo table, ``kseg.models.get`` and ``list_models``."""

import math
import re
from pathlib import Path

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
    assert list_models() == EXPECTED
    assert kseg.models.list_models() == EXPECTED


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
