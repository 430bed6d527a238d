"""COCO instances as VOC's 21 semantic classes, as GluonCV builds them."""

import hashlib
import json

import numpy as np

from kseg.data.datasets.base import SegmentationDataset
from kseg.utils.io import write_atomic
from kseg.utils.paths import kseg_home
from kseg.utils.quiet import progress_bar

# The COCO category id of each VOC class 0..20 (GluonCV's COCOSegmentation.CAT_LIST).
COCO_CATEGORY_OF_VOC_CLASS = (0, 5, 2, 16, 9, 44, 6, 3, 17, 62, 21, 67, 18, 19, 4, 1, 64, 20, 63, 7, 72)
VOC_CLASS_OF_COCO_CATEGORY = {cat: index for index, cat in enumerate(COCO_CATEGORY_OF_VOC_CLASS)}
MIN_FOREGROUND_PIXELS = 1000  # images with fewer are dropped


def instances_to_semantic(annotations, height, width):
    """A uint8 VOC-class mask from COCO instance annotations; the first instance wins an overlap."""
    from pycocotools import mask as mask_utils

    semantic = np.zeros((height, width), np.uint8)
    for annotation in annotations:
        voc_class = VOC_CLASS_OF_COCO_CATEGORY.get(annotation["category_id"])
        if voc_class is None:
            continue
        decoded = mask_utils.decode(mask_utils.frPyObjects(annotation["segmentation"], height, width))
        if decoded.ndim == 3:  # one mask per polygon part
            decoded = decoded.sum(axis=2) > 0
        semantic[(semantic == 0) & (decoded > 0)] = voc_class
    return semantic


class COCOSemantic(SegmentationDataset):
    """21 VOC classes from COCO 2017 instances; other categories are background; no ignore.

    Only images with more than 1000 foreground pixels are kept; the kept ids
    are cached next to the annotations (or under ``$KSEG_HOME/cache`` when
    that folder is read-only), keyed by the annotation file's size and time.
    """

    name = "coco"
    folder_names = ("coco",)
    marker = "annotations"
    mask_fill = 0
    layout = """coco/
  annotations/instances_train2017.json, instances_val2017.json
  train2017/000000000009.jpg ...
  val2017/000000000139.jpg ..."""

    def _list(self):
        from pycocotools.coco import COCO

        year_split = f"{self.split}2017"
        annotation_file = self.require(self.root / "annotations" / f"instances_{year_split}.json", "annotation file")
        self.image_folder = self.require(self.root / year_split, "image folder")
        try:
            self.coco = _quietly(lambda: COCO(str(annotation_file)))
        except (ValueError, KeyError, TypeError) as error:
            raise ValueError(f"Cannot read the COCO annotations {annotation_file}: {error}") from None
        kept = self._kept_ids(annotation_file)
        for image_id in kept:
            info = self.coco.imgs[image_id]
            self.images.append(self.image_folder / info["file_name"])
            self.masks.append(image_id)  # masks are drawn from the annotations
            self.ids.append(str(image_id))

    def read_mask(self, index):
        image_id = self.masks[index]
        info = self.coco.imgs[image_id]
        annotations = self.coco.loadAnns(self.coco.getAnnIds(imgIds=image_id))
        return instances_to_semantic(annotations, info["height"], info["width"])

    def map_labels(self, raw):
        return np.asarray(raw, np.int32)

    def _kept_ids(self, annotation_file):
        stat = annotation_file.stat()
        key = f"{annotation_file.name}:{stat.st_size}:{int(stat.st_mtime)}"
        digest = hashlib.sha1(f"{annotation_file.resolve()}:{key}".encode()).hexdigest()[:16]
        candidates = [
            annotation_file.parent / f"kseg_{self.split}_ids.json",
            kseg_home() / "cache" / f"coco_{digest}.json",
        ]
        for cache in candidates:
            if cache.is_file():
                try:
                    saved = json.loads(cache.read_text())
                    if saved.get("key") == key:
                        return saved["ids"]
                except (ValueError, KeyError):
                    pass  # a damaged cache is rebuilt
        kept = self._filter_ids()
        payload = json.dumps({"key": key, "min_foreground_pixels": MIN_FOREGROUND_PIXELS, "ids": kept})
        for cache in candidates:
            try:
                write_atomic(cache, payload)
                break
            except OSError:
                continue
        return kept

    def _filter_ids(self):

        ids = list(self.coco.imgs)
        print(f"coco: keeping {self.split} images with > {MIN_FOREGROUND_PIXELS} VOC-class pixels (done once)")
        progress = progress_bar(len(ids), verbose=1 if len(ids) > 100 else 0)
        kept = []
        for i, image_id in enumerate(ids):
            info = self.coco.imgs[image_id]
            annotations = self.coco.loadAnns(self.coco.getAnnIds(imgIds=image_id))
            if (instances_to_semantic(annotations, info["height"], info["width"]) > 0).sum() > MIN_FOREGROUND_PIXELS:
                kept.append(image_id)
            progress.update(i + 1, values=[("kept", len(kept))])
        return kept


def _quietly(build):
    """pycocotools prints to stdout while loading; keep stdout for the user's own output."""
    import contextlib
    import io

    with contextlib.redirect_stdout(io.StringIO()):
        return build()


__all__ = ["COCOSemantic", "instances_to_semantic"]
