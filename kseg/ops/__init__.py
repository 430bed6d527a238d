"""Pure TensorFlow ops, static-shape and XLA compilable, each checked against MXNet/GluonCV.

- :mod:`~kseg.ops.resize`: align-corners bilinear resize; GluonCV's short-side size rule;
- :mod:`~kseg.ops.pooling`: adaptive average pooling with MXNet's bins;
- :mod:`~kseg.ops.conv`: exact fast 3x3 convolutions for CPU inference;
- :mod:`~kseg.ops.anchors`, :mod:`~kseg.ops.boxes`, :mod:`~kseg.ops.nms`,
  :mod:`~kseg.ops.proposals`, :mod:`~kseg.ops.roi_align`: Mask R-CNN's detection ops;
- :mod:`~kseg.ops.masks`: mask pasting (numpy, as GluonCV's evaluation; and in TF);
- :mod:`~kseg.ops.matching`, :mod:`~kseg.ops.rpn_targets`, :mod:`~kseg.ops.rcnn_targets`: Mask R-CNN's
  training targets (MXNet's matching IoU, GluonCV's RPN labels, the RCNN sampler, box and mask targets);
- :mod:`~kseg.ops.runtime`: the accelerator, the XLA policy and the stock-ops switch.
"""

from kseg.ops.anchors import (
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
from kseg.ops.boxes import (
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
from kseg.ops.masks import paste_masks, paste_masks_tf
from kseg.ops.nms import box_nms, multiclass_nms, proposal_nms
from kseg.ops.pooling import adaptive_average_pool2d
from kseg.ops.proposals import rpn_proposals
from kseg.ops.resize import resize_bilinear_align_corners, resize_like, resize_short_side, short_side_size
from kseg.ops.roi_align import FPN_ROI_STRIDES, fpn_roi_levels, multilevel_roi_align, roi_align

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
    "adaptive_average_pool2d",
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
    "paste_masks_tf",
    "proposal_nms",
    "resize_bilinear_align_corners",
    "resize_like",
    "resize_short_side",
    "roi_align",
    "rpn_proposals",
    "short_side_size",
]
