"""The geometry of GluonCV's multi-scale evaluation, in plain Python.

``MultiEvalModel.__call__`` (gluoncv/model_zoo/segbase.py, unchanged from
cb07ee2a to 0.10.5) decides, per scale, the resized size, the padding and the
sliding-window grid with integer arithmetic. Reproducing those numbers exactly
is what makes kseg's scores agree with GluonCV's, so they live here, apart from
any TensorFlow code, where tests can check them against GluonCV's own loop:

* ``long = int(math.ceil(base_size * scale))``; the short side is
  ``int(1.0 * short * long / long_of_image + 0.5)`` (round half up);
* the resized image is padded bottom/right to at least ``crop`` on each side
  with normalised black, ``-mean / std`` per channel (``_pad_image``);
* windows start at ``i * stride`` with ``stride = int(crop * 2 / 3)`` and
  ``ceil((P - crop) / stride) + 1`` windows per axis (``P`` the padded size).
  The last window is *not* shifted back inside the image: it is cut at ``P``
  and padded again to ``crop`` with normalised black.

When the long side fits in the crop GluonCV takes a separate branch (pad to
crop, run once, crop back); that is the 1x1 grid of the general case, with a
count of one, so one code path covers both.
"""

import dataclasses
import math

import numpy as np

from kseg.presets import IMAGENET_MEAN, IMAGENET_STD

GLUONCV_SCALES = (0.5, 0.75, 1.0, 1.25, 1.5, 1.75)
STRIDE_RATE = 2.0 / 3.0


def normalized_black(mean=IMAGENET_MEAN, std=IMAGENET_STD):
    """The pad value of ``_pad_image``: ``-mean / std`` (float64 there), as float32 per channel."""
    return (-np.asarray(mean, np.float64) / np.asarray(std, np.float64)).astype(np.float32)


def window_stride(crop_size):
    """``int(crop_size * 2 / 3)``: 320 for a 480 crop."""
    return int(crop_size * STRIDE_RATE)


def scaled_size(height, width, base_size, scale):
    """(height, width) of the image resized for ``scale``, with GluonCV's rounding."""
    long_size = int(math.ceil(base_size * scale))
    if height > width:
        return long_size, int(1.0 * width * long_size / height + 0.5)
    return int(1.0 * height * long_size / width + 0.5), long_size


def window_starts(size, crop_size, stride):
    """Window offsets along one axis of a padded image of ``size`` (>= crop_size)."""
    grids = int(math.ceil(1.0 * (size - crop_size) / stride)) + 1
    return tuple(i * stride for i in range(grids))


def coverage(starts, crop_size, size):
    """How many windows cover each of the first ``size`` positions along one axis."""
    count = np.zeros(size, np.int32)
    for start in starts:
        count[start : start + crop_size] += 1
    return count


@dataclasses.dataclass(frozen=True)
class ScalePlan:
    """Everything GluonCV decides for one scale of one image.

    ``height`` x ``width`` is the resized image; ``padded`` the image after the
    first padding to at least the crop (GluonCV's ``ph, pw``); ``rows`` and
    ``cols`` the window offsets. ``extent`` is where the last windows end,
    ``(rows[-1] + crop, cols[-1] + crop)``, possibly past ``padded``: the
    windows are cut from the image padded to ``extent``.
    """

    scale: float
    height: int
    width: int
    padded: tuple
    rows: tuple
    cols: tuple
    crop_size: int
    stride: int

    @property
    def sliding(self):
        """GluonCV's branch: False when the long side fits in the crop."""
        return max(self.height, self.width) > self.crop_size

    @property
    def num_windows(self):
        return len(self.rows) * len(self.cols)

    @property
    def extent(self):
        return self.rows[-1] + self.crop_size, self.cols[-1] + self.crop_size

    def windows(self):
        """(h0, h1, w0, w1) of every window, row-major, clipped to ``padded`` as GluonCV's loop does."""
        ph, pw = self.padded
        return [
            (h0, min(h0 + self.crop_size, ph), w0, min(w0 + self.crop_size, pw)) for h0 in self.rows for w0 in self.cols
        ]

    def counts(self):
        """GluonCV's ``count_norm`` on the resized image's ``height x width``, as float32."""
        rows = coverage(self.rows, self.crop_size, self.padded[0])[: self.height]
        cols = coverage(self.cols, self.crop_size, self.padded[1])[: self.width]
        return np.outer(rows, cols).astype(np.float32)


def plan_scale(height, width, base_size, crop_size, scale):
    """The :class:`ScalePlan` for an image of ``height`` x ``width`` at ``scale``."""
    h, w = scaled_size(height, width, base_size, scale)
    if h < 1 or w < 1:
        raise ValueError(f"A {height}x{width} image resizes to {h}x{w} at scale {scale}")
    stride = window_stride(crop_size)
    if stride < 1:
        raise ValueError(f"crop_size {crop_size} is too small for a sliding window")
    ph, pw = max(h, crop_size), max(w, crop_size)
    return ScalePlan(
        scale=scale,
        height=h,
        width=w,
        padded=(ph, pw),
        rows=window_starts(ph, crop_size, stride),
        cols=window_starts(pw, crop_size, stride),
        crop_size=crop_size,
        stride=stride,
    )
