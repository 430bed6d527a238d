"""Full-size zoo models: any input size, batch > 1, XLA equals eager."""

import pytest
from test_case import ModelTestHarness, random_images

import kseg

ONE_PER_FAMILY = ["fcn_resnet50_ade", "psp_resnet50_ade", "deeplab_resnet50_ade", "deeplab_v3b_plus_wideresnet_citys"]


@pytest.mark.large
@pytest.mark.parametrize("name", ONE_PER_FAMILY)
class TestZooModels(ModelTestHarness):
    def test_odd_sizes_and_jit(self, name):
        preset = kseg.presets.get_preset(name)
        model = kseg.models.build_published(preset)
        self.run_output_shape_test(model, preset.num_classes, sizes=((2, 65, 81), (1, 33, 17)))
        self.run_jit_test(model, random_images(2, 65, 81), atol=1e-4)
