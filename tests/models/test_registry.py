"""``kseg.models.get``, ``list_models`` and ``build``: one registry for every task."""

import math
import re
from pathlib import Path

import numpy as np
import pytest

import kseg
from kseg.models import get, get_entry, list_models

EXPECTED = [
    "fcn_resnet50_ade", "fcn_resnet101_ade", "fcn_resnet101_coco", "fcn_resnet101_voc",
    "psp_resnet50_ade", "psp_resnet101_ade", "psp_resnet101_coco", "psp_resnet101_voc", "psp_resnet101_citys",
    "deeplab_resnet50_ade", "deeplab_resnet101_ade", "deeplab_resnet101_coco", "deeplab_resnet101_voc",
    "deeplab_resnet152_voc", "deeplab_v3b_plus_wideresnet_citys",
]  # fmt: skip
PARAM_NAMES = Path(__file__).resolve().parents[2].parent / "shared" / "reference" / "gluoncv-param-names"


def test_list_models_has_every_gluoncv_name():
    assert list_models("semantic") == EXPECTED
    assert len(list_models("instance")) == 6 and len(list_models("backbone")) == 10
    assert list_models() == EXPECTED + list_models("instance") + list_models("backbone")
    assert list_models("semantic_segmentation") == EXPECTED
    with pytest.raises(ValueError, match="Unknown task 'panoptic'"):
        list_models("panoptic")


def test_get_entry_answers_for_both_tasks():
    """The old get_entry named a Mask R-CNN entry among its "did you mean"s and failed; it is one registry now."""
    entry = get_entry("mask_rcnn_resnet18_v1b_coco")
    assert entry.task == "instance_segmentation" and entry.num_classes == 80
    assert get_entry("psp_resnet101_ade").num_classes == 150


def test_unknown_name_lists_close_matches():
    with pytest.raises(ValueError, match="Did you mean: deeplab_resnet101_voc"):
        get("deeplab_resnet101_vocc")
    with pytest.raises(ValueError, match="Unknown model 'unet'"):
        get("unet")


@pytest.mark.parametrize(
    "name, options, refused",
    [
        ("mask_rcnn_resnet18_v1b_coco", {"output_stride": 16}, "output_stride does not apply"),
        ("mask_rcnn_resnet18_v1b_coco", {"sync_bn": True}, "sync_bn does not apply"),
        ("mask_rcnn_resnet18_v1b_coco", {"aux": True}, "aux does not apply"),
        ("resnet50_v1b", {"num_classes": 5}, "num_classes does not apply"),
        ("resnet50_v1b", {"aux": False}, "aux does not apply"),
    ],
)
def test_options_that_do_not_apply_are_refused(name, options, refused):
    with pytest.raises(ValueError, match=refused):
        get(name, **options)


@pytest.mark.parametrize(
    "options, error",
    [
        ({"num_classes": 1.5}, "num_classes must be a positive integer, got 1.5"),
        ({"num_classes": 0}, "num_classes must be a positive integer"),
        ({"num_classes": True}, "num_classes must be a positive integer"),
        ({"aux": "no"}, "aux must be True or False, got 'no'"),
        ({"sync_bn": 1}, "sync_bn must be True or False"),
        ({"output_stride": 12}, r"output_stride must be one of \(8, 16, 32\)"),
        ({"classes": "cat"}, "classes must be a non-empty list"),
        ({"classes": ["cat", "cat"]}, "distinct"),
        ({"classes": ["cat", "dog"], "num_classes": 3}, "num_classes=3 but 2 class names"),
        ({"strict": "yes"}, "strict must be True or False"),
    ],
)
def test_bad_option_values_are_refused_not_coerced(options, error):
    with pytest.raises((TypeError, ValueError), match=error):
        get("fcn_resnet50_ade", **options)


def test_classes_by_name_travel_with_the_model():
    model = get("fcn_resnet50_ade", classes=["road", "car", "sky"])
    assert model.num_classes == 3 and model.metadata.classes == ("road", "car", "sky")
    assert model.metadata.preset == "fcn_resnet50_ade" and model.metadata.dataset is None
    numbered = get("fcn_resnet50_ade", num_classes=2)
    assert numbered.metadata.classes == ("class_0", "class_1")
    own = get("fcn_resnet50_ade", num_classes=150)  # the preset's own count: its names
    assert own.metadata.classes[0] == "wall" and own.metadata.dataset == "ade20k"


def test_missing_weights_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="nothing.params"):
        get("fcn_resnet50_ade", weights=tmp_path / "nothing.params")


def test_none_means_random_weights():
    assert get("fcn_resnet50_ade", weights="none").name == "fcn_resnet50_ade"


def test_pretrained_offline_says_where_to_put_the_file(tmp_path, monkeypatch):
    monkeypatch.setenv("KSEG_HOME", str(tmp_path))
    monkeypatch.setenv("KSEG_MODEL_STORE_URL", "http://127.0.0.1:9/")  # nothing listens there: offline
    with pytest.raises(FileNotFoundError, match=r"fcn_resnet50_ade-3479525a\.params"):
        get("fcn_resnet50_ade", weights="pretrained")
    with pytest.raises(FileNotFoundError, match=r"mask_rcnn_resnet18_v1b_coco-e071cf15\.params"):
        get("mask_rcnn_resnet18_v1b_coco", weights="pretrained")


def test_strict_refuses_untrained_class_layers_before_any_download(tmp_path, monkeypatch):
    monkeypatch.setenv("KSEG_HOME", str(tmp_path))
    monkeypatch.setenv("KSEG_MODEL_STORE_URL", "http://127.0.0.1:9/")
    with pytest.raises(ValueError, match="predicts its 150 ade20k classes, but 5 are asked"):
        get("fcn_resnet50_ade", weights="pretrained", num_classes=5, strict=True)
    assert list(tmp_path.iterdir()) == []


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
    assert kseg.presets.get_preset(name).metadata.num_params == _gluoncv_param_count(name)


def test_gluoncv_script_names_resolve_to_zoo_names():
    assert kseg.models.canonical_backbone("resnet101") == "resnet101_v1s"
    assert kseg.models.canonical_backbone("resnet18_v1b") == "resnet18_v1b"
    assert kseg.models.canonical_backbone("wideresnet") == "wideresnet38"
    assert kseg.models.zoo_name("psp", "resnet101", "pascal_aug") == "psp_resnet101_voc"
    assert kseg.models.zoo_name("deeplab_v3b_plus", "wideresnet", "citys") in EXPECTED
    with pytest.raises(ValueError, match="Unknown dataset"):
        kseg.models.zoo_name("fcn", "resnet50", "imagenet")
    choice = kseg.models.choose_model(method="psp", backbone="resnet101", dataset="pascal_aug")
    assert choice.preset.name == "psp_resnet101_voc" and choice.dataset == "pascal_aug"
    assert kseg.models.choose_model(method="fcn", backbone="resnet18_v1b", dataset="citys").preset is None


def test_build_outside_the_zoo_and_reload_its_weights(tmp_path):
    model = kseg.models.build("psp", "resnet18_v1b", num_classes=5, name="psp_small")
    logits = model(np.zeros((1, 33, 45, 3), np.float32))
    assert logits.shape == (1, 33, 45, 5)
    assert model.metadata.classes == tuple(f"class_{i}" for i in range(5)) and model.metadata.preset is None
    path = tmp_path / "psp_small.weights.h5"
    model.save_weights(path)
    again = kseg.models.build("psp", "resnet18_v1b", num_classes=5, name="psp_small")
    kseg.models.load_model_weights(again, path)
    for a, b in zip(model.weights, again.weights, strict=True):
        np.testing.assert_array_equal(a.numpy(), b.numpy())
    other = kseg.models.build("fcn", "resnet18_v1b", num_classes=5)
    with pytest.raises(ValueError, match="does not hold weights"):
        kseg.models.load_model_weights(other, path)


def test_unknown_method_lists_close_matches():
    with pytest.raises(ValueError, match="Did you mean: psp"):
        kseg.models.build("pspp", "resnet18_v1b", num_classes=3)


def test_precision_builds_under_its_policy_and_is_refused_without_bfloat16_hardware(monkeypatch):
    from kseg.ops import runtime

    model = get("resnet18_v1b", precision="mixed_bfloat16")
    assert model.dtype_policy.name == "mixed_bfloat16"
    assert all(w.dtype == "float32" for w in model.weights)  # float32 weights: float32 files load as they are
    assert get("resnet18_v1b").dtype_policy.name == "float32"  # the global policy is left as it was
    with pytest.raises(ValueError, match="precision must be one of float32, mixed_bfloat16, mixed_float16"):
        get("resnet18_v1b", precision="bfloat16")
    monkeypatch.setattr(runtime, "accelerator", lambda: "cpu")
    monkeypatch.setattr(runtime, "_cpu_flags", lambda: {"avx2", "avx512f"})
    with pytest.raises(ValueError, match=r"CPU \(no AVX512-BF16 or AMX\) lacks"):
        get("resnet18_v1b", precision="mixed_bfloat16")
    monkeypatch.setattr(runtime, "_cpu_flags", lambda: {"avx2", "avx512_bf16"})
    assert get("resnet18_v1b", precision="mixed_bfloat16").dtype_policy.name == "mixed_bfloat16"
