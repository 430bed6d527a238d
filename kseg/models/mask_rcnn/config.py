"""GluonCV's six Mask R-CNN zoo entries: architecture settings and published scores (facts §0, §4)."""

import dataclasses

from kseg.data.classes import COCO_DETECTION_CLASSES


@dataclasses.dataclass(frozen=True)
class MaskRCNNConfig:
    """One zoo entry. Sizes follow GluonCV's ``predefined_models.py``."""

    name: str
    depth: int
    variant: str  # ResNet variant: v1b (7x7 stem) or v1d (deep stem, average-pool shortcuts)
    fpn: bool
    sha1: str
    box_ap: float
    mask_ap: float
    roi_size: int = 14  # RoIAlign output (box and mask branches)
    box_pool: bool = False  # FPN R50/R101: AvgPool 3/2/1 (padding counted) to 7x7 before the FCs
    mask_convs: int = 0  # 3x3 convolutions before the mask head's deconvolution
    num_classes: int = 80
    short: int = 800
    max_size: int = 1333
    rpn_channels: int = 1024
    rpn_pre_nms: int = 6000  # test-time top-k before the proposal NMS
    rpn_post_nms: int = 1000
    rpn_nms_threshold: float = 0.7
    rpn_min_size: float = 1.0
    nms_threshold: float = 0.5  # per-class NMS of the detections
    score_threshold: float = 0.01  # GluonCV's MultiPerClassDecoder threshold
    max_detections: int = 1000  # rcnn_max_dets: the top detections over all classes
    box_clip: float = 4.42  # GluonCV's literal (not log(1000 / 16)), on dw and dh from above

    @property
    def classes(self):
        return COCO_DETECTION_CLASSES

    @property
    def mask_size(self):
        """C4: RoIAlign 14, layer4 halves it, the deconvolution doubles it; FPN: the deconvolution doubles it."""
        return 2 * self.roi_size if self.fpn else self.roi_size

    @property
    def gluoncv_file(self):
        return f"{self.name}-{self.sha1[:8]}.params"

    @property
    def url(self):
        from kseg.models.zoo import GLUONCV_STORE_URL

        return f"{GLUONCV_STORE_URL}gluon/models/{self.name}-{self.sha1[:8]}.zip"

    @property
    def dataset(self):
        return "coco"

    @property
    def metrics(self):
        return {"box AP": self.box_ap, "mask AP": self.mask_ap}

    @property
    def strides(self):
        return (4, 8, 16, 32, 64) if self.fpn else (16,)


_ENTRIES = (
    MaskRCNNConfig("mask_rcnn_resnet18_v1b_coco", 18, "v1b", False, "e071cf1550bc0331c218a9072b59e9550595d1e7",
                   31.2, 28.4),
    MaskRCNNConfig("mask_rcnn_fpn_resnet18_v1b_coco", 18, "v1b", True, "14a922c38b0b196fdb1f7141be4666c10476f426",
                   34.9, 30.4, roi_size=7, mask_convs=2),
    MaskRCNNConfig("mask_rcnn_resnet50_v1b_coco", 50, "v1b", False, "a3527fdc2cee5b1f32a61e5fd7cda8fb673e86e5",
                   38.3, 33.1),
    MaskRCNNConfig("mask_rcnn_fpn_resnet50_v1b_coco", 50, "v1b", True, "1364d0afe4de575af5d4389d50c2dbf22449ceac",
                   39.2, 35.4, box_pool=True, mask_convs=4),
    MaskRCNNConfig("mask_rcnn_resnet101_v1d_coco", 101, "v1d", False, "4a3249c584f81c2a9b5d852b742637cd692ebdcb",
                   41.3, 35.2),
    MaskRCNNConfig("mask_rcnn_fpn_resnet101_v1d_coco", 101, "v1d", True, "89c7d8669b677a05c6eaa25375ead9a174109c69",
                   42.3, 37.7, box_pool=True, mask_convs=4),
)

MASK_RCNN_ZOO = {entry.name: entry for entry in _ENTRIES}
