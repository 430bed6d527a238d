"""Every preset, driven by the registry: it builds, its parameter count is its metadata's, its config and
``.keras`` file round-trip (dtype policy and metadata kept), and ``kseg.models.get`` gives it its metadata."""

import numpy as np
import pytest
from test_case import ModelTestHarness, global_policy

import kseg
from kseg.presets import BACKBONE, PRESETS, SEMANTIC


def small_input(preset):
    return np.random.default_rng(0).standard_normal((1, 64, 64, 3)).astype("float32")


@pytest.mark.large
@pytest.mark.parametrize("name", list(PRESETS))
class TestPresetModels(ModelTestHarness):
    def test_published_model_round_trips(self, name, tmp_path):
        preset = PRESETS[name]
        # Built under mixed bfloat16, restored under float32: the dtype policy travels in the config.
        with global_policy("mixed_bfloat16"):
            model = kseg.models.build_published(preset)
        assert model.count_params() == preset.metadata.num_params
        assert model.metadata == preset.model_metadata() and model.name == name
        assert model.dtype_policy.name == "mixed_bfloat16"
        self.run_config_roundtrip_test(model)
        if preset.task != SEMANTIC:
            return  # the .keras file of every task is checked on tiny models; the big semantic ones here
        self.run_saving_test(model, tmp_path, small_input(preset))

    def test_get_carries_the_metadata(self, name):
        preset = PRESETS[name]
        model = kseg.models.get(name)
        assert model.metadata == preset.model_metadata()
        if preset.task == BACKBONE:
            assert model.metadata.classes == () and model.output_stride == 32
        else:
            assert model.num_classes == preset.num_classes
