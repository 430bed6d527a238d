"""The semantic segmentation task model: a backbone, a head, an optional aux head."""

import keras

from kseg.models.heads import HEADS
from kseg.models.heads.fcn import fcn_block
from kseg.models.layers import ResizeLike


@keras.saving.register_keras_serializable(package="kseg")
class SemanticSegmenter(keras.Model):
    """FCN, PSPNet, DeepLabV3 or the VPLR DeepLabV3+ on a backbone.

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
    """

    def __init__(
        self,
        backbone,
        head="fcn",
        num_classes=21,
        aux=False,
        head_channels=None,
        sync_bn=False,
        **kwargs,
    ):
        if head not in HEADS:
            raise ValueError(f"Unknown head {head!r}; expected one of {sorted(HEADS)}")
        if head == "deeplabv3plus" and aux:
            raise ValueError("The VPLR DeepLabV3+ has no auxiliary head (aux must be False)")
        if int(num_classes) < 1:
            raise ValueError(f"num_classes must be positive, got {num_classes}")
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
        self.backbone = backbone
        self.head = head
        self.num_classes = int(num_classes)
        self.aux = aux
        self.head_channels = head_channels
        self.sync_bn = sync_bn

    def get_config(self):
        return {
            "name": self.name,
            "trainable": self.trainable,
            "backbone": keras.saving.serialize_keras_object(self.backbone),
            "head": self.head,
            "num_classes": self.num_classes,
            "aux": self.aux,
            "head_channels": self.head_channels,
            "sync_bn": self.sync_bn,
        }

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        config["backbone"] = keras.saving.deserialize_keras_object(config["backbone"])
        return cls(**config)
