"""kseg models: the one registry of presets (``get``, ``list_models``), task models, backbones and heads.

Example:
    >>> import kseg
    >>> model = kseg.models.get("deeplab_resnet101_voc", weights="pretrained")
    >>> model.metadata.classes[15]
    'person'
"""

from kseg.models.backbones import ResNetV1Backbone, WideResNet38Backbone
from kseg.models.builders import BUILDERS, canonical_backbone
from kseg.models.choice import ModelChoice, choose_model
from kseg.models.mask_rcnn import MaskRCNN, MaskRCNNConfig
from kseg.models.registry import (
    build,
    build_published,
    convert,
    get,
    get_entry,
    list_models,
    load_model_weights,
    metadata_of,
    zoo_name,
)
from kseg.models.segmentation import SemanticSegmenter

__all__ = [
    "BUILDERS",
    "MaskRCNN",
    "MaskRCNNConfig",
    "ModelChoice",
    "ResNetV1Backbone",
    "SemanticSegmenter",
    "WideResNet38Backbone",
    "build",
    "build_published",
    "canonical_backbone",
    "choose_model",
    "convert",
    "get",
    "get_entry",
    "list_models",
    "load_model_weights",
    "metadata_of",
    "zoo_name",
]
