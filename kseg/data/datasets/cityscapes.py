"""Cityscapes fine annotations (gtFine) as GluonCV reads them, and TFDS' copy."""

import numpy as np

from kseg.data.datasets.base import SegmentationDataset

# labelId -> trainId (19 classes); every other id is ignore.
EVALUATED_LABEL_IDS = (7, 8, 11, 12, 13, 17, 19, 20, 21, 22, 23, 24, 25, 26, 27, 28, 31, 32, 33)
LABEL_TO_TRAIN_ID = np.full(256, -1, np.int32)
LABEL_TO_TRAIN_ID[list(EVALUATED_LABEL_IDS)] = np.arange(len(EVALUATED_LABEL_IDS))


def label_ids_to_train_ids(label_ids):
    """gtFine labelIds (0..33) -> trainIds 0..18, -1 elsewhere (GluonCV's ``_class_to_index``)."""
    label_ids = np.asarray(label_ids)
    if label_ids.size and (label_ids.min() < 0 or label_ids.max() > 33):
        raise ValueError(f"Cityscapes labelIds lie in 0..33, got {label_ids.min()}..{label_ids.max()}")
    return LABEL_TO_TRAIN_ID[label_ids.astype(np.int64)]


class Cityscapes(SegmentationDataset):
    """19 trainId classes from ``*_gtFine_labelIds.png``."""

    name = "citys"
    folder_names = ("cityscapes", "citys")
    marker = "leftImg8bit"
    splits = ("train", "val", "test")
    layout = """cityscapes/
  leftImg8bit/{train,val,test}/<city>/<city>_<seq>_<frame>_leftImg8bit.png
  gtFine/{train,val}/<city>/<city>_<seq>_<frame>_gtFine_labelIds.png"""

    def _list(self):
        image_root = self.require(self.root / "leftImg8bit" / self.split, "image folder")
        labelled = self.split != "test"
        mask_root = self.require(self.root / "gtFine" / self.split, "label folder") if labelled else None
        for image in sorted(image_root.glob("*/*_leftImg8bit.png")):
            if labelled:
                mask = mask_root / image.parent.name / image.name.replace("leftImg8bit", "gtFine_labelIds")
                if not mask.is_file():
                    self.layout_error(f"citys: {image.name} has no label {mask}", missing=mask)
                self.masks.append(mask)
            self.images.append(image)
            self.ids.append(image.name.removesuffix(".png"))

    def map_labels(self, raw):
        return label_ids_to_train_ids(raw)


def cityscapes_from_tfds(split="validation", data_dir=None):
    """TFDS ``cityscapes/semantic_segmentation`` as (image uint8, trainId mask int32) elements.

    TFDS cannot download Cityscapes: the user downloads ``leftImg8bit_trainvaltest.zip``
    and ``gtFine_trainvaltest.zip`` into TFDS' manual folder and prepares it once
    (``tfds build cityscapes/semantic_segmentation --manual_dir=...``).
    """
    import tensorflow as tf
    import tensorflow_datasets as tfds

    builder = tfds.builder("cityscapes/semantic_segmentation", data_dir=data_dir)
    if not builder.is_prepared():
        raise FileNotFoundError(
            f"TFDS cityscapes/semantic_segmentation is not prepared in {builder.data_dir}. Download "
            "leftImg8bit_trainvaltest.zip and gtFine_trainvaltest.zip from cityscapes-dataset.com into "
            "~/tensorflow_datasets/downloads/manual/ and run: tfds build cityscapes/semantic_segmentation"
        )
    table = tf.constant(LABEL_TO_TRAIN_ID)

    def convert(example):
        label_ids = tf.cast(example["segmentation_label"][..., 0], tf.int32)
        return example["image_left"], tf.gather(table, label_ids)

    return builder.as_dataset(split=split).map(convert, num_parallel_calls=tf.data.AUTOTUNE)
