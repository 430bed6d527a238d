"""Prediction PNGs in each benchmark's submission format.

* pascal_voc, pascal_aug, coco: class indices 0..20 in a palettised PNG with
  the VOC colormap, the format of the VOC evaluation server (and GluonCV's).
* ade20k: indices 1..150 (class + 1, 0 is "other") in a palettised PNG with
  the ADE palette, the SceneParsing format. GluonCV's test.py adds its
  ``pred_offset`` and then ``get_color_pallete`` adds 1 again, so its files
  hold class + 2; kseg writes the format the benchmark reads.
* citys: Cityscapes labelIds (7..33) in a greyscale PNG, the format of the
  Cityscapes server, which does not read trainIds.
"""

import numpy as np
from PIL import Image

from kseg.utils.io import atomic_path

# trainId 0..18 -> labelId, the inverse of the reader's mapping.
CITYSCAPES_LABEL_IDS = (7, 8, 11, 12, 13, 17, 19, 20, 21, 22, 23, 24, 25, 26, 27, 28, 31, 32, 33)


def submission_image(prediction, dataset):
    """A ``PIL.Image`` of class indices ``[H, W]`` in ``dataset``'s submission format."""
    prediction = np.asarray(prediction)
    if dataset == "citys":
        label_ids = np.asarray(CITYSCAPES_LABEL_IDS, np.uint8)
        return Image.fromarray(label_ids[prediction], mode="L")
    from kseg.visualize import colorize

    return colorize(prediction, dataset)


def save_submission(path, prediction, dataset):
    """Write the submission PNG for one image atomically."""
    with atomic_path(path, suffix=".png") as tmp:
        submission_image(prediction, dataset).save(tmp)
