"""ADE20K (SceneParsing, ADEChallengeData2016) as GluonCV reads it."""

from pathlib import Path

import numpy as np

from kseg.data.datasets.base import SegmentationDataset


class ADE20K(SegmentationDataset):
    """150 classes; the stored label minus 1, so 0 ("other") becomes ignore (-1)."""

    name = "ade20k"
    folder_names = ("ADEChallengeData2016", "ade/ADEChallengeData2016")
    marker = "images"
    splits = ("train", "val", "test")
    mask_fill = -1
    pred_offset = 1  # GluonCV's: submissions hold class + 1
    layout = """ADEChallengeData2016/
  images/training/ADE_train_00000001.jpg ...
  images/validation/ADE_val_00000001.jpg ...
  annotations/training/ADE_train_00000001.png ...   (0 = other, 1..150 = classes)
  annotations/validation/ADE_val_00000001.png ...
  release_test/testing/ADE_test_00000001.jpg ...    (test split only)"""

    def _list(self):
        if self.split == "test":
            folder = self.require(self.root / "release_test" / "testing", "test image folder")
            self.images = sorted(folder.glob("*.jpg"))
            self.ids = [p.stem for p in self.images]
            return
        sub = {"train": "training", "val": "validation"}[self.split]
        image_folder = self.require(self.root / "images" / sub, "image folder")
        mask_folder = self.require(self.root / "annotations" / sub, "annotation folder")
        for image in sorted(Path(image_folder).glob("*.jpg")):
            mask = mask_folder / f"{image.stem}.png"
            if not mask.is_file():
                self.layout_error(f"ade20k: {image.name} has no annotation {mask}", missing=mask)
            self.images.append(image)
            self.masks.append(mask)
            self.ids.append(image.stem)

    def map_labels(self, raw):
        return np.asarray(raw, np.int32) - 1
