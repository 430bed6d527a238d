"""Detection ops for the Mask R-CNN port: static shapes, XLA compilable, GluonCV/MXNet semantics.

- :mod:`~kseg.detection.ops.anchors`: RPN anchors (``RPNAnchorGenerator``);
- :mod:`~kseg.detection.ops.box_ops`: box coder, clipping, areas, IoU;
- :mod:`~kseg.detection.ops.nms`: ``box_nms`` for proposals and per-class detections;
- :mod:`~kseg.detection.ops.proposals`: the RPN's decode, clip, min-size and NMS;
- :mod:`~kseg.detection.ops.roi_align`: ``contrib.ROIAlign(aligned=False)``, single and FPN levels;
- :mod:`~kseg.detection.ops.masks`: mask pasting for evaluation (numpy).
"""

from kseg.detection.ops.anchors import (
    C4_SIZES,
    C4_STRIDE,
    FPN_SIZES,
    FPN_STRIDES,
    RATIOS,
    base_anchors,
    c4_anchors,
    fpn_anchors,
    grid_anchors,
)
from kseg.detection.ops.box_ops import (
    BBOX_CLIP,
    RCNN_STDS,
    RPN_STDS,
    box_area,
    box_iou,
    clip_boxes,
    corner_to_center,
    decode_boxes,
    encode_boxes,
)
from kseg.detection.ops.masks import paste_masks
from kseg.detection.ops.nms import box_nms, multiclass_nms, proposal_nms
from kseg.detection.ops.proposals import rpn_proposals
from kseg.detection.ops.roi_align import FPN_ROI_STRIDES, fpn_roi_levels, multilevel_roi_align, roi_align

__all__ = [
    "BBOX_CLIP",
    "C4_SIZES",
    "C4_STRIDE",
    "FPN_ROI_STRIDES",
    "FPN_SIZES",
    "FPN_STRIDES",
    "RATIOS",
    "RCNN_STDS",
    "RPN_STDS",
    "base_anchors",
    "box_area",
    "box_iou",
    "box_nms",
    "c4_anchors",
    "clip_boxes",
    "corner_to_center",
    "decode_boxes",
    "encode_boxes",
    "fpn_anchors",
    "fpn_roi_levels",
    "grid_anchors",
    "multiclass_nms",
    "multilevel_roi_align",
    "paste_masks",
    "proposal_nms",
    "roi_align",
    "rpn_proposals",
]
