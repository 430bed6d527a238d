"""Pascal VOC 2012 segmentation, and SBD ("VOC aug"), as GluonCV reads them."""

import numpy as np

from kseg.data.datasets.base import SegmentationDataset


def read_split_list(dataset, path):
    path = dataset.require(path, "split list")
    return [line.strip() for line in path.read_text().splitlines() if line.strip()]


class PascalVOC(SegmentationDataset):
    """21 classes (0 background); 255 (object borders) is ignore.

    As in GluonCV, the ``train`` split reads ``trainval.txt``: the published
    VOC models were fine-tuned on train+val and scored on the test server.
    """

    name = "pascal_voc"
    folder_names = ("VOCdevkit/VOC2012", "VOC2012", "voc/VOC2012")
    marker = "JPEGImages"
    splits = ("train", "val", "test")
    mask_fill = 0
    split_files = {"train": "trainval.txt", "val": "val.txt", "test": "test.txt"}
    layout = """VOCdevkit/VOC2012/
  JPEGImages/2007_000032.jpg ...
  SegmentationClass/2007_000032.png ...   (palette indices: 0..20, 255 = border)
  ImageSets/Segmentation/trainval.txt, val.txt, test.txt   (train reads trainval.txt, as GluonCV)"""

    def _list(self):
        names = read_split_list(self, self.root / "ImageSets" / "Segmentation" / self.split_files[self.split])
        for name in names:
            self.images.append(self.require(self.root / "JPEGImages" / f"{name}.jpg", "image"))
            if self.split != "test":
                self.masks.append(self.require(self.root / "SegmentationClass" / f"{name}.png", "label"))
            self.ids.append(name)

    def map_labels(self, raw):
        raw = np.asarray(raw, np.int32)
        return np.where(raw == 255, -1, raw)


class PascalAug(SegmentationDataset):
    """SBD's 11355 images with VOC's 21 classes, from ``.mat`` files; no ignore label.

    ``train`` reads SBD's ``trainval.txt`` and ``val`` its ``val.txt``, as GluonCV.
    """

    name = "pascal_aug"
    folder_names = ("VOCaug/dataset", "voc/VOCaug/dataset")
    marker = "cls"
    mask_fill = 0
    split_files = {"train": "trainval.txt", "val": "val.txt"}
    layout = """VOCaug/dataset/
  img/2008_000002.jpg ...
  cls/2008_000002.mat ...   (GTcls.Segmentation: 0..20)
  trainval.txt, val.txt"""

    def _list(self):
        for name in read_split_list(self, self.root / self.split_files[self.split]):
            self.images.append(self.require(self.root / "img" / f"{name}.jpg", "image"))
            self.masks.append(self.require(self.root / "cls" / f"{name}.mat", "label"))
            self.ids.append(name)

    def read_mask(self, index):
        import scipy.io

        path = self.masks[index]
        try:
            mat = scipy.io.loadmat(path, mat_dtype=True, squeeze_me=True, struct_as_record=False)
            return np.asarray(mat["GTcls"].Segmentation)
        except (OSError, ValueError, KeyError, AttributeError) as error:
            raise ValueError(f"Cannot read the SBD label {path} (GTcls.Segmentation): {error}") from None

    def map_labels(self, raw):
        return np.asarray(raw).astype(np.int32)
