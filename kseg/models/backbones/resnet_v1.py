"""ResNet v1b/v1c/v1d/v1s as GluonCV builds them, with an ``output_stride``.

- v1b: a 7x7/2 stem; the stride sits on the 3x3 convolution of a bottleneck.
- v1c: a deep stem of three 3x3 convolutions, 32-32-64 wide.
- v1d: v1c plus average-pool shortcuts (pool, then a 1x1 stride-1 projection).
- v1s: a deep stem 64-64-128 wide (the segmentation models' backbone).

Dilation follows GluonCV's ``_make_layer``: a stage that trades its stride for
dilation ``d`` runs its first block at ``d // 2`` (at least 1) and the others at
``d``; a basic block's second convolution uses ``d`` from the first block on.

Features are named by stage, never by stride: ``c1`` is the stem (stride 2,
before the max pool), ``c2``..``c5`` are GluonCV's ``layer1``..``layer4``.
GluonCV's segmentation code calls ``layer3``/``layer4`` "c3"/"c4"; here they
are ``c4``/``c5``.
"""

from __future__ import annotations

from collections.abc import Sequence

import keras

from kseg.models.inputs import ImageModel
from kseg.models.layers import (
    PaddedMaxPooling2D,
    ResidualAdd,
    batch_norm,
    conv2d,
    dtype_policy_scope,
    policy_name,
    relu,
)
from kseg.presets import ModelMetadata

RESNET_DEPTHS = {
    18: ("basic", (2, 2, 2, 2)),
    34: ("basic", (3, 4, 6, 3)),
    50: ("bottleneck", (3, 4, 6, 3)),
    101: ("bottleneck", (3, 4, 23, 3)),
    152: ("bottleneck", (3, 8, 36, 3)),
}

# variant -> (deep_stem, stem_width, avg_down)
RESNET_VARIANTS = {
    "v1b": (False, 32, False),
    "v1c": (True, 32, False),
    "v1d": (True, 32, True),
    "v1s": (True, 64, False),
}

EXPANSION = {"basic": 1, "bottleneck": 4}


def _basic_block(x, planes, strides, dilation, previous_dilation, shortcut, name, sync_bn):
    residual = x
    out = conv2d(x, planes, 3, f"{name}_conv1", strides=strides, dilation=dilation)
    out = relu(batch_norm(out, f"{name}_bn1", sync_bn), f"{name}_relu1")
    out = conv2d(out, planes, 3, f"{name}_conv2", dilation=previous_dilation)
    out = batch_norm(out, f"{name}_bn2", sync_bn)
    if shortcut is not None:
        residual = shortcut(x)
    out = keras.layers.Add(name=f"{name}_add")([out, residual])
    return relu(out, f"{name}_out")


def _bottleneck_block(x, planes, strides, dilation, previous_dilation, shortcut, name, sync_bn):
    del previous_dilation  # only the basic block uses it
    residual = x
    out = conv2d(x, planes, 1, f"{name}_conv1")
    out = relu(batch_norm(out, f"{name}_bn1", sync_bn), f"{name}_relu1")
    out = conv2d(out, planes, 3, f"{name}_conv2", strides=strides, dilation=dilation)
    out = relu(batch_norm(out, f"{name}_bn2", sync_bn), f"{name}_relu2")
    out = conv2d(out, planes * 4, 1, f"{name}_conv3")
    out = batch_norm(out, f"{name}_bn3", sync_bn)
    if shortcut is not None:
        residual = shortcut(x)
    out = ResidualAdd(name=f"{name}_add")([out, residual])
    return relu(out, f"{name}_out")


def _shortcut(filters, strides, avg_down, name, sync_bn):
    def apply(x):
        if avg_down:
            if strides > 1:
                # Ceil mode without padding, averaging only real pixels: TF's
                # "same" pools exactly that for a window equal to its stride.
                x = keras.layers.AveragePooling2D(strides, strides, padding="same", name=f"{name}_pool")(x)
            x = conv2d(x, filters, 1, f"{name}_conv")
        else:
            x = conv2d(x, filters, 1, f"{name}_conv", strides=strides)
        return batch_norm(x, f"{name}_bn", sync_bn)

    return apply


def resnet_stage(x, stage, planes, blocks, strides, dilation, block, inplanes, avg_down, sync_bn=False):
    """GluonCV's ``layer{stage}``: ``blocks`` blocks, the first one strided (or at ``dilation // 2``)."""
    block_fn = _basic_block if block == "basic" else _bottleneck_block
    expansion = EXPANSION[block]
    prefix = f"layer{stage}"
    shortcut = None
    if strides != 1 or inplanes != planes * expansion:
        shortcut = _shortcut(planes * expansion, strides, avg_down, f"{prefix}_block0_downsample", sync_bn)
    x = block_fn(x, planes, strides, max(1, dilation // 2), dilation, shortcut, f"{prefix}_block0", sync_bn)
    for index in range(1, blocks):
        x = block_fn(x, planes, 1, dilation, dilation, None, f"{prefix}_block{index}", sync_bn)
    return x


@keras.saving.register_keras_serializable(package="kseg")
class ResNetV1Backbone(ImageModel, keras.Model):
    """A ResNet v1b/c/d/s feature extractor returning ``{"c1": ..., "c5": ...}``.

    Args:
        depth: 18, 34, 50, 101 or 152; or None with ``block``/``stage_depths``.
        variant: "v1b", "v1c", "v1d" or "v1s".
        output_stride: 8, 16 or 32. GluonCV's segmentation models use 8.
        base_width: width of the first stage (64 in every published model;
            smaller values give tiny test models).
        block, stage_depths: explicit block type and depths (override ``depth``).
        sync_bn: use ``BatchNormalization(synchronized=True)``.
        num_stages: build ``layer1``..``layer{num_stages}`` only (Mask R-CNN's
            C4 models run ``layer4`` on the pooled regions instead).
        metadata: the :class:`kseg.presets.ModelMetadata` of a backbone built
            from a preset (``kseg.models.get("resnet101_v1s")``); None inside
            task models.

    Example:
        >>> import numpy as np
        >>> backbone = ResNetV1Backbone(depth=50, variant="v1s", output_stride=8)
        >>> features = backbone(np.zeros((1, 64, 64, 3), "float32"))
        >>> features["c5"].shape  # stride 8, GluonCV's layer4
        TensorShape([1, 8, 8, 2048])
    """

    def __init__(
        self,
        depth: int | None = 50,
        variant: str = "v1b",
        output_stride: int = 32,
        base_width: int = 64,
        block: str | None = None,
        stage_depths: Sequence[int] | None = None,
        sync_bn: bool = False,
        num_stages: int = 4,
        metadata: ModelMetadata | None = None,
        **kwargs,
    ):
        if variant not in RESNET_VARIANTS:
            raise ValueError(f"Unknown ResNet variant {variant!r}; expected one of {sorted(RESNET_VARIANTS)}")
        if output_stride not in (8, 16, 32):
            raise ValueError(f"output_stride must be 8, 16 or 32, got {output_stride}")
        if block is None or stage_depths is None:
            if depth not in RESNET_DEPTHS:
                raise ValueError(f"depth must be one of {sorted(RESNET_DEPTHS)}, got {depth}")
            block, stage_depths = RESNET_DEPTHS[depth]
        if block not in EXPANSION:
            raise ValueError(f"block must be 'basic' or 'bottleneck', got {block!r}")
        stem_width = RESNET_VARIANTS[variant][1]
        if base_width != 64:
            stem_width = max(1, stem_width * base_width // 64)

        dtype = kwargs.pop("dtype", None)
        with dtype_policy_scope(dtype):
            inputs, features, stem_channels = self._build(
                depth, variant, output_stride, base_width, block, stage_depths, sync_bn, num_stages, stem_width
            )
        super().__init__(inputs=inputs, outputs=features, **kwargs)
        if dtype is not None:  # a functional model takes no dtype argument: its layers were built under it
            self.dtype_policy = dtype
        self.num_stages = num_stages
        self.depth = depth
        self.variant = variant
        self.output_stride = output_stride
        self.base_width = base_width
        self.block = block
        self.stage_depths = tuple(stage_depths)
        self.sync_bn = sync_bn
        self.metadata = metadata
        expansion = EXPANSION[block]
        self.feature_channels = {"c1": stem_channels}
        for i in range(num_stages):
            self.feature_channels[f"c{i + 2}"] = base_width * 2**i * expansion

    @staticmethod
    def _build(depth, variant, output_stride, base_width, block, stage_depths, sync_bn, num_stages, stem_width):
        deep_stem, _, avg_down = RESNET_VARIANTS[variant]
        inputs = keras.Input(shape=(None, None, 3), name="images")
        if deep_stem:
            x = conv2d(inputs, stem_width, 3, "stem_conv1", strides=2)
            x = relu(batch_norm(x, "stem_bn1", sync_bn), "stem_relu1")
            x = conv2d(x, stem_width, 3, "stem_conv2")
            x = relu(batch_norm(x, "stem_bn2", sync_bn), "stem_relu2")
            x = conv2d(x, stem_width * 2, 3, "stem_conv3")
            x = relu(batch_norm(x, "stem_bn3", sync_bn), "stem_relu3")
            inplanes = stem_width * 2
        else:
            x = conv2d(inputs, base_width, 7, "stem_conv1", strides=2)
            x = relu(batch_norm(x, "stem_bn1", sync_bn), "stem_relu1")
            inplanes = base_width
        stem_channels = inplanes
        features = {"c1": x}
        x = PaddedMaxPooling2D(3, 2, 1, name="stem_pool")(x)

        expansion = EXPANSION[block]
        current_stride, dilation = 4, 1
        for stage, blocks in enumerate(stage_depths[:num_stages], start=1):
            planes = base_width * 2 ** (stage - 1)
            strides = 1 if stage == 1 else 2
            if strides > 1 and current_stride >= output_stride:
                strides, dilation = 1, dilation * 2
            current_stride *= strides
            x = resnet_stage(x, stage, planes, blocks, strides, dilation, block, inplanes, avg_down, sync_bn)
            inplanes = planes * expansion
            features[f"c{stage + 1}"] = x
        return inputs, features, stem_channels

    def get_config(self):
        return {
            "name": self.name,
            "trainable": self.trainable,
            "dtype": policy_name(self),
            "depth": self.depth,
            "variant": self.variant,
            "output_stride": self.output_stride,
            "base_width": self.base_width,
            "block": self.block,
            "stage_depths": list(self.stage_depths),
            "sync_bn": self.sync_bn,
            "num_stages": self.num_stages,
            "metadata": None if self.metadata is None else self.metadata.to_config(),
        }

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        if config.get("metadata") is not None:
            config["metadata"] = ModelMetadata.from_config(config["metadata"])
        return cls(**config)


def resnet_v1(architecture, **kwargs):
    """Build a backbone by GluonCV name, e.g. ``resnet101_v1s``."""
    try:
        depth_text, variant = architecture.removeprefix("resnet").split("_")
        depth = int(depth_text)
    except ValueError:
        raise ValueError(f"Not a ResNet v1 name: {architecture!r} (expected e.g. 'resnet101_v1s')") from None
    return ResNetV1Backbone(depth=depth, variant=variant, **kwargs)
