"""The architecture of GluonCV's Mask R-CNN (``gluoncv/model_zoo/rcnn/mask_rcnn/predefined_models.py``).

Architecture only: the published models' files, scores, classes and test
sizes are their presets' (``kseg/presets/instance.py``).
"""

import dataclasses


@dataclasses.dataclass(frozen=True)
class MaskRCNNConfig:
    """One Mask R-CNN's architecture; the defaults are GluonCV's C4 ResNet-50 on COCO's 80 classes.

    Example:
        >>> from kseg.models import MaskRCNNConfig
        >>> config = MaskRCNNConfig(depth=101, variant="v1d", fpn=True, box_pool=True, mask_convs=4)
        >>> config.mask_size, config.strides  # as mask_rcnn_fpn_resnet101_v1d_coco
        (28, (4, 8, 16, 32, 64))
    """

    depth: int = 50
    variant: str = "v1b"  # ResNet variant: v1b (7x7 stem) or v1d (deep stem, average-pool shortcuts)
    fpn: bool = False
    roi_size: int = 14  # RoIAlign output (box and mask branches)
    box_pool: bool = False  # FPN R50/R101: AvgPool 3/2/1 (padding counted) to 7x7 before the FCs
    mask_convs: int = 0  # 3x3 convolutions before the mask head's deconvolution
    num_classes: int = 80
    rpn_channels: int = 1024
    rpn_pre_nms: int = 6000  # test-time top-k before the proposal NMS
    rpn_post_nms: int = 1000
    rpn_nms_threshold: float = 0.7
    rpn_min_size: float = 1.0
    nms_threshold: float = 0.5  # per-class NMS of the detections
    score_threshold: float = 0.01  # GluonCV's MultiPerClassDecoder threshold
    max_detections: int = 1000  # rcnn_max_dets: the top detections over all classes
    box_clip: float = 4.42  # GluonCV's literal (not log(1000 / 16)), on dw and dh from above

    def __post_init__(self):
        if isinstance(self.num_classes, bool) or not isinstance(self.num_classes, int) or self.num_classes < 1:
            raise ValueError(f"num_classes must be a positive integer, got {self.num_classes!r}")
        if self.variant not in ("v1b", "v1c", "v1d", "v1s"):
            raise ValueError(f"Unknown ResNet variant {self.variant!r}")

    @property
    def mask_size(self):
        """C4: RoIAlign 14, layer4 halves it, the deconvolution doubles it; FPN: the deconvolution doubles it."""
        return 2 * self.roi_size if self.fpn else self.roi_size

    @property
    def strides(self):
        return (4, 8, 16, 32, 64) if self.fpn else (16,)
