"""Instance segmentation of images of any size, as GluonCV's Mask R-CNN demo and evaluation do.

An image is resized by its model's resize policy (GluonCV's: short side 800,
long side at most 1333; ``gluoncv/data/transforms/presets/rcnn.py``),
normalised, run through the model, and the detections are mapped back: boxes
divided by the scale, each mask pasted into the full image
(``gluoncv/data/transforms/mask.py``'s ``fill``).
"""

from __future__ import annotations

import dataclasses

import keras
import numpy as np

from kseg.data.preprocessing import check_image, normalize_image
from kseg.evaluation.predictor import CompiledCall, _Compiled
from kseg.ops.masks import paste_masks
from kseg.ops.resize import resize_short_side, short_side_size


def resized_size(height: int, width: int, short: int = 800, max_size: int = 1333) -> tuple[int, int]:
    """GluonCV's ``resize_short_within`` size: ``(new_height, new_width)`` (:func:`kseg.ops.short_side_size`)."""
    new_h, new_w, _ = short_side_size(height, width, short, max_size)
    return int(new_h), int(new_w)


def resize_image(image: np.ndarray, short: int = 800, max_size: int = 1333) -> tuple[np.ndarray, float]:
    """uint8 ``[H, W, 3]`` -> (resized uint8 image, GluonCV's ``im_scale`` = new height / height)."""
    resized, scale = resize_short_side(image[None], short, max_size)
    return resized.numpy()[0], float(scale)


@dataclasses.dataclass
class Instances:
    """The detections of one image, in its own pixels, best first (what :meth:`InstancePredictor.predict` returns).

    Example:
        >>> import numpy as np
        >>> found = Instances(boxes=np.array([[10, 20, 50, 80]], "float32"), class_ids=np.array([0], "int32"),
        ...                   scores=np.array([0.9], "float32"), masks=np.zeros((1, 100, 120), "uint8"),
        ...                   class_names=("person", "bicycle"))
        >>> len(found), found.labels()
        (1, ['person'])
    """

    boxes: np.ndarray  # float32 [N, 4] (x1, y1, x2, y2)
    class_ids: np.ndarray  # int32 [N], contiguous ids into class_names
    scores: np.ndarray  # float32 [N]
    masks: np.ndarray  # uint8 [N, H, W] binary
    class_names: tuple

    def __len__(self):
        return len(self.scores)

    def labels(self) -> list[str]:
        return [self.class_names[i] for i in self.class_ids]


class InstancePredictor(_Compiled):
    """``predict(image)`` -> :class:`Instances` for a :class:`kseg.models.MaskRCNN`.

    Args:
        model: a Mask R-CNN; its ``metadata`` gives the class names and the
            test-time resize.
        short, max_size: another test size than the model's.
        score_threshold: drop weaker detections (GluonCV's evaluation keeps
            those >= 0.001).
        exact_masks: paste masks with GluonCV's exact interpolation (its
            evaluation script) instead of PIL's fast resize (its demos and
            training-time validation).
        jit_compile: True, False, or None for XLA on GPUs and TPUs; the model
            is traced once per resized size either way.

    Example:
        >>> model = kseg.models.get("mask_rcnn_fpn_resnet50_v1b_coco", weights="pretrained")
        >>> found = InstancePredictor(model, score_threshold=0.5).predict(image)  # uint8 [H, W, 3]
        >>> found.labels(), found.masks.shape  # (['person', ...], (N, H, W))
    """

    def __init__(
        self,
        model: keras.Model,
        short: int | None = None,
        max_size: int | None = None,
        score_threshold: float = 0.001,
        exact_masks: bool = True,
        jit_compile: bool | None = None,
    ):
        resize = model.metadata.preprocessing.resize
        self.model = model
        self.short = short or resize.short
        self.max_size = max_size or resize.max_size
        self.score_threshold = float(score_threshold)
        self.exact_masks = exact_masks
        # Off XLA, the mask branch runs only on the detections predict() keeps (GluonCV: all 1000 rows).
        self._call = CompiledCall(self._detect, jit_compile, static_shapes=True)

    def _detect(self, images):
        return self.model.call(
            images, valid_masks_only=not self.jit_compile, mask_score_threshold=self.score_threshold
        )

    def raw(self, image: np.ndarray) -> tuple[dict[str, np.ndarray], float]:
        """(the model's padded outputs as numpy, im_scale) for one uint8 image; rows scoring below
        ``score_threshold`` have no mask (zeros) unless under XLA."""
        image = check_image(np.asarray(image))
        resized, scale = resize_image(image, self.short, self.max_size)
        outputs = self._call(normalize_image(resized)[None])
        return {key: np.asarray(value)[0] for key, value in outputs.items()}, scale

    def predict(self, image: np.ndarray) -> Instances:
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
            class_names=self.model.metadata.classes,
        )
