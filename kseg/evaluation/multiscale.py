"""GluonCV's multi-scale, flipped, sliding-window evaluation (``MultiEvalModel``).

The numbers GluonCV reports come from ``MultiEvalModel`` (segbase.py, as at
cb07ee2a; HEAD's test.py no longer calls it by accident). For one
full-resolution image and every scale it resizes the image (align_corners
bilinear), pads it with normalised black, slides crop-sized windows over it,
scores each window as ``exp(f(x) + flip(f(flip(x))))`` with ``f`` the logits
(not a softmax), averages the overlaps, resizes the score map back to the
image size and sums over scales. The geometry is in :mod:`kseg.evaluation.grid`.

What kseg does differently, without changing the numbers beyond float32
rounding:

* every model input is a crop x crop window (small scales are padded to the
  crop, as GluonCV does), so the windows of *all* scales of an image go through
  the model together, flips in the same batch, in chunks of at most
  ``max_batch`` images. Chunk sizes are ``max_batch`` or powers of two, so a
  whole data set compiles only a handful of XLA programs;
* overlapping windows are summed with ``tf.signal.overlap_and_add`` along each
  axis (the grid is regular) instead of a Python loop of slice-adds, and the
  coverage counts come from the geometry;
* a scale's window scores are stitched as soon as all its windows are done,
  so only the scores of unfinished scales (and one chunk) are held at a time.
"""

from __future__ import annotations

from collections.abc import Sequence

import keras
import tensorflow as tf

from kseg.evaluation.grid import GLUONCV_SCALES, normalized_black, plan_scale
from kseg.evaluation.predictor import CompiledCall, _Compiled, main_logits, normalized_images
from kseg.models import metadata_of
from kseg.ops import resize_bilinear_align_corners
from kseg.utils.quiet import progress_bar


def chunk_sizes(total, largest):
    """Split ``total`` into ``largest``-sized chunks and a binary remainder (7, 4 -> 4, 2, 1).

    Few distinct sizes means few compiled shapes; no chunk is padded with dummy windows.
    """
    sizes = [largest] * (total // largest)
    rest = total % largest
    bit = 1 << max(rest.bit_length() - 1, 0)
    while rest:
        if rest >= bit:
            sizes.append(bit)
            rest -= bit
        bit >>= 1
    return sizes


def pad_bottom_right(image, height, width, value):
    """Pad ``[H, W, 3]`` to ``height x width`` with a per-channel ``value`` (``_pad_image``)."""
    h, w, c = image.shape
    if width > w:
        image = tf.concat([image, tf.broadcast_to(value, [h, width - w, c])], axis=1)
    if height > h:
        image = tf.concat([image, tf.broadcast_to(value, [height - h, width, c])], axis=0)
    return image


class MultiScalePredictor(_Compiled):
    """GluonCV's ``MultiEvalModel`` for a kseg semantic model, one image at a time.

    Args:
        model: a kseg semantic model (NHWC normalised images in, logits at the input size out).
        base_size, crop_size: GluonCV's ``--base-size``/``--crop-size``; None: the model's
            own (its metadata's resize policy).
        scales: the scales, summed in this order.
        flip: add the horizontally flipped window's logits (flipped back) before the exp.
        max_batch: most images in one model call, flipped copies included.
        jit_compile: True (XLA: one compilation per chunk size, all windows are crop x crop),
            False, or None for XLA on GPUs and TPUs.
        mean, std: the normalisation of the images, which defines the black used for padding;
            None: the model's own.
        verbose: 1 shows a progress bar over each image's windows (``kseg predict --multi-scale``).

    Example:
        >>> predictor = MultiScalePredictor(kseg.models.get("fcn_resnet50_ade", weights="pretrained"))
        >>> labels = predictor.predict(kseg.data.normalize_image(image))  # [H, W], GluonCV's protocol
    """

    def __init__(
        self,
        model: keras.Model,
        base_size: int | None = None,
        crop_size: int | None = None,
        scales: Sequence[float] = GLUONCV_SCALES,
        flip: bool = True,
        max_batch: int = 8,
        jit_compile: bool | None = True,
        mean: Sequence[float] | None = None,
        std: Sequence[float] | None = None,
        verbose: int = 0,
    ):
        preprocessing = metadata_of(model).preprocessing
        base_size = base_size or preprocessing.resize.base_size
        crop_size = crop_size or preprocessing.resize.crop_size
        mean = preprocessing.mean if mean is None else mean
        std = preprocessing.std if std is None else std
        if int(max_batch) < 1:
            raise ValueError(f"max_batch must be positive, got {max_batch}")
        self.model = model
        self.base_size = int(base_size)
        self.crop_size = int(crop_size)
        self.scales = tuple(float(s) for s in scales)
        self.flip = bool(flip)
        self.max_batch = int(max_batch)
        self.verbose = int(verbose)
        self.pad_value = tf.constant(normalized_black(mean, std))
        self._call = CompiledCall(self._score_windows, jit_compile)

    @property
    def windows_per_call(self):
        return max(1, self.max_batch // 2) if self.flip else self.max_batch

    def plan(self, height, width):
        """The :class:`~kseg.evaluation.grid.ScalePlan` of every scale for a ``height x width`` image."""
        return [plan_scale(height, width, self.base_size, self.crop_size, s) for s in self.scales]

    def _score_windows(self, windows):
        """``exp(f(x) + flip(f(flip(x))))`` for a batch of windows; flips ride in the same batch."""
        if not self.flip:
            return tf.exp(main_logits(self.model(windows, training=False)))
        n = tf.shape(windows)[0]
        logits = main_logits(self.model(tf.concat([windows, tf.reverse(windows, axis=[2])], 0), training=False))
        return tf.exp(logits[:n] + tf.reverse(logits[n:], axis=[2]))

    def _windows(self, image, plan):
        """The crop x crop windows of one scale, row-major: ``[num_windows, crop, crop, 3]``."""
        resized = resize_bilinear_align_corners(image[None], (plan.height, plan.width))[0]
        padded = pad_bottom_right(resized, *plan.extent, self.pad_value)
        crop = self.crop_size
        return tf.stack([padded[h0 : h0 + crop, w0 : w0 + crop] for h0 in plan.rows for w0 in plan.cols])

    def _stitch(self, plan, scores, height, width):
        """Average one scale's window scores over their overlaps and resize to ``height x width``."""
        crop, stride = self.crop_size, plan.stride
        grid = tf.reshape(scores, [len(plan.rows), len(plan.cols), crop, crop, scores.shape[-1]])
        x = tf.transpose(grid, [0, 2, 4, 1, 3])  # [rows, crop_h, C, cols, crop_w]
        x = tf.signal.overlap_and_add(x, stride)[..., : plan.width]  # [rows, crop_h, C, width]
        x = tf.transpose(x, [2, 3, 0, 1])  # [C, width, rows, crop_h]
        x = tf.signal.overlap_and_add(x, stride)[..., : plan.height]  # [C, width, height]
        x = tf.transpose(x, [2, 1, 0]) / plan.counts()[:, :, None]
        return resize_bilinear_align_corners(x[None], (height, width))[0]

    def scores(self, image):
        """GluonCV's summed multi-scale scores ``[H, W, C]`` for one ``[H, W, 3]`` (or ``[1, H, W, 3]``) image."""
        image = normalized_images(image, what="image")
        if image.shape.rank == 4:
            if image.shape[0] != 1:
                raise ValueError(f"One image at a time (as GluonCV), got a batch of shape {image.shape}")
            image = image[0]
        height, width = image.shape[0], image.shape[1]
        if height is None or width is None:
            raise ValueError("The image needs a static height and width")
        plans = self.plan(height, width)
        windows = tf.concat([self._windows(image, plan) for plan in plans], axis=0)

        total, done, queue, start = None, [], list(plans), 0
        count = int(windows.shape[0])
        progress = progress_bar(count, unit_name="window") if self.verbose else None
        for size in chunk_sizes(count, self.windows_per_call):
            done.append(self._call(windows[start : start + size]))
            start += size
            if progress is not None:
                progress.update(start)
            while queue and sum(int(d.shape[0]) for d in done) >= queue[0].num_windows:
                plan = queue.pop(0)
                ready = tf.concat(done, axis=0) if len(done) > 1 else done[0]
                score = self._stitch(plan, ready[: plan.num_windows], height, width)
                total = score if total is None else total + score
                done = [ready[plan.num_windows :]] if ready.shape[0] > plan.num_windows else []
        return total

    def predict(self, image, return_scores=False):
        """The argmax of :meth:`scores`, int32 ``[H, W]``; with ``return_scores`` also the scores."""
        scores = self.scores(image)
        labels = tf.argmax(scores, axis=-1, output_type=tf.int32)
        return (labels, scores) if return_scores else labels
