"""GluonCV -> kseg name maps, and loading GluonCV ``.params`` into kseg models.

Every kseg layer that holds weights has exactly one GluonCV parameter prefix
(``layer3.5.conv2``, ``head.aspp.concurent.4.gap.1``...). The loader checks the
whole file before touching the model: a missing, unused or mis-shaped array is
an error that names it, and GluonCV's arrays are each used exactly once.
"""

import re

import keras
import numpy as np

from kseg.weights.mxnet_params import read_params
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


def _backbone_rules(backbone):
    from kseg.models.backbones import ResNetV1Backbone, WideResNet38Backbone

    if isinstance(backbone, ResNetV1Backbone):
        deep_stem = backbone.variant != "v1b"
        avg_down = backbone.variant == "v1d"
        stem = _RESNET_SEG_RULES[:6] if deep_stem else _RESNET_V1B_STEM_RULES
        down = _DOWNSAMPLE_AVG_RULES if avg_down else _DOWNSAMPLE_RULES
        return (*stem, *down, _RESNET_SEG_RULES[6])
    if isinstance(backbone, WideResNet38Backbone):
        return _WRN38_RULES
    raise TypeError(f"No GluonCV name map for backbone {type(backbone).__name__}")


def gluoncv_layer_map(model):
    """``{kseg layer path: GluonCV prefix}`` for a :class:`SemanticSegmenter`."""
    backbone_rules = _backbone_rules(model.backbone)
    head_rules = _HEAD_RULES[model.head]
    mapping = {}
    for path, _ in weighted_layers(model):
        rules = backbone_rules if path.startswith(f"{model.backbone.name}/") else head_rules
        gluon = _translate(path.rsplit("/", 1)[-1], rules)
        if gluon is None:
            raise ValueError(f"No GluonCV name for kseg layer {path!r}")
        mapping[path] = gluon
    return mapping


def _layer_arrays(layer, gluon_prefix):
    """GluonCV keys of ``layer`` with converters from MXNet layout to Keras'."""
    if isinstance(layer, keras.layers.BatchNormalization):
        leaves = ("gamma", "beta", "running_mean", "running_var")
        return [(f"{gluon_prefix}.{leaf}", np.asarray) for leaf in leaves]
    if isinstance(layer, keras.layers.Conv2D):
        keys = [(f"{gluon_prefix}.weight", lambda w: np.transpose(w, (2, 3, 1, 0)))]
        if layer.use_bias:
            keys.append((f"{gluon_prefix}.bias", np.asarray))
        return keys
    raise TypeError(f"Cannot load GluonCV weights into {type(layer).__name__} {layer.name!r}")


def load_gluoncv_params(model, source, skip_classifier=False, backbone_only=False):
    """Load a GluonCV ``.params`` file (path or bytes) into ``model``.

    Args:
        model: a :class:`kseg.models.SemanticSegmenter`.
        source: the ``.params`` path or its bytes.
        skip_classifier: leave the class layers as they are (fine-tuning on
            other classes); their arrays are then expected and unused.

    GluonCV's zoo files carry the auxiliary head; a model built without it
    leaves ``auxlayer.*`` unused on purpose. Anything else missing, unused or
    mis-shaped raises ``ValueError`` naming every offending array.

    ``backbone_only`` loads a GluonCV ImageNet classifier of the same backbone
    (``resnet101_v1s-*.params``): its arrays carry the seg model's backbone
    names; the ImageNet ``fc`` layer is left out and the heads keep their weights.
    """
    arrays = source if isinstance(source, dict) else read_params(source, strip_prefixes=True)
    if backbone_only:
        arrays = {key: value for key, value in arrays.items() if not key.startswith("fc.")}
    layers = dict(weighted_layers(model))
    assignments, missing, mismatched, used = {}, [], [], set()
    skipped = set()
    for path, gluon_prefix in gluoncv_layer_map(model).items():
        if backbone_only and not path.startswith(f"{model.backbone.name}/"):
            continue
        layer = layers[path]
        keys = _layer_arrays(layer, gluon_prefix)
        if skip_classifier and path.rsplit("/", 1)[-1] in CLASSIFIER_LAYERS:
            skipped.update(key for key, _ in keys)
            continue
        values = []
        for (key, convert), variable in zip(keys, layer.weights, strict=True):
            if key not in arrays:
                missing.append(key)
                continue
            used.add(key)
            value = convert(arrays[key])
            if tuple(value.shape) != tuple(variable.shape):
                mismatched.append(
                    f"{key}: GluonCV shape {arrays[key].shape} -> {value.shape}, "
                    f"kseg {path} expects {tuple(variable.shape)}"
                )
            values.append(value)
        assignments[layer] = values
    unused = [
        key
        for key in arrays
        if key not in used
        and key not in skipped
        and not (key.startswith("auxlayer.") and not getattr(model, "aux", True))
    ]
    problems = []
    if missing:
        problems.append(f"{len(missing)} missing array(s): {_preview(missing)}")
    if mismatched:
        problems.append(f"{len(mismatched)} mis-shaped array(s): {_preview(mismatched)}")
    if unused:
        problems.append(f"{len(unused)} unused array(s): {_preview(unused)}")
    if problems:
        raise ValueError(
            f"GluonCV weights do not match {model.name!r} "
            f"(is this file for another model or number of classes?): " + "; ".join(problems)
        )
    for layer, values in assignments.items():
        layer.set_weights([v.astype(w.dtype, copy=False) for v, w in zip(values, layer.weights, strict=True)])
    return model


def _preview(items, limit=8):
    shown = ", ".join(items[:limit])
    return shown + (f", ... ({len(items) - limit} more)" if len(items) > limit else "")


def gluoncv_arrays(model):
    """The inverse of :func:`load_gluoncv_params`: ``{GluonCV key: MXNet-layout array}``.

    Lets kseg weights go back to GluonCV, and lets tests build GluonCV-style
    files for tiny models.
    """
    layers = dict(weighted_layers(model))
    arrays = {}
    for path, gluon_prefix in gluoncv_layer_map(model).items():
        layer = layers[path]
        for (key, _), variable in zip(_layer_arrays(layer, gluon_prefix), layer.weights, strict=True):
            value = np.asarray(variable.numpy())
            arrays[key] = np.transpose(value, (3, 2, 0, 1)) if value.ndim == 4 else value
    return arrays
