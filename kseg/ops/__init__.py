"""Pure TensorFlow ops: dynamic-shape friendly and XLA compilable."""

from kseg.ops.pooling import adaptive_average_pool2d
from kseg.ops.resize import resize_bilinear_align_corners

__all__ = ["adaptive_average_pool2d", "resize_bilinear_align_corners"]
