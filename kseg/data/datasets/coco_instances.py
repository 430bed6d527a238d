"""COCO-format instance annotations as GluonCV's ``COCOInstance`` reads them for Mask R-CNN training.

Any COCO-style JSON and image folder: the categories are the file's own, in ``getCatIds()`` order
(contiguous class ``k`` is the ``k``-th category id), and images are visited in ascending id. Per
object, as ``gluoncv/data/mscoco/instance.py``:

- ``ignore == 1`` and crowd objects are dropped (crowd regions count as background);
- the box is ``x2 = x1 + max(0, w)``, ``y2 = y1 + max(0, h)`` in float64, clipped to the image;
- an object is kept if its ``area`` field exceeds ``min_object_area`` (1), ``x2 > x1``, ``y2 > y1``
  and ``(x2 - x1) * (y2 - y1) >= 4``;
- polygons of fewer than 3 points are dropped, and so is an object left without a polygon (GluonCV keeps
  it, and its train transform then fails on the image; its count is ``objects_without_polygons``).

With ``skip_empty`` (training) images left without objects are dropped. GluonCV resolves an image
from the last two parts of its ``coco_url``; here it is ``file_name`` inside the image folder, which
is what a user's own data set has.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np

from kseg.data.datasets.coco import _quietly


@dataclasses.dataclass(frozen=True)
class InstanceRecord:
    """One image's kept objects: ``boxes [G, 4]`` float32 (x1, y1, x2, y2 in pixels), ``classes [G]`` int32
    (contiguous), ``polygons``: per object, a list of ``[K, 2]`` float32 ``(x, y)`` arrays."""

    image_id: int
    path: Path
    height: int
    width: int
    boxes: np.ndarray
    classes: np.ndarray
    polygons: tuple

    @property
    def aspect_ratio(self):
        return self.width / self.height


class COCOInstances:
    """The kept images and objects of one COCO-format annotation file.

    Example:
        >>> data = COCOInstances("coco/annotations/instances_val2017.json", "coco/val2017", skip_empty=False)
        >>> data.class_names[:2], data[0].boxes.shape
        (['person', 'bicycle'], (2, 4))
    """

    def __init__(self, annotations, images, skip_empty=True, min_object_area=1.0):
        from pycocotools.coco import COCO

        annotations, self.image_folder = Path(annotations), Path(images)
        if not annotations.is_file():
            raise FileNotFoundError(f"No annotation file at {annotations}")
        if not self.image_folder.is_dir():
            raise FileNotFoundError(f"No image folder at {self.image_folder}")
        try:
            self.coco = _quietly(lambda: COCO(str(annotations)))
        except (ValueError, KeyError, TypeError) as error:
            raise ValueError(f"Cannot read the COCO annotations {annotations}: {error!r}") from None
        self.category_ids = list(self.coco.getCatIds())
        if not self.category_ids:
            raise ValueError(f"{annotations} defines no categories")
        self.class_names = [category["name"] for category in self.coco.loadCats(self.category_ids)]
        self.contiguous_of_category = {category: index for index, category in enumerate(self.category_ids)}
        self.min_object_area = float(min_object_area)
        self.objects_without_polygons = 0
        self.records = []
        missing = []
        for image_id in sorted(self.coco.getImgIds()):
            info = self.coco.imgs[image_id]
            path = self.image_folder / info["file_name"]
            if not path.is_file():
                missing.append(path)
                continue
            record = self._record(image_id, info, path)
            if record is not None or not skip_empty:
                self.records.append(record or self._empty(image_id, info, path))
        if missing:
            raise FileNotFoundError(f"{len(missing)} images of {annotations} are missing, e.g. {missing[0]}")

    def __len__(self):
        return len(self.records)

    def __getitem__(self, index) -> InstanceRecord:
        return self.records[index]

    @property
    def num_classes(self):
        return len(self.class_names)

    def _empty(self, image_id, info, path):
        return InstanceRecord(image_id, path, info["height"], info["width"], np.zeros((0, 4), np.float32),
                              np.zeros((0,), np.int32), ())  # fmt: skip

    def _record(self, image_id, info, path):
        width, height = info["width"], info["height"]
        boxes, classes, polygons = [], [], []
        for obj in self.coco.loadAnns(self.coco.getAnnIds(imgIds=image_id, iscrowd=None)):
            if obj.get("ignore", 0) == 1 or obj.get("iscrowd", 0) == 1:
                continue
            x1, y1, w, h = (float(v) for v in obj["bbox"])
            x2, y2 = x1 + max(0.0, w), y1 + max(0.0, h)
            x1, x2 = min(width, max(0.0, x1)), min(width, max(0.0, x2))
            y1, y2 = min(height, max(0.0, y1)), min(height, max(0.0, y2))
            area = obj.get("area", (x2 - x1) * (y2 - y1))  # a user's file may lack it; COCO's has it
            if not (area > self.min_object_area and x2 > x1 and y2 > y1 and (x2 - x1) * (y2 - y1) >= 4):
                continue
            segmentation = obj.get("segmentation")
            if not isinstance(segmentation, list):
                raise ValueError(
                    f"Annotation {obj.get('id')} of image {image_id}: a non-crowd object's segmentation must be "
                    "polygons (a list), as GluonCV trains on"
                )
            parts = [np.asarray(p, np.float64).reshape(-1, 2).astype(np.float32) for p in segmentation if len(p) >= 6]
            if not parts:
                self.objects_without_polygons += 1
                continue
            boxes.append([x1, y1, x2, y2])
            classes.append(self.contiguous_of_category[obj["category_id"]])
            polygons.append(parts)
        if not boxes:
            return None
        return InstanceRecord(image_id, path, height, width, np.asarray(boxes).astype(np.float32),
                              np.asarray(classes, np.int32), tuple(polygons))  # fmt: skip
