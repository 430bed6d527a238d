"""Every preset, driven by the registry: ``kseg.models.get`` builds it with its metadata, its parameter count
is its metadata's, and its ``.keras`` file round-trips: config, dtype policy, metadata and every weight.

The ``.keras`` load is the whole config round trip (``serialize_keras_object`` to JSON, then
``deserialize_keras_object``, which calls ``from_config``), so one rebuild per preset checks both.
"""

import numpy as np
import pytest
from test_case import ModelTestHarness, global_policy

import kseg
from kseg.presets import BACKBONE, PRESETS

# C4 Mask R-CNN runs its 1000 RoIs through stage 4: GiBs that a worker would keep (conftest.py).
C4_DETECTORS = {"mask_rcnn_resnet50_v1b_coco", "mask_rcnn_resnet101_v1d_coco"}


@pytest.mark.large
@pytest.mark.parametrize("name", [pytest.param(name, marks=pytest.mark.isolated) if name in C4_DETECTORS else name
                                  for name in PRESETS])  # fmt: skip
class TestPresetModels(ModelTestHarness):
    def test_preset_builds_and_round_trips(self, name, tmp_path):
        preset = PRESETS[name]
        # The published architecture (with its auxiliary head), built under mixed bfloat16 and restored under
        # float32: the dtype policy travels in the config.
        options = {"aux": True} if preset.architecture.get("aux") else {}
        with global_policy("mixed_bfloat16"):
            model = kseg.models.get(name, **options)
        assert model.count_params() == preset.metadata.num_params
        assert model.metadata == preset.model_metadata() and model.name == name
        assert model.dtype_policy.name == "mixed_bfloat16"
        empty = model(np.zeros((0, 64, 64, 3), "float32"))  # an empty batch is an empty answer
        if preset.task == BACKBONE:
            assert model.metadata.classes == () and model.output_stride == 32
            assert empty["c5"].shape[0] == 0
        else:
            assert model.num_classes == preset.num_classes
            outputs = empty if isinstance(empty, dict) else {"logits": empty}
            assert all(value.shape[0] == 0 for value in outputs.values())
        restored = self.run_weights_saving_test(model, tmp_path)
        assert restored.dtype_policy.name == "mixed_bfloat16"
