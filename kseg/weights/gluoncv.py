"""GluonCV -> kseg name maps of the semantic models and the ImageNet backbones.

Every kseg layer that holds weights has exactly one GluonCV parameter prefix
(``layer3.5.conv2``, ``head.aspp.concurent.4.gap.1``...);
:func:`kseg.weights.loading.load_mapped_arrays` checks the whole file against
the map before touching the model. The maps read the model's own attributes
(``head``, ``aux``, the backbone's registered class and ``variant``); nothing
here imports ``kseg.models``.
"""

import re

import keras

from kseg.weights.loading import load_mapped_arrays, mapped_arrays, read_arrays
from kseg.weights.transfer import weighted_layers

# (pattern on the kseg layer name, GluonCV prefix) tried in order.
_RESNET_SEG_RULES = (
    (r"stem_conv1", r"conv1.0"),
    (r"stem_bn1", r"conv1.1"),
    (r"stem_conv2", r"conv1.3"),
    (r"stem_bn2", r"conv1.4"),
    (r"stem_conv3", r"conv1.6"),
    (r"stem_bn3", r"bn1"),
    (r"layer(\d)_block(\d+)_(conv|bn)(\d)", r"layer\1.\2.\3\4"),
)
_RESNET_V1B_STEM_RULES = (
    (r"stem_conv1", r"conv1"),
    (r"stem_bn1", r"bn1"),
)
_DOWNSAMPLE_RULES = (
    (r"layer(\d)_block0_downsample_conv", r"layer\1.0.downsample.0"),
    (r"layer(\d)_block0_downsample_bn", r"layer\1.0.downsample.1"),
)
_DOWNSAMPLE_AVG_RULES = (
    (r"layer(\d)_block0_downsample_conv", r"layer\1.0.downsample.1"),
    (r"layer(\d)_block0_downsample_bn", r"layer\1.0.downsample.2"),
)
_WRN38_RULES = (
    (r"mod1_conv", r"mod1.0"),
    (r"(mod\d)_block(\d+)_bn1", r"\1.\2.bn1.0"),
    (r"(mod\d)_block(\d+)_proj_conv", r"\1.\2.proj_conv"),
    (r"(mod\d)_block(\d+)_conv1", r"\1.\2.convs.0"),
    (r"(mod\d)_block(\d+)_bn2", r"\1.\2.convs.1.0"),
    (r"(mod\d)_block(\d+)_conv2", r"\1.\2.convs.2"),
    (r"(mod\d)_block(\d+)_bn3", r"\1.\2.convs.3.0"),
    # mod6/mod7 have a dropout at index 4, so the last conv is at 5
    (r"(mod\d)_block(\d+)_conv3", r"\1.\2.convs.5"),
)
_FCN_BLOCK_RULES = (
    (r"head_conv", r"head.block.0"),
    (r"head_bn", r"head.block.1"),
    (r"head_classifier", r"head.block.4"),
    (r"aux_conv", r"auxlayer.block.0"),
    (r"aux_bn", r"auxlayer.block.1"),
    (r"aux_classifier", r"auxlayer.block.4"),
)
_HEAD_RULES = {
    "fcn": _FCN_BLOCK_RULES,
    "psp": (
        (r"psp_branch(\d)_conv", r"head.psp.conv\1.0"),
        (r"psp_branch(\d)_bn", r"head.psp.conv\1.1"),
        *_FCN_BLOCK_RULES,
    ),
    "deeplabv3": (
        (r"aspp_branch(\d)_conv", r"head.aspp.concurent.\1.0"),
        (r"aspp_branch(\d)_bn", r"head.aspp.concurent.\1.1"),
        (r"aspp_pool_conv", r"head.aspp.concurent.4.gap.1"),
        (r"aspp_pool_bn", r"head.aspp.concurent.4.gap.2"),
        (r"aspp_project_conv", r"head.aspp.project.0"),
        (r"aspp_project_bn", r"head.aspp.project.1"),
        *_FCN_BLOCK_RULES,
    ),
    "deeplabv3plus": (
        (r"aspp_branch(\d)_conv", r"head.aspp.b\1.0"),
        (r"aspp_branch(\d)_bn", r"head.aspp.b\1.1"),
        (r"aspp_pool_conv", r"head.aspp.b4.gap.1"),
        (r"aspp_pool_bn", r"head.aspp.b4.gap.2"),
        (r"aspp_project_conv", r"head.aspp.project.0"),
        (r"decoder_low_level_conv", r"head.c1_block.0"),
        (r"decoder_block1_conv", r"head.block.0"),
        (r"decoder_block1_bn", r"head.block.1"),
        (r"decoder_block2_conv", r"head.block.3"),
        (r"decoder_block2_bn", r"head.block.4"),
        (r"decoder_classifier", r"head.block.6"),
    ),
}

CLASSIFIER_LAYERS = ("head_classifier", "aux_classifier", "decoder_classifier")


def _translate(name, rules):
    for pattern, replacement in rules:
        if re.fullmatch(pattern, name):
            return re.sub(pattern, replacement, name)
    return None


def _resnet_rules(backbone):
    deep_stem = backbone.variant != "v1b"
    avg_down = backbone.variant == "v1d"
    stem = _RESNET_SEG_RULES[:6] if deep_stem else _RESNET_V1B_STEM_RULES
    down = _DOWNSAMPLE_AVG_RULES if avg_down else _DOWNSAMPLE_RULES
    return (*stem, *down, _RESNET_SEG_RULES[6])


# By the backbone's registered Keras name, so that the map needs no import of the model classes.
_BACKBONE_RULES = {
    "kseg>ResNetV1Backbone": _resnet_rules,
    "kseg>WideResNet38Backbone": lambda backbone: _WRN38_RULES,
}


def _backbone_rules(backbone):
    kind = keras.saving.get_registered_name(type(backbone))
    if kind not in _BACKBONE_RULES:
        raise TypeError(f"No GluonCV name map for backbone {type(backbone).__name__}")
    return _BACKBONE_RULES[kind](backbone)


def _backbone_map(backbone, prefix=""):
    """``{kseg layer path: GluonCV prefix}`` of a backbone's layers, paths under ``prefix``."""
    rules = _backbone_rules(backbone)
    mapping = {}
    for path, _ in weighted_layers(backbone, prefix):
        gluon = _translate(path.rsplit("/", 1)[-1], rules)
        if gluon is None:
            raise ValueError(f"No GluonCV name for kseg layer {path!r}")
        mapping[path] = gluon
    return mapping


def gluoncv_layer_map(model):
    """``{kseg layer path: GluonCV prefix}`` for a :class:`kseg.models.SemanticSegmenter`."""
    backbone_prefix = f"{model.backbone.name}/"
    mapping = _backbone_map(model.backbone, backbone_prefix)
    head_rules = _HEAD_RULES[model.head]
    for path, _ in weighted_layers(model):
        if path.startswith(backbone_prefix):
            continue
        gluon = _translate(path.rsplit("/", 1)[-1], head_rules)
        if gluon is None:
            raise ValueError(f"No GluonCV name for kseg layer {path!r}")
        mapping[path] = gluon
    return mapping


def _dotted(mapping):
    return {path: f"{prefix}." for path, prefix in mapping.items()}


_HINT = " (is this file for another model or number of classes?)"


def load_gluoncv_params(model, source, skip_classifier=False):
    """Load a GluonCV semantic segmentation ``.params`` file (path, bytes or a dict) into ``model``.

    Args:
        model: a :class:`kseg.models.SemanticSegmenter`.
        source: the ``.params`` path or its bytes.
        skip_classifier: leave the class layers as they are (fine-tuning on
            other classes); their arrays are then expected and unused.

    GluonCV's zoo files carry the auxiliary head; a model built without it
    leaves ``auxlayer.*`` unused on purpose. Anything else missing, unused or
    mis-shaped raises ``ValueError`` naming every offending array. Returns the
    layers left as they were (the class layers, with ``skip_classifier``).
    """
    mapping = gluoncv_layer_map(model)
    skip = {path for path in mapping if skip_classifier and path.rsplit("/", 1)[-1] in CLASSIFIER_LAYERS}
    return load_mapped_arrays(
        model,
        read_arrays(source),
        _dotted(mapping),
        skip_layers=skip,
        ignored=lambda key: key.startswith("auxlayer.") and not model.aux,
        hint=_HINT,
    )


def load_gluoncv_backbone_params(backbone, source):
    """Load a GluonCV ImageNet classifier (``resnet101_v1s-*.params``) into a ResNet backbone.

    Its arrays carry the segmentation backbones' names; the ImageNet ``fc``
    layer is left out. ``backbone`` is a backbone model (a
    :class:`~kseg.models.ResNetV1Backbone`, alone or inside a task model:
    ``model.backbone``).
    """
    return load_mapped_arrays(
        backbone,
        read_arrays(source),
        _dotted(_backbone_map(backbone)),
        ignored=lambda key: key.startswith("fc."),
        hint=" (is this the ImageNet file of this backbone?)",
    )


def gluoncv_arrays(model):
    """The inverse of :func:`load_gluoncv_params`: ``{GluonCV key: MXNet-layout array}``.

    Lets kseg weights go back to GluonCV, and lets tests build GluonCV-style
    files for tiny models.
    """
    return mapped_arrays(model, _dotted(gluoncv_layer_map(model)))


def load_gluoncv_detector_backbone_params(detector, source):
    """Load a GluonCV ImageNet classifier (``resnet50_v1b-*.params``) into a Mask R-CNN's ResNet.

    GluonCV's ``train_mask_rcnn.py`` starts from these files. C4 models hold stages 1-3 in their feature
    extractor and stage 4 in ``top_features`` (run on the pooled regions); FPN models all four in the
    extractor. The classifier's ``fc`` is left out; every other array must find its layer.
    """
    backbone = detector.feature_extractor.get_layer("backbone")
    rules = _backbone_rules(backbone)
    mapping = {}
    for path, _ in weighted_layers(detector):
        if "/backbone/" in f"/{path}" or path.startswith("top_features/"):
            gluon = _translate(path.rsplit("/", 1)[-1], rules)
            if gluon is None:
                raise ValueError(f"No GluonCV name for kseg layer {path!r}")
            mapping[path] = f"{gluon}."
    return load_mapped_arrays(
        detector,
        read_arrays(source),
        mapping,
        ignored=lambda key: key.startswith("fc."),
        hint=" (is this the ImageNet file of this model's backbone?)",
    )
