"""GluonCV Mask R-CNN ``.params`` <-> kseg, layer by layer.

C4 files use attribute paths (``features.4.0.conv1.weight``, ``top_features.0...``,
``gluoncv/model_zoo/rcnn/mask_rcnn/mask_rcnn.py``); FPN files keep the flat
Gluon names of their SymbolBlock (``features.resnetv1b_layers1_conv0_weight``,
``features.P2_conv_lat_bias``, ``gluoncv/model_zoo/rcnn/rcnn.py``'s
``FPNFeatureExpander``). The loading itself is
:func:`kseg.weights.loading.load_mapped_arrays`: every array used exactly once;
the saved anchor constants are ignored.
"""

import re

from kseg.weights.loading import load_mapped_arrays, mapped_arrays, read_arrays
from kseg.weights.transfer import weighted_layers

_IGNORED = re.compile(r"rpn\.anchor_generator\.")
_CONVS_PER_BLOCK = {18: 2, 34: 2, 50: 3, 101: 3, 152: 3}


def _c4_backbone(name, config):
    """kseg backbone layer name -> GluonCV attribute prefix (C4)."""
    deep = config.variant != "v1b"
    stem = {"stem_conv1": "features.0", "stem_bn1": "features.1"}
    if deep:
        stem = {"stem_conv1": "features.0.0", "stem_bn1": "features.0.1", "stem_conv2": "features.0.3",
                "stem_bn2": "features.0.4", "stem_conv3": "features.0.6", "stem_bn3": "features.1"}
    if name in stem:
        return stem[name]
    match = re.fullmatch(r"layer(\d)_block(\d+)_(conv|bn)(\d)", name)
    down = re.fullmatch(r"layer(\d)_block0_downsample_(conv|bn)", name)
    stage = int((match or down).group(1))
    base = f"features.{3 + stage}" if stage <= 3 else "top_features.0"
    if match:
        return f"{base}.{match.group(2)}.{match.group(3)}{match.group(4)}"
    index = {"conv": 0, "bn": 1}[down.group(2)] + (1 if config.variant == "v1d" else 0)
    return f"{base}.0.downsample.{index}"


def _fpn_backbone(name, config):
    """kseg backbone layer name -> GluonCV flat name prefix (FPN SymbolBlock)."""
    prefix = f"features.resnet{config.variant}_"
    stem = re.fullmatch(r"stem_(conv|bn)(\d)", name)
    if stem:
        kind = "conv" if stem.group(1) == "conv" else "batchnorm"
        return f"{prefix}{kind}{int(stem.group(2)) - 1}"
    down = re.fullmatch(r"layer(\d)_block0_downsample_(conv|bn)", name)
    if down:
        return f"{prefix}down{down.group(1)}_{'conv' if down.group(2) == 'conv' else 'batchnorm'}0"
    match = re.fullmatch(r"layer(\d)_block(\d+)_(conv|bn)(\d)", name)
    index = _CONVS_PER_BLOCK[config.depth] * int(match.group(2)) + int(match.group(4)) - 1
    return f"{prefix}layers{match.group(1)}_{'conv' if match.group(3) == 'conv' else 'batchnorm'}{index}"


def _head(name, config):
    """kseg head layer name -> GluonCV prefix."""
    fixed = {"class_predictor": "class_predictor", "box_predictor": "box_predictor", "mask_logits": "mask.mask"}
    if name in fixed:
        return fixed[name]
    rpn = re.fullmatch(r"rpn_(conv|score|loc)", name)
    if rpn:
        leaf = {"conv": "conv1.0", "score": "score", "loc": "loc"}[rpn.group(1)]
        return f"rpn.rpn_head.{leaf}" if config.fpn else f"rpn.{leaf}"
    fpn = re.fullmatch(r"fpn_p(\d)_(lateral|output)", name)
    if fpn:
        return f"features.P{fpn.group(1)}_{'conv_lat' if fpn.group(2) == 'lateral' else 'conv1'}"
    box = re.fullmatch(r"box_fc(\d)", name)
    if box:
        return f"box_features.{2 * (int(box.group(1)) - 1) + (1 if config.box_pool else 0)}"
    conv = re.fullmatch(r"mask_conv(\d)", name)
    if conv:
        return f"mask.deconv.{2 * (int(conv.group(1)) - 1)}"
    if name == "mask_deconv":
        return f"mask.deconv.{2 * config.mask_convs}" if config.mask_convs else "mask.deconv"
    return None


CLASS_LAYERS = ("class_predictor", "box_predictor", "mask_logits")


def gluoncv_rcnn_layer_map(model):
    """``{kseg layer path: GluonCV key prefix}`` (separator included) for a :class:`kseg.models.mask_rcnn.MaskRCNN`."""
    config = model.config
    mapping = {}
    for path, _ in weighted_layers(model):
        name = path.rsplit("/", 1)[-1]
        in_backbone = "/backbone/" in f"/{path}" or path.startswith("top_features/")
        if in_backbone:
            prefix = _fpn_backbone(name, config) if config.fpn else _c4_backbone(name, config)
        else:
            prefix = _head(name, config)
        if prefix is None:
            raise ValueError(f"No GluonCV name for kseg layer {path!r}")
        flat = config.fpn and prefix.startswith("features.")
        mapping[path] = prefix + ("_" if flat else ".")
    return mapping


def load_gluoncv_rcnn_params(model, source, skip_class_layers=False):
    """Load GluonCV's Mask R-CNN ``.params`` (path, bytes or a name -> array dict) into ``model``.

    ``skip_class_layers`` leaves the class-specific layers (class and box
    predictors, mask predictor) as they are, for a model of other classes;
    returns the layers so left.
    """
    mapping = gluoncv_rcnn_layer_map(model)
    skip = {path for path in mapping if skip_class_layers and path.rsplit("/", 1)[-1] in CLASS_LAYERS}
    return load_mapped_arrays(model, read_arrays(source), mapping, skip_layers=skip, ignored=_IGNORED.match)


def gluoncv_rcnn_arrays(model):
    """The inverse of :func:`load_gluoncv_rcnn_params`: ``{GluonCV key: MXNet-layout array}``."""
    return mapped_arrays(model, gluoncv_rcnn_layer_map(model))
