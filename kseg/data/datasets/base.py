"""What every segmentation data set reader shares.

A reader lists its samples from the data set's official folder layout and
loads one sample as GluonCV does: the image through PIL as RGB uint8, the
mask mapped to class indices ``0..C-1`` with -1 for ignored pixels (GluonCV's
``_mask_transform``). Transforms and batching live elsewhere.
"""

from pathlib import Path

import numpy as np
import tensorflow as tf
from PIL import Image

from kseg.data.preprocessing import load_image
from kseg.presets.datasets import CLASSES_BY_DATASET

IGNORE_LABEL = -1


def read_png_indices(path):
    """The stored values of a label PNG (palette indices for a "P" image, never its colours)."""
    try:
        with Image.open(path) as image:
            return np.asarray(image)
    except FileNotFoundError:
        raise FileNotFoundError(f"No label file at {path}") from None
    except OSError as error:
        raise ValueError(f"Cannot read the label file {path}: {error}") from None


def describe_folder(folder, limit=8):
    """A short listing of what ``folder`` holds, for error messages."""
    folder = Path(folder)
    if not folder.exists():
        return f"{folder} does not exist"
    if not folder.is_dir():
        return f"{folder} is not a folder"
    names = sorted(p.name + ("/" if p.is_dir() else "") for p in folder.iterdir())
    more = f", ... ({len(names)} entries)" if len(names) > limit else ""
    return f"{folder} holds: {', '.join(names[:limit]) or 'nothing'}{more}"


class SegmentationDataset:
    """A data set split: ``len``, ``ids``, ``load(i) -> (uint8 image, int32 mask)``, ``as_tf_dataset()``.

    Subclasses set ``name``, ``folder_names`` (where the data set sits below a
    data root), ``marker`` (a sub-path that identifies the data set folder),
    ``layout`` (the expected tree, for errors), ``mask_fill``, and fill
    ``self.images`` / ``self.masks`` / ``self.ids`` in ``_list``.
    """

    name = ""
    folder_names = ()
    marker = ""
    layout = ""
    splits = ("train", "val")
    mask_fill = IGNORE_LABEL  # the label of a raw 0, which GluonCV's training padding writes
    pred_offset = 0
    ignore_label = IGNORE_LABEL

    def __init__(self, root, split="val"):
        if split not in self.splits:
            raise ValueError(f"{self.name} has splits {', '.join(self.splits)}; got {split!r}")
        self.split = split
        self.root = self.locate(root)
        self.images, self.masks, self.ids = [], [], []
        self._list()
        if not self.images:
            self.layout_error(f"The {split} split of {self.name} in {self.root} is empty")
        if self.masks and len(self.masks) != len(self.images):
            raise AssertionError("every image needs its mask")

    # --- layout ---------------------------------------------------------------------------
    @classmethod
    def locate(cls, root):
        """The data set's own folder: ``root`` itself or one of ``folder_names`` below it."""
        if root is None:
            raise FileNotFoundError(
                f"No data folder for {cls.name}: pass --dataset-dir (dataset_dir=) or set KSEG_DATA. "
                f"Expected layout:\n{cls.layout}"
            )
        root = Path(root).expanduser()
        for candidate in (root, *(root / name for name in cls.folder_names)):
            if (candidate / cls.marker).exists():
                return candidate
        raise FileNotFoundError(
            f"No {cls.name} data set in {root}: looked for {cls.marker} in it and in "
            f"{', '.join(str(root / n) for n in cls.folder_names)}. Expected layout:\n{cls.layout}\n"
            f"Found: {describe_folder(root)}"
        )

    def layout_error(self, message, missing=None):
        found = describe_folder(Path(missing).parent if missing else self.root)
        raise FileNotFoundError(f"{message}. Expected layout:\n{self.layout}\nFound: {found}")

    def require(self, path, what):
        path = Path(path)
        if not path.exists():
            self.layout_error(f"{self.name}: missing {what} {path}", missing=path)
        return path

    def _list(self):
        raise NotImplementedError

    # --- samples ----------------------------------------------------------------------------
    @property
    def classes(self):
        return CLASSES_BY_DATASET[self.name]

    @property
    def num_classes(self):
        return len(self.classes)

    @property
    def has_labels(self):
        return bool(self.masks)

    def __len__(self):
        return len(self.images)

    def __repr__(self):
        return f"{type(self).__name__}(split={self.split!r}, images={len(self)}, root={str(self.root)!r})"

    def image_path(self, index):
        return self.images[index]

    def load_image(self, index):
        return load_image(self.images[index])

    def read_mask(self, index):
        """The raw mask as stored (before mapping)."""
        return read_png_indices(self.masks[index])

    def map_labels(self, raw):
        """Raw stored values -> int32 class indices with -1 ignore (GluonCV's ``_mask_transform``)."""
        raise NotImplementedError

    def load_mask(self, index):
        if not self.has_labels:
            raise ValueError(f"The {self.split} split of {self.name} has no labels")
        return self.map_labels(self.read_mask(index)).astype(np.int32)

    def load(self, index):
        """(RGB uint8 ``[H, W, 3]``, int32 ``[H, W]`` mask) of sample ``index``."""
        image, mask = self.load_image(index), self.load_mask(index)
        if mask.shape != image.shape[:2]:
            raise ValueError(
                f"{self.name}: the mask of {self.ids[index]} is {mask.shape}, its image {image.shape[:2]}"
            )
        return image, mask

    def as_tf_dataset(self, shuffle=False, seed=None, with_ids=False, num_parallel_calls=tf.data.AUTOTUNE):
        """(image uint8, mask int32) elements (with ``with_ids``: (id, image, mask)), decoded in parallel.

        Files are decoded with PIL, as GluonCV reads them, in parallel threads;
        the order is the reader's (or a seeded shuffle, reshuffled each epoch
        in a reproducible way) whatever the parallelism. Splits without labels
        give an all-ignore mask.
        """
        indices = tf.data.Dataset.range(len(self))
        if shuffle:
            indices = indices.shuffle(len(self), seed=seed, reshuffle_each_iteration=True)

        def load(index):
            index = int(index)
            image = self.load_image(index)
            mask = self.load_mask(index) if self.has_labels else np.full(image.shape[:2], -1, np.int32)
            return image, mask

        def decode(index):
            image, mask = tf.numpy_function(load, [index], [tf.uint8, tf.int32], stateful=False)
            image, mask = tf.ensure_shape(image, [None, None, 3]), tf.ensure_shape(mask, [None, None])
            if with_ids:
                return tf.gather(tf.constant([str(i) for i in self.ids]), index), image, mask
            return image, mask

        return indices.map(decode, num_parallel_calls=num_parallel_calls, deterministic=True)
