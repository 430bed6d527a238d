"""Every preset, driven by the registry: ``kseg.models.get`` builds it with its metadata, its parameter count
is its metadata's, and its config and ``.keras`` file round-trip (dtype policy and metadata kept)."""

import pytest
from test_case import ModelTestHarness, global_policy

import kseg
from kseg.presets import BACKBONE, PRESETS


@pytest.mark.large
@pytest.mark.parametrize("name", list(PRESETS))
class TestPresetModels(ModelTestHarness):
    def test_preset_builds_and_round_trips(self, name, tmp_path):
        preset = PRESETS[name]
        # The published architecture (with its auxiliary head), built under mixed bfloat16 and restored under
        # float32 below: the dtype policy travels in the config.
        options = {"aux": True} if preset.architecture.get("aux") else {}
        with global_policy("mixed_bfloat16"):
            model = kseg.models.get(name, **options)
        assert model.count_params() == preset.metadata.num_params
        assert model.metadata == preset.model_metadata() and model.name == name
        assert model.dtype_policy.name == "mixed_bfloat16"
        if preset.task == BACKBONE:
            assert model.metadata.classes == () and model.output_stride == 32
        else:
            assert model.num_classes == preset.num_classes
        self.run_config_roundtrip_test(model)
        # The same config and every weight restored: the same function (outputs are compared on tiny models).
        self.run_weights_saving_test(model, tmp_path)
