"""Instance segmentation of images of any size, as GluonCV's Mask R-CNN demo and evaluation do.

An image is resized so that its short side is ``short`` (800) without its
long side passing ``max_size`` (1333), normalised, run through the model, and
the detections are mapped back: boxes divided by the scale, each mask pasted
into the full image (``gluoncv.data.transforms.mask.fill``).
"""

import dataclasses

import numpy as np
import tensorflow as tf

from kseg.data.preprocessing import check_image, normalize_image
from kseg.detection.ops.masks import paste_masks


def resized_size(height, width, short=800, max_size=1333):
    """GluonCV's ``resize_short_within`` size: ``(new_height, new_width)``."""
    size_min, size_max = min(height, width), max(height, width)
    scale = short / size_min
    if np.round(scale * size_max) > max_size:
        scale = max_size / size_max
    return int(np.round(height * scale)), int(np.round(width * scale))


def resize_image(image, short=800, max_size=1333):
    """uint8 ``[H, W, 3]`` -> (resized uint8 image, GluonCV's ``im_scale`` = new height / height)."""
    height, width = image.shape[:2]
    new_height, new_width = resized_size(height, width, short, max_size)
    if (new_height, new_width) == (height, width):
        return image, 1.0
    resized = tf.image.resize(tf.cast(image, tf.float32), (new_height, new_width), method="bilinear")
    resized = tf.cast(tf.clip_by_value(tf.round(resized), 0, 255), tf.uint8).numpy()
    return resized, new_height / height


@dataclasses.dataclass
class Instances:
    """The detections of one image, in its own pixels, best first."""

    boxes: np.ndarray  # float32 [N, 4] (x1, y1, x2, y2)
    class_ids: np.ndarray  # int32 [N], contiguous COCO ids (0 = person)
    scores: np.ndarray  # float32 [N]
    masks: np.ndarray  # uint8 [N, H, W] binary
    class_names: tuple

    def __len__(self):
        return len(self.scores)

    def labels(self):
        return [self.class_names[i] for i in self.class_ids]


class InstancePredictor:
    """``predict(image)`` -> :class:`Instances` for a :class:`kseg.models.mask_rcnn.MaskRCNN`.

    ``score_threshold`` drops weaker detections (GluonCV's evaluation keeps
    those >= 0.001); ``exact_masks`` pastes masks with GluonCV's exact
    interpolation (its evaluation script) instead of PIL's fast resize (its
    demos and training-time validation). The model runs under
    ``tf.function(jit_compile=...)``, traced once per resized size.
    """

    def __init__(self, model, short=None, max_size=None, score_threshold=0.001, exact_masks=True, jit_compile=None):
        from kseg.evaluation.predictor import resolve_jit

        self.model = model
        self.short = short or model.config.short
        self.max_size = max_size or model.config.max_size
        self.score_threshold = score_threshold
        self.exact_masks = exact_masks
        self.jit_compile = resolve_jit(jit_compile)
        self._by_shape = {}

    def _call(self, images):
        """The model on one static shape (the detection ops size their buffers from it)."""
        shape = tuple(images.shape)
        function = self._by_shape.get(shape)
        if function is None:
            spec = tf.TensorSpec(shape, tf.float32)

            # Off XLA, the mask branch runs only on the detections predict() keeps (GluonCV: all 1000 rows).
            def call(x):
                return self.model.call(
                    x, valid_masks_only=not self.jit_compile, mask_score_threshold=self.score_threshold
                )

            function = tf.function(call, jit_compile=self.jit_compile, input_signature=[spec])
            self._by_shape[shape] = function
        return function(images)

    def raw(self, image):
        """(the model's padded outputs as numpy, im_scale) for one uint8 image; rows scoring below
        ``score_threshold`` have no mask (zeros) unless under XLA."""
        image = check_image(np.asarray(image))
        resized, scale = resize_image(image, self.short, self.max_size)
        outputs = self._call(normalize_image(resized)[None])
        return {key: np.asarray(value)[0] for key, value in outputs.items()}, scale

    def predict(self, image):
        image = np.asarray(image)
        outputs, scale = self.raw(image)
        keep = (outputs["class_ids"] >= 0) & (outputs["scores"] >= self.score_threshold)
        boxes = outputs["boxes"][keep] / scale
        height, width = image.shape[:2]
        masks = paste_masks(outputs["masks"][keep], boxes, (width, height), fast_fill=not self.exact_masks)
        return Instances(
            boxes=boxes.astype(np.float32),
            class_ids=outputs["class_ids"][keep].astype(np.int32),
            scores=outputs["scores"][keep].astype(np.float32),
            masks=masks,
            class_names=self.model.config.classes,
        )
