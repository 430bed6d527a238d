"""GluonCV Mask R-CNN ``.params`` <-> kseg, layer by layer (facts §3).

C4 files use attribute paths (``features.4.0.conv1.weight``, ``top_features.0...``);
FPN files keep the flat Gluon names of their SymbolBlock
(``features.resnetv1b_layers1_conv0_weight``, ``features.P2_conv_lat_bias``).
Every array is used exactly once; the saved anchor constants are ignored.
"""

import re

import keras
import numpy as np

from kseg.weights.mxnet_params import read_params
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


def gluoncv_rcnn_layer_map(model):
    """``{kseg layer path: (GluonCV prefix, separator)}`` for a :class:`kseg.models.mask_rcnn.MaskRCNN`."""
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
        mapping[path] = (prefix, "_" if flat else ".")
    return mapping


def _leaves(layer):
    """GluonCV leaf names and converters (MXNet layout -> Keras) of ``layer``'s weights, in order."""
    if isinstance(layer, keras.layers.BatchNormalization):
        return [(leaf, np.asarray) for leaf in ("gamma", "beta", "running_mean", "running_var")]
    if isinstance(layer, keras.layers.Conv2DTranspose):
        kernel = ("weight", lambda w: np.transpose(w, (2, 3, 1, 0)))  # (I, O, kh, kw) -> (kh, kw, O, I)
    elif isinstance(layer, keras.layers.Conv2D):
        kernel = ("weight", lambda w: np.transpose(w, (2, 3, 1, 0)))  # (O, I, kh, kw) -> (kh, kw, I, O)
    elif isinstance(layer, keras.layers.Dense):
        kernel = ("weight", np.transpose)  # (out, in) -> (in, out); flattened inputs are NCHW already
    else:
        raise TypeError(f"Cannot load GluonCV weights into {type(layer).__name__} {layer.name!r}")
    return [kernel] + ([("bias", np.asarray)] if layer.use_bias else [])


def load_gluoncv_rcnn_params(model, source):
    """Load GluonCV's Mask R-CNN ``.params`` (path, bytes or a name -> array dict) into ``model``."""
    arrays = source if isinstance(source, dict) else read_params(source, strip_prefixes=True)
    layers = dict(weighted_layers(model))
    assignments, missing, mismatched, used = {}, [], [], set()
    for path, (prefix, separator) in gluoncv_rcnn_layer_map(model).items():
        layer = layers[path]
        values = []
        for (leaf, convert), variable in zip(_leaves(layer), layer.weights, strict=True):
            key = f"{prefix}{separator}{leaf}"
            if key not in arrays:
                missing.append(key)
                continue
            if key in used:
                raise ValueError(f"GluonCV array {key} would be used twice (kseg {path})")
            used.add(key)
            value = convert(arrays[key])
            if tuple(value.shape) != tuple(variable.shape):
                mismatched.append(f"{key}: {arrays[key].shape} -> {value.shape}, kseg {path} {tuple(variable.shape)}")
            values.append(value)
        assignments[layer] = values
    unused = [key for key in arrays if key not in used and not _IGNORED.match(key)]
    problems = [f"{len(items)} {what}: {', '.join(items[:6])}{' ...' if len(items) > 6 else ''}"
                for what, items in (("missing", missing), ("mis-shaped", mismatched), ("unused", unused)) if items]
    if problems:
        raise ValueError(f"GluonCV weights do not match {model.name!r}: " + "; ".join(problems))
    for layer, values in assignments.items():
        layer.set_weights([v.astype(w.dtype, copy=False) for v, w in zip(values, layer.weights, strict=True)])
    return model
