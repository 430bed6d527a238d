"""The trainable parts of GluonCV's Mask R-CNN as Keras models (NHWC), named for the GluonCV name map.

- ``features``: C4 models, ResNet stem + layer1-3 (stride 16, ``{"c4"}``);
  FPN models, layer1-4 and the pyramid (``{"p2", ..., "p6"}``).
- ``top_features`` (C4 only): layer4, run on the pooled regions (14 -> 7).
- ``rpn_head``: 3x3 convolution (1024, ReLU), then objectness logits (A) and
  box deltas (4A) per location; one head shared by every FPN level.
- ``box_head``: pooled regions -> class logits (81) and class-wise deltas (320).
- ``mask_head``: pooled regions -> mask logits ``[N, M, M, 80]``.
"""

import keras
from keras import ops

from kseg.models.backbones.resnet_v1 import EXPANSION, RESNET_DEPTHS, RESNET_VARIANTS, ResNetV1Backbone, resnet_stage
from kseg.models.layers import Conv2DTranspose, conv2d

NUM_ANCHORS_C4 = 15  # 5 sizes x 3 ratios
NUM_ANCHORS_FPN = 3  # 1 size per level x 3 ratios
FPN_CHANNELS = 256
MASK_CHANNELS = 256


def _conv(x, filters, kernel, name, strides=1, activation=None):
    """A biased convolution with MXNet's symmetric padding (the heads and the pyramid have biases)."""
    x = conv2d(x, filters, kernel, name, strides=strides, use_bias=True)
    return keras.layers.ReLU(name=f"{name}_relu")(x) if activation == "relu" else x


def build_features(config):
    """The feature extractor: ``images -> {"c4"}`` (C4) or ``{"p2".."p6"}`` (FPN)."""
    num_stages = 4 if config.fpn else 3
    backbone = ResNetV1Backbone(
        config.depth, config.variant, output_stride=32, num_stages=num_stages, name="backbone"
    )
    images = keras.Input((None, None, 3), name="images")
    features = backbone(images)
    if not config.fpn:
        return keras.Model(images, {"c4": features["c4"]}, name="features")
    return keras.Model(images, fpn(features), name="features")


def fpn(features):
    """GluonCV's FPNFeatureExpander: 1x1 laterals with bias; the running sum is upsampled x2 (nearest),
    cropped to the lateral and added; a 3x3 output convolution per level; P6 is a 3x3 stride-2
    convolution of the P5 lateral."""
    outputs = {}
    running = None
    for level in (5, 4, 3, 2):
        lateral = _conv(features[f"c{level}"], FPN_CHANNELS, 1, f"fpn_p{level}_lateral")
        if running is None:
            running = lateral
            outputs["p6"] = _conv(lateral, FPN_CHANNELS, 3, "fpn_p6_output", strides=2)
        else:
            upsampled = keras.layers.UpSampling2D(2, interpolation="nearest", name=f"fpn_p{level}_upsample")(running)
            cropped = CropLike(name=f"fpn_p{level}_crop")([upsampled, lateral])
            running = keras.layers.Add(name=f"fpn_p{level}_sum")([lateral, cropped])
        outputs[f"p{level}"] = _conv(running, FPN_CHANNELS, 3, f"fpn_p{level}_output")
    return {name: outputs[name] for name in ("p2", "p3", "p4", "p5", "p6")}


@keras.saving.register_keras_serializable(package="kseg")
class CropLike(keras.layers.Layer):
    """``x[:, :H, :W]`` with ``(H, W)`` of a reference tensor (MXNet's ``slice_like`` on axes 2, 3)."""

    def call(self, inputs):
        x, reference = inputs
        shape = ops.shape(reference)
        return x[:, : shape[1], : shape[2], :]

    def compute_output_shape(self, input_shapes):
        x, reference = input_shapes
        return (x[0], reference[1], reference[2], x[3])


def _stage4_inputs(config):
    """(block type, layer4's depth, layer3's output channels)."""
    block, depths = RESNET_DEPTHS[config.depth]
    return block, depths[3], 256 * EXPANSION[block]


def build_top_features(config):
    """C4 only: GluonCV's ``top_features`` (ResNet layer4, stride 2) on the pooled regions."""
    block, blocks, inplanes = _stage4_inputs(config)
    avg_down = RESNET_VARIANTS[config.variant][2]
    inputs = keras.Input((config.roi_size, config.roi_size, inplanes), name="pooled")
    x = resnet_stage(inputs, 4, 512, blocks, 2, 1, block, inplanes, avg_down)
    return keras.Model(inputs, x, name="top_features")


def build_rpn_head(config):
    """Objectness logits ``[B, h, w, A]`` and deltas ``[B, h, w, 4A]`` of one feature map."""
    if config.fpn:
        channels, anchors = FPN_CHANNELS, NUM_ANCHORS_FPN
    else:
        channels, anchors = _stage4_inputs(config)[2], NUM_ANCHORS_C4
    inputs = keras.Input((None, None, channels), name="feature")
    x = _conv(inputs, config.rpn_channels, 3, "rpn_conv", activation="relu")
    scores = _conv(x, anchors, 1, "rpn_score")
    deltas = _conv(x, 4 * anchors, 1, "rpn_loc")
    return keras.Model(inputs, {"scores": scores, "deltas": deltas}, name="rpn_head")


def _head_channels(config):
    if config.fpn:
        return FPN_CHANNELS
    block = RESNET_DEPTHS[config.depth][0]
    return 512 * EXPANSION[block]  # layer4's output


def build_box_head(config):
    """Pooled regions (C4: after layer4, 7x7) -> ``{"class_logits": [N, 81], "box_deltas": [N, 320]}``."""
    size = config.roi_size // 2 if not config.fpn else config.roi_size
    inputs = keras.Input((size, size, _head_channels(config)), name="regions")
    if config.fpn:
        x = inputs
        if config.box_pool:
            # MXNet's AvgPool2D(3, 2, padding=1) counts the zero padding.
            x = keras.layers.ZeroPadding2D(1, name="box_pool_pad")(x)
            x = keras.layers.AveragePooling2D(3, 2, name="box_pool")(x)
        # MXNet flattens NCHW: channels first, so the FC weights load as they are.
        x = keras.layers.Permute((3, 1, 2), name="box_to_nchw")(x)
        x = keras.layers.Flatten(name="box_flatten")(x)
        x = keras.layers.Dense(1024, activation="relu", name="box_fc1")(x)
        x = keras.layers.Dense(1024, activation="relu", name="box_fc2")(x)
    else:
        x = keras.layers.GlobalAveragePooling2D(name="box_pool")(inputs)
    class_logits = keras.layers.Dense(config.num_classes + 1, name="class_predictor", dtype="float32")(x)
    box_deltas = keras.layers.Dense(config.num_classes * 4, name="box_predictor", dtype="float32")(x)
    return keras.Model(inputs, {"class_logits": class_logits, "box_deltas": box_deltas}, name="box_head")


def build_mask_head(config):
    """Pooled regions (C4: after layer4) -> mask logits ``[N, M, M, classes]``."""
    size = config.roi_size // 2 if not config.fpn else config.roi_size
    inputs = keras.Input((size, size, _head_channels(config)), name="regions")
    x = inputs
    for i in range(config.mask_convs):
        x = _conv(x, MASK_CHANNELS, 3, f"mask_conv{i + 1}", activation="relu")
    x = Conv2DTranspose(MASK_CHANNELS, 2, strides=2, name="mask_deconv")(x)
    x = keras.layers.ReLU(name="mask_deconv_relu")(x)
    logits = keras.layers.Conv2D(config.num_classes, 1, name="mask_logits", dtype="float32")(x)
    return keras.Model(inputs, logits, name="mask_head")
