"""The builders a preset's ``builder`` names: architecture arguments + options -> a Keras model.

Each builder says which options of :func:`kseg.models.get` apply to its
models (``aux``, ``output_stride``, ``sync_bn``; the class options apply to
every preset with classes) and builds the model with its
:class:`kseg.presets.ModelMetadata`.
"""

from __future__ import annotations

import dataclasses
import difflib
from collections.abc import Mapping
from typing import Any

import keras

from kseg.models.backbones import ResNetV1Backbone, WideResNet38Backbone, resnet_v1
from kseg.models.mask_rcnn import MaskRCNN, MaskRCNNConfig
from kseg.models.segmentation import SemanticSegmenter
from kseg.presets import BACKBONE, INSTANCE, SEMANTIC, ModelMetadata

METHOD_HEADS = {"fcn": "fcn", "psp": "psp", "deeplab": "deeplabv3", "deeplab_v3b_plus": "deeplabv3plus"}
OUTPUT_STRIDES = (8, 16, 32)
# GluonCV's segmentation scripts name backbones without the variant; they mean v1s.
_SHORT_BACKBONES = {"wideresnet": "wideresnet38"}

# The converter of a task's GluonCV files, for models built outside the presets.
CONVERTER_OF_TASK = {SEMANTIC: "gluoncv_semantic", INSTANCE: "gluoncv_rcnn", BACKBONE: "gluoncv_imagenet"}


def canonical_backbone(backbone: str) -> str:
    """GluonCV's script names (``resnet101``, ``wideresnet``) -> kseg's (``resnet101_v1s``, ``wideresnet38``).

    Example:
        >>> kseg.models.canonical_backbone("resnet101"), kseg.models.canonical_backbone("wideresnet")
        ('resnet101_v1s', 'wideresnet38')
        >>> kseg.models.canonical_backbone("resnet18_v1b")
        'resnet18_v1b'
    """
    backbone = _SHORT_BACKBONES.get(backbone, backbone)
    if backbone.startswith("resnet") and "_v1" not in backbone:
        backbone += "_v1s"
    return backbone


def build_backbone(backbone: str, output_stride: int = 8, sync_bn: bool = False) -> keras.Model:
    """A dilated backbone by GluonCV name (``resnet101_v1s``, ``wideresnet38``)."""
    if backbone == "wideresnet38":
        if output_stride != 8:
            raise ValueError("wideresnet38 supports output_stride=8 only")
        return WideResNet38Backbone(dilated=True, sync_bn=sync_bn, name="backbone")
    return resnet_v1(backbone, output_stride=output_stride, sync_bn=sync_bn, name="backbone")


def check_method(method: str) -> str:
    if method not in METHOD_HEADS:
        close = difflib.get_close_matches(str(method), METHOD_HEADS, n=3)
        hint = f" Did you mean: {', '.join(close)}?" if close else ""
        raise ValueError(f"Unknown method {method!r}.{hint} Methods: {', '.join(METHOD_HEADS)}")
    return method


def check_bool(name: str, value: Any) -> bool:
    if not isinstance(value, bool):
        raise TypeError(f"{name} must be True or False, got {value!r}")
    return value


def check_output_stride(value: Any) -> int:
    if isinstance(value, bool) or value not in OUTPUT_STRIDES:
        raise ValueError(f"output_stride must be one of {OUTPUT_STRIDES}, got {value!r}")
    return int(value)


class Builder:
    """What every builder offers; see the module docstring."""

    task: str
    options: tuple[str, ...] = ()

    def build(
        self, architecture: Mapping[str, Any], metadata: ModelMetadata, name: str, published: bool = False, **options
    ) -> keras.Model:
        """The model; ``published``: as GluonCV published it (its auxiliary head included), ignoring the options."""
        raise NotImplementedError


class SemanticBuilder(Builder):
    """:class:`SemanticSegmenter`: ``{"method", "backbone", "aux", "output_stride"}``.

    ``aux`` says whether the published model has the auxiliary head; built
    models have it only when asked (``aux=True``, for training).
    """

    task = SEMANTIC
    options = ("aux", "output_stride", "sync_bn")

    def build(self, architecture, metadata, name, published=False, aux=None, output_stride=None, sync_bn=None):
        method = check_method(architecture["method"])
        if published:
            aux = architecture.get("aux", False)
        aux = False if aux is None else check_bool("aux", aux)
        stride = architecture.get("output_stride", 8) if output_stride is None else check_output_stride(output_stride)
        sync_bn = False if sync_bn is None else check_bool("sync_bn", sync_bn)
        if aux and not architecture.get("aux", True):
            raise ValueError(f"{name} has no auxiliary head (aux must be False)")
        return SemanticSegmenter(
            build_backbone(canonical_backbone(architecture["backbone"]), stride, sync_bn),
            head=METHOD_HEADS[method],
            num_classes=metadata.num_classes,
            aux=aux,
            sync_bn=sync_bn,
            metadata=metadata,
            name=name,
        )


class MaskRCNNBuilder(Builder):
    """:class:`MaskRCNN`: the :class:`MaskRCNNConfig` fields that differ from its defaults."""

    task = INSTANCE
    options = ()

    def build(self, architecture, metadata, name, published=False):
        config = MaskRCNNConfig(**{**architecture, "num_classes": metadata.num_classes})
        return MaskRCNN(config, metadata=metadata, name=name)


class ResNetBuilder(Builder):
    """:class:`ResNetV1Backbone` (an ImageNet classifier's features): ``{"depth", "variant"}``."""

    task = BACKBONE
    options = ("output_stride", "sync_bn")

    def build(self, architecture, metadata, name, published=False, output_stride=None, sync_bn=None):
        stride = 32 if output_stride is None else check_output_stride(output_stride)
        sync_bn = False if sync_bn is None else check_bool("sync_bn", sync_bn)
        return ResNetV1Backbone(
            architecture["depth"], architecture["variant"], output_stride=stride, sync_bn=sync_bn,
            metadata=dataclasses.replace(metadata, classes=()), name=name,
        )


BUILDERS: dict[str, Builder] = {
    "semantic_segmenter": SemanticBuilder(),
    "mask_rcnn": MaskRCNNBuilder(),
    "resnet_v1": ResNetBuilder(),
}
