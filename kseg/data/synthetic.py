"""Small procedural data sets in each official layout, for tests and the offline quickstart.

Every image is a noisy background with a few shapes (rectangles and ellipses)
whose class decides their colour and texture, so a model can learn them; the
label files hold the exact shapes in each data set's own encoding (ADE's
class + 1, VOC palette PNGs with 255 borders, SBD ``.mat`` structs, COCO
polygons and RLE, Cityscapes labelIds).
"""

import json
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from kseg.utils.io import atomic_path, write_atomic

# The classes drawn per data set (class index in kseg's label space) and a colour for each.
SCENE_CLASSES = {
    "ade20k": (2, 4, 12, 20),  # sky, floor, person, car
    "pascal_voc": (1, 7, 12, 15),  # aeroplane, car, dog, person
    "pascal_aug": (1, 7, 12, 15),
    "coco": (1, 7, 12, 15),
    "citys": (0, 2, 10, 13),  # road, building, sky, car
}
_PALETTE = np.array([[220, 60, 50], [40, 170, 70], [50, 90, 220], [230, 200, 40]], np.float32)


def _scene(rng, height, width, classes):
    """(uint8 image, int32 class map with -1 where no shape is) and the shapes drawn, in order."""
    image = rng.normal(110, 25, (height, width, 3))
    labels = np.full((height, width), -1, np.int32)
    shapes = []
    for _ in range(int(rng.integers(2, 5))):
        slot = int(rng.integers(len(classes)))
        h, w = int(rng.integers(height // 5, height // 2)), int(rng.integers(width // 5, width // 2))
        y0, x0 = int(rng.integers(0, height - h)), int(rng.integers(0, width - w))
        kind = "ellipse" if rng.random() < 0.5 else "rectangle"
        canvas = Image.new("L", (width, height), 0)
        draw = ImageDraw.Draw(canvas)
        box = (x0, y0, x0 + w - 1, y0 + h - 1)
        draw.ellipse(box, fill=1) if kind == "ellipse" else draw.rectangle(box, fill=1)
        region = np.asarray(canvas, bool)
        texture = rng.normal(0, 12 + 8 * slot, (height, width, 1))
        image[region] = (_PALETTE[slot] + texture[region]).clip(0, 255)
        labels[region] = classes[slot]
        shapes.append({"class": classes[slot], "kind": kind, "box": box, "region": region})
    return image.clip(0, 255).astype(np.uint8), labels, shapes


def _save_image(path, array, **kwargs):
    with atomic_path(path, suffix=Path(path).suffix) as tmp:
        Image.fromarray(array).save(tmp, **kwargs)


def _voc_palette_png(path, raw):
    from kseg.visualize import voc_colormap

    image = Image.fromarray(raw.astype(np.uint8), mode="P")
    image.putpalette(voc_colormap().reshape(-1).tolist())
    with atomic_path(path, suffix=".png") as tmp:
        image.save(tmp)


def _border(labels):
    """Pixels on a shape's edge (VOC draws 255 there)."""
    padded = np.pad(labels, 1, mode="edge")
    edge = np.zeros(labels.shape, bool)
    for dy, dx in ((0, 1), (1, 0), (1, 2), (2, 1)):
        edge |= padded[dy : dy + labels.shape[0], dx : dx + labels.shape[1]] != labels
    return edge


def write_dataset(name, root, num_train=8, num_val=4, size=(96, 128), seed=0):
    """Write data set ``name`` (ade20k, pascal_voc, pascal_aug, coco, citys) under ``root``.

    Returns the data set's own folder (what ``get_dataset(name, root=...)`` finds).
    """
    writers = {
        "ade20k": _write_ade20k,
        "pascal_voc": _write_pascal_voc,
        "pascal_aug": _write_pascal_aug,
        "coco": _write_coco,
        "citys": _write_cityscapes,
    }
    if name not in writers:
        raise ValueError(f"Unknown dataset {name!r}; expected one of {', '.join(writers)}")
    rng = np.random.default_rng(seed)
    samples = {
        split: [_scene(rng, *size, SCENE_CLASSES[name]) for _ in range(count)]
        for split, count in (("train", num_train), ("val", num_val))
    }
    return writers[name](Path(root), samples)


def _write_ade20k(root, samples):
    folder = root / "ADEChallengeData2016"
    for split, sub in (("train", "training"), ("val", "validation")):
        for i, (image, labels, _) in enumerate(samples[split]):
            stem = f"ADE_{split}_{i + 1:08d}"
            _save_image(folder / "images" / sub / f"{stem}.jpg", image, quality=95)
            _save_image(folder / "annotations" / sub / f"{stem}.png", (labels + 1).astype(np.uint8))
    return folder


def _voc_names(samples):
    return {split: [f"2012_{split}{i:04d}" for i in range(len(items))] for split, items in samples.items()}


def _write_split_lists(folder, names, test=False):
    """train.txt, val.txt, trainval.txt (and test.txt, the val names again) as VOC and SBD list them."""
    lists = {"train": names["train"], "val": names["val"], "trainval": names["train"] + names["val"]}
    if test:
        lists["test"] = names["val"]
    for split, split_names in lists.items():
        write_atomic(folder / f"{split}.txt", "\n".join(split_names) + "\n")


def _write_pascal_voc(root, samples):
    folder = root / "VOCdevkit" / "VOC2012"
    names = _voc_names(samples)
    for split, items in samples.items():
        for name, (image, labels, _) in zip(names[split], items, strict=True):
            _save_image(folder / "JPEGImages" / f"{name}.jpg", image, quality=95)
            raw = np.where(labels < 0, 0, labels)
            raw[_border(labels)] = 255
            _voc_palette_png(folder / "SegmentationClass" / f"{name}.png", raw)
    _write_split_lists(folder / "ImageSets" / "Segmentation", names, test=True)
    return folder


def _write_pascal_aug(root, samples):
    import scipy.io

    folder = root / "VOCaug" / "dataset"
    names = _voc_names(samples)
    for split, items in samples.items():
        for name, (image, labels, _) in zip(names[split], items, strict=True):
            _save_image(folder / "img" / f"{name}.jpg", image, quality=95)
            segmentation = np.where(labels < 0, 0, labels).astype(np.uint8)
            present = np.unique(segmentation[segmentation > 0]).astype(np.uint8)
            struct = {"Segmentation": segmentation, "Boundaries": np.empty((0, 1), object)}
            struct["CategoriesPresent"] = present
            (folder / "cls").mkdir(parents=True, exist_ok=True)
            with atomic_path(folder / "cls" / f"{name}.mat", suffix=".mat") as tmp:
                scipy.io.savemat(tmp, {"GTcls": struct})
    _write_split_lists(folder, names)
    return folder


def _polygon(shape):
    x0, y0, x1, y1 = shape["box"]
    if shape["kind"] == "rectangle":
        return [float(v) for v in (x0, y0, x1 + 1, y0, x1 + 1, y1 + 1, x0, y1 + 1)]
    angles = np.linspace(0, 2 * np.pi, 24, endpoint=False)
    cx, cy, rx, ry = (x0 + x1 + 1) / 2, (y0 + y1 + 1) / 2, (x1 - x0 + 1) / 2, (y1 - y0 + 1) / 2
    return [float(v) for a in angles for v in (cx + rx * np.cos(a), cy + ry * np.sin(a))]


def _run_lengths(region):
    """COCO's uncompressed RLE (column-major runs, starting with background), as crowd annotations store it."""
    flat = np.asarray(region, np.uint8).flatten(order="F")
    changes = np.flatnonzero(np.diff(flat)) + 1
    runs = np.diff(np.concatenate([[0], changes, [flat.size]]))
    return ([0] if flat[0] else []) + runs.tolist()


def _write_coco(root, samples):
    """Polygons, one RLE crowd, overlaps, a category outside VOC's and an image under 1000 pixels."""
    from kseg.data.datasets.coco import COCO_CATEGORY_OF_VOC_CLASS

    folder = root / "coco"
    categories = sorted(set(COCO_CATEGORY_OF_VOC_CLASS[1:]) | {90})
    for split, items in samples.items():
        images, annotations = [], []
        for i, (image, _, shapes) in enumerate(items):
            image_id = 1000 * (split == "val") + i + 1
            height, width = image.shape[:2]
            file_name = f"{image_id:012d}.jpg"
            _save_image(folder / f"{split}2017" / file_name, image, quality=95)
            images.append({"id": image_id, "file_name": file_name, "height": height, "width": width})
            if i == 1:
                # A small object only: fewer than 1000 foreground pixels, so GluonCV drops the image.
                shapes = [{"class": 15, "kind": "rectangle", "box": (2, 2, 11, 11)}]
            for j, shape in enumerate(shapes):
                category = 90 if (i == 0 and j == 0) else COCO_CATEGORY_OF_VOC_CLASS[shape["class"]]
                annotation = {"id": len(annotations) + 1 + 100000 * (split == "val"), "image_id": image_id,
                              "category_id": category, "iscrowd": 0, "bbox": list(shape["box"]), "area": 1.0}
                if j == 1 and "region" in shape:
                    segmentation = {"size": [height, width], "counts": _run_lengths(shape["region"])}
                    annotation.update(iscrowd=1, segmentation=segmentation)
                else:
                    annotation["segmentation"] = [_polygon(shape)]
                annotations.append(annotation)
        document = {
            "images": images,
            "annotations": annotations,
            "categories": [{"id": c, "name": f"category{c}", "supercategory": "thing"} for c in categories],
        }
        write_atomic(folder / "annotations" / f"instances_{split}2017.json", json.dumps(document))
    return folder


def _write_cityscapes(root, samples):
    from kseg.data.datasets.cityscapes import EVALUATED_LABEL_IDS

    folder = root / "cityscapes"
    for split, items in samples.items():
        city = "aachen" if split == "train" else "frankfurt"
        for i, (image, labels, _) in enumerate(items):
            stem = f"{city}_{i:06d}_000019"
            _save_image(folder / "leftImg8bit" / split / city / f"{stem}_leftImg8bit.png", image)
            label_ids = np.where(labels < 0, 0, np.take(EVALUATED_LABEL_IDS, np.clip(labels, 0, None)))
            label_ids[:4] = 1  # ego vehicle band: a non-evaluated id
            _save_image(folder / "gtFine" / split / city / f"{stem}_gtFine_labelIds.png", label_ids.astype(np.uint8))
    return folder


def ensure_dataset(name, root, size, num_train, log=print):
    """Write kseg's procedural data set ``name`` under ``root`` unless it is there: whole, or not at all.

    It is written into a hidden staging folder in ``root`` and renamed into
    place, so a run killed while writing leaves no partial data set that the
    next run would take for the whole one. Processes that write it at the same
    time (the workers of a multi-worker run) each stage their own copy; the
    first rename wins.
    """
    import os
    import shutil
    import tempfile

    from kseg.data.datasets import get_dataset

    root = Path(root)
    try:
        get_dataset(name, split="val", root=root)
        return
    except (FileNotFoundError, ValueError):
        pass
    num_val = max(4, num_train // 4)
    log(f"Writing a procedural {name} data set ({num_train} + {num_val} images) to {root}")
    root.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=root, prefix=".synthetic-"))
    try:
        folder = Path(write_dataset(name, staging, num_train=num_train, num_val=num_val, size=(size, size), seed=1))
        top = folder.relative_to(staging).parts[0]  # VOCdevkit/VOC2012 moves as VOCdevkit
        target = root / top
        try:
            os.rename(staging / top, target)
        except OSError:
            if not target.is_dir():
                raise
            # Another process renamed its copy first; a folder that is not a whole data set is left for the
            # reader to reject with the layout it expects.
    finally:
        shutil.rmtree(staging, ignore_errors=True)


# A COCO-format instance set of its own: three categories (ids out of order), told apart by colour and shape.
SHAPE_CATEGORIES = ({"id": 7, "name": "red disc"}, {"id": 3, "name": "green box"}, {"id": 12, "name": "blue disc"})
_SHAPE_KINDS = ("ellipse", "rectangle", "ellipse")
SHAPES_FOLDER = "shapes_coco"


def _instance_scene(rng, height, width):
    """An image with 1-4 shapes that do not overlap (each mask is its whole polygon) and their annotations."""
    from pycocotools import mask as mask_utils

    image = rng.normal(110, 20, (height, width, 3))
    taken = np.zeros((height, width), bool)
    objects = []
    for _ in range(int(rng.integers(1, 5))):
        slot = int(rng.integers(len(SHAPE_CATEGORIES)))
        for _attempt in range(10):
            h, w = int(rng.integers(height // 6, height // 2)), int(rng.integers(width // 6, width // 2))
            y0, x0 = int(rng.integers(0, height - h)), int(rng.integers(0, width - w))
            if not taken[max(y0 - 2, 0) : y0 + h + 2, max(x0 - 2, 0) : x0 + w + 2].any():
                break
        else:
            continue
        shape = {"kind": _SHAPE_KINDS[slot], "box": (x0, y0, x0 + w - 1, y0 + h - 1)}
        polygon = _polygon(shape)
        region = mask_utils.decode(mask_utils.frPyObjects([polygon], height, width))[..., 0].astype(bool)
        taken |= region
        image[region] = (_PALETTE[slot] + rng.normal(0, 10, (int(region.sum()), 3))).clip(0, 255)
        objects.append({"category_id": SHAPE_CATEGORIES[slot]["id"], "segmentation": [polygon], "iscrowd": 0,
                        "bbox": [float(x0), float(y0), float(w), float(h)], "area": float(region.sum())})  # fmt: skip
    return image.clip(0, 255).astype(np.uint8), objects


def write_instance_dataset(root, num_train=32, num_val=8, size=(128, 160), seed=0):
    """Write a procedural COCO-format instance set under ``root/shapes_coco``
    (``annotations/instances_{split}2017.json``, ``{split}2017/*.jpg``) and return that folder. Images hold
    1-4 non-overlapping shapes of three categories."""
    rng = np.random.default_rng(seed)
    folder = Path(root) / SHAPES_FOLDER
    next_id = 1
    for split, count in (("train", num_train), ("val", num_val)):
        images, annotations = [], []
        for i in range(count):
            image, objects = _instance_scene(rng, *size)
            image_id = 1000 * (split == "val") + i + 1
            file_name = f"{image_id:012d}.jpg"
            _save_image(folder / f"{split}2017" / file_name, image, quality=95)
            images.append({"id": image_id, "file_name": file_name, "height": size[0], "width": size[1]})
            for obj in objects:
                annotations.append({"id": next_id, "image_id": image_id, **obj})
                next_id += 1
        document = {"images": images, "annotations": annotations, "categories": list(SHAPE_CATEGORIES)}
        write_atomic(folder / "annotations" / f"instances_{split}2017.json", json.dumps(document))
    return folder
