"""kseg models: the zoo registry, task models, backbones and heads."""

from kseg.models.backbones import ResNetV1Backbone, WideResNet38Backbone
from kseg.models.registry import build, canonical_backbone, get, get_entry, list_models, zoo_name
from kseg.models.segmentation import SemanticSegmenter
from kseg.models.zoo import SEMANTIC_ZOO, ZooEntry

__all__ = [
    "SEMANTIC_ZOO",
    "ResNetV1Backbone",
    "SemanticSegmenter",
    "WideResNet38Backbone",
    "ZooEntry",
    "build",
    "canonical_backbone",
    "get",
    "get_entry",
    "list_models",
    "zoo_name",
]
