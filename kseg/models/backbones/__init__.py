"""Backbones: dilated ResNet v1b/c/d/s and WideResNet38-A2."""

from kseg.models.backbones.resnet_v1 import RESNET_VARIANTS, ResNetV1Backbone, resnet_v1
from kseg.models.backbones.wideresnet38 import WideResNet38Backbone

__all__ = ["RESNET_VARIANTS", "ResNetV1Backbone", "WideResNet38Backbone", "resnet_v1"]
