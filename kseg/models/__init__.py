"""kseg models: the zoo registry, task models, backbones and heads."""

from kseg.models.backbones import ResNetV1Backbone, WideResNet38Backbone
from kseg.models.registry import get, get_entry, list_models
from kseg.models.segmentation import SemanticSegmenter
from kseg.models.zoo import SEMANTIC_ZOO, ZooEntry

__all__ = [
    "SEMANTIC_ZOO",
    "ResNetV1Backbone",
    "SemanticSegmenter",
    "WideResNet38Backbone",
    "ZooEntry",
    "get",
    "get_entry",
    "list_models",
]
