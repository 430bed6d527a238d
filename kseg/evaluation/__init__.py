"""Inference for evaluation: single-scale, and GluonCV's multi-scale protocol.

``Predictor`` gives logits at the image size for a batch; ``MultiScalePredictor``
reproduces GluonCV's ``MultiEvalModel`` (scales 0.5-1.75, flip, sliding crop
windows, ``exp`` scores summed over scales), which produced GluonCV's
published numbers.
"""

from kseg.evaluation.grid import (
    GLUONCV_SCALES,
    IMAGENET_MEAN,
    IMAGENET_STD,
    ScalePlan,
    normalized_black,
    plan_scale,
    scaled_size,
    window_starts,
    window_stride,
)
from kseg.evaluation.multiscale import MultiScalePredictor, chunk_sizes, pad_bottom_right
from kseg.evaluation.predictor import CompiledCall, Predictor

__all__ = [
    "GLUONCV_SCALES",
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "CompiledCall",
    "MultiScalePredictor",
    "Predictor",
    "ScalePlan",
    "chunk_sizes",
    "normalized_black",
    "pad_bottom_right",
    "plan_scale",
    "scaled_size",
    "window_starts",
    "window_stride",
]
