"""The semantic segmentation task model: a backbone, a head, an optional aux head."""

from __future__ import annotations

import keras

from kseg.models.heads import HEADS
from kseg.models.heads.fcn import fcn_block
from kseg.models.inputs import ImageModel
from kseg.models.layers import ResizeLike, dtype_policy_scope, policy_name
from kseg.presets import SEMANTIC, CropResize, ModelMetadata, Preprocessing, numbered_classes


def default_semantic_metadata(num_classes: int) -> ModelMetadata:
    """What a semantic model built outside the presets says of itself: numbered classes, GluonCV's 520/480."""
    return ModelMetadata(SEMANTIC, numbered_classes(num_classes), Preprocessing(resize=CropResize()))


@keras.saving.register_keras_serializable(package="kseg")
class SemanticSegmenter(ImageModel, keras.Model):
    """FCN, PSPNet, DeepLabV3 or the VPLR DeepLabV3+ on a backbone (GluonCV's ``gluoncv/model_zoo/segbase.py``).

    Takes NHWC float images normalised with the ImageNet mean and std, of any
    height and width, and returns logits at the input size: a tensor, or with
    ``aux=True`` a dict ``{"logits", "aux_logits"}`` (the auxiliary FCN head on
    ``c4``, GluonCV's "c3", used for training).

    Args:
        backbone: a backbone model returning ``{"c1": ..., "c5": ...}``.
        head: "fcn", "psp", "deeplabv3" or "deeplabv3plus".
        num_classes: number of classes.
        aux: add the auxiliary head.
        head_channels: width of the head (None: GluonCV's, 512 for FCN/PSP, 256 for DeepLab).
        sync_bn: synchronized BatchNormalization in the heads.
        metadata: the :class:`kseg.presets.ModelMetadata` the model carries
            (class names, preprocessing); None: numbered classes and GluonCV's
            default sizes.

    Example:
        >>> import numpy as np
        >>> from kseg.models import ResNetV1Backbone, SemanticSegmenter
        >>> backbone = ResNetV1Backbone(18, "v1b", output_stride=8, base_width=8, name="backbone")
        >>> model = SemanticSegmenter(backbone, head="psp", num_classes=5)
        >>> model(np.zeros((1, 64, 80, 3), "float32")).shape
        TensorShape([1, 64, 80, 5])
    """

    def __init__(
        self,
        backbone: keras.Model,
        head: str = "fcn",
        num_classes: int = 21,
        aux: bool = False,
        head_channels: int | None = None,
        sync_bn: bool = False,
        metadata: ModelMetadata | None = None,
        **kwargs,
    ):
        if head not in HEADS:
            raise ValueError(f"Unknown head {head!r}; expected one of {sorted(HEADS)}")
        if head == "deeplabv3plus" and aux:
            raise ValueError("The VPLR DeepLabV3+ has no auxiliary head (aux must be False)")
        if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 1:
            raise ValueError(f"num_classes must be a positive integer, got {num_classes!r}")
        metadata = metadata or default_semantic_metadata(num_classes)
        if metadata.num_classes != num_classes:
            raise ValueError(f"metadata names {metadata.num_classes} classes, but num_classes is {num_classes}")
        dtype = kwargs.pop("dtype", None)
        with dtype_policy_scope(dtype):
            inputs = keras.Input(shape=(None, None, 3), name="images")
            features = backbone(inputs)
            logits = HEADS[head](features, num_classes, head_channels, sync_bn)
            # Logits leave in float32 under mixed precision.
            outputs = ResizeLike(name="logits", dtype="float32")([logits, inputs])
            if aux:
                aux_logits = fcn_block(features["c4"], num_classes, "aux", None, sync_bn)
                outputs = {
                    "logits": outputs,
                    "aux_logits": ResizeLike(name="aux_logits", dtype="float32")([aux_logits, inputs]),
                }
        super().__init__(inputs=inputs, outputs=outputs, **kwargs)
        if dtype is not None:  # a functional model takes no dtype argument: its layers were built under it
            self.dtype_policy = dtype
        self.backbone = backbone
        self.head = head
        self.num_classes = num_classes
        self.aux = aux
        self.head_channels = head_channels
        self.sync_bn = sync_bn
        self.metadata = metadata


    def variant(self, aux: bool | None = None, metadata: ModelMetadata | None = None) -> SemanticSegmenter:
        """The same architecture with or without the auxiliary head, or for other classes; fresh weights."""
        config = self.get_config()
        if aux is not None:
            config["aux"] = aux
        if metadata is not None:
            config["metadata"], config["num_classes"] = metadata.to_config(), metadata.num_classes
        return type(self).from_config(config)

    def get_config(self):
        return {
            "name": self.name,
            "trainable": self.trainable,
            "dtype": policy_name(self),
            "backbone": keras.saving.serialize_keras_object(self.backbone),
            "head": self.head,
            "num_classes": self.num_classes,
            "aux": self.aux,
            "head_channels": self.head_channels,
            "sync_bn": self.sync_bn,
            "metadata": self.metadata.to_config(),
        }

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        config["backbone"] = keras.saving.deserialize_keras_object(config["backbone"])
        if config.get("metadata") is not None:
            config["metadata"] = ModelMetadata.from_config(config["metadata"])
        return cls(**config)
