"""Palettes, colour masks and overlays for segmentation results.

The palettes are GluonCV's (``gluoncv.utils.viz.get_color_pallete``), which
are the data sets' own: the VOC bit colormap, the ADE20K SceneParsing colours
(index 0 "other" is black, 1..150 the classes) and the Cityscapes trainId
colours. :func:`colorize` reproduces ``get_color_pallete`` exactly, quirks
included: for ade20k it adds 1 to the class index, for VOC it maps -1 to 255.
``dataset=None`` (a model fine-tuned on classes of its own) takes the VOC
colormap, which has a colour for any of 256 classes.
"""

import numpy as np
from PIL import Image

from kseg.presets.datasets import CLASSES_BY_DATASET, DATASET_KEYS
from kseg.utils.io import atomic_path

# RGB triplets, class by class (ADE20K: classes 1..150; Cityscapes: trainIds 0..18).
_ADE20K_COLORS = bytes.fromhex(
    '787878b4787806e6e650323204c8037878508c8c8ccc05ffe6e6e604fa07e005ffebff0796053d78784608ff33ff0652'
    '8fff8cccff04ff3307cc46030066c83de6faff06330b66ffff0747ff09e00907e6dcdcdcff095c7009ff08ffd607ffe0'
    'ffb8060aff47ff290a07ffffe0ff086608ffff3d06ffc207ff7a0800ff14ff0829ff05990633ffeb0cffa0961400a3ff'
    '8c8c8cfa0a0f14ff001fff00ff1f00ffe00099ff000000ffff470000ebff00adff1f00ff0bc8c8ff520000fff5003dff'
    '00ff7000ff85ff0000ffa300ff6600c2ff00008fff33ff000052ff00ff2900ffad0a00ffadff0000ff99ff5c00ff00ff'
    'ff00f5ff0066ffad00ff0014ffb8b8001fff00ff3d0047ffff00cc00ffc200ff52000aff0070ff3300ff00c2ff007aff'
    '00ffa3ff990000ff0aff70008fff005200ffa3ff00ffeb0008b8aa8500ff00ff5cb800ffff001f00b8ff00d6ffff0070'
    '5cff0000e0ff70e0ff46b8a0a300ff9900ff47ff00ff00a3ffcc00ff008f00ffeb85ff00ff00ebf500ffff007afff500'
    '0abed4d6ff0000ccff1400ffffff000099ff0029ff00ffcc2900ff29ff00ad00ff00f5ff4700ff7a00ff00ffb8005cff'
    'b8ff000085ffffd60019c2c266ff005c00ff'
)
_CITYSCAPES_COLORS = bytes.fromhex(
    '804080f423e846464666669cbe9999999999faaa1edcdc006b8e2398fb980082b4dc143cff000000008e000046003c64'
    '0050640000e6770b20'
)


def voc_colormap(size=256):
    """The VOC colormap: the bits of the index spread over R, G, B from the high bit down."""
    colors = np.zeros((size, 3), np.uint8)
    for index in range(size):
        value, shift = index, 7
        while value:
            for channel in range(3):
                colors[index, channel] |= ((value >> channel) & 1) << shift
            value >>= 3
            shift -= 1
    return colors


def palette(dataset):
    """The ``[N, 3]`` uint8 palette that :func:`colorize` puts on ``dataset``'s masks.

    VOC-style data sets have 256 entries; ADE20K 151 (0 = other); Cityscapes 19 (trainIds).
    """
    if dataset == "ade20k":
        return np.concatenate([np.zeros((1, 3), np.uint8), np.frombuffer(_ADE20K_COLORS, np.uint8).reshape(-1, 3)])
    if dataset == "citys":
        return np.frombuffer(_CITYSCAPES_COLORS, np.uint8).reshape(-1, 3).copy()
    if dataset is None or dataset in DATASET_KEYS:
        return voc_colormap()
    raise ValueError(f"Unknown dataset {dataset!r}; palettes exist for {', '.join(DATASET_KEYS)}")


def _indices(mask):
    mask = np.asarray(mask)
    if mask.ndim == 3 and mask.shape[-1] == 1:
        mask = mask[..., 0]
    if mask.ndim != 2 or not np.issubdtype(mask.dtype, np.integer):
        raise ValueError(f"A mask is an integer array [H, W] of class indices, got {mask.dtype} {mask.shape}")
    return mask.astype(np.int64)


def colorize(mask, dataset):
    """A palettised ``PIL.Image`` (mode "P") of a class-index mask, as GluonCV's ``get_color_pallete``."""
    mask = _indices(mask)
    colors = palette(dataset)
    high = 254 if dataset == "ade20k" else 255  # the largest index that fits a uint8 pixel
    if mask.size and (mask.min() < -1 or mask.max() > high):
        raise ValueError(
            f"{dataset or 'VOC-palette'} masks hold -1 (ignore) or classes 0..{high}, got {mask.min()}..{mask.max()}"
        )
    if dataset == "ade20k":
        mask = mask + 1
    elif dataset in ("pascal_voc", "pascal_aug"):
        mask = np.where(mask == -1, 255, mask)
    image = Image.fromarray(mask.astype(np.uint8), mode="P")
    image.putpalette(colors.reshape(-1).tolist())
    return image


def color_mask(mask, dataset):
    """uint8 RGB ``[H, W, 3]`` colours of a class-index mask; ignored pixels (< 0) are black."""
    mask = _indices(mask)
    colors = palette(dataset)
    if dataset == "ade20k":
        colors = colors[1:]  # class c has colour c + 1
    if mask.max(initial=-1) >= len(colors):
        raise ValueError(f"Class {mask.max()} has no colour in the {dataset} palette ({len(colors)} colours)")
    return np.where(mask[..., None] >= 0, colors[np.clip(mask, 0, None)], 0).astype(np.uint8)


def overlay(image, mask, dataset, alpha=0.5):
    """Blend the colour mask over a uint8 RGB image; ignored pixels keep the image."""
    image = np.asarray(image)
    if image.dtype != np.uint8 or image.ndim != 3 or image.shape[-1] != 3:
        raise ValueError(f"overlay takes a uint8 RGB image [H, W, 3], got {image.dtype} {image.shape}")
    mask = _indices(mask)
    if mask.shape != image.shape[:2]:
        raise ValueError(f"Mask {mask.shape} and image {image.shape[:2]} differ in size")
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must lie in [0, 1], got {alpha}")
    blended = (1.0 - alpha) * image + alpha * color_mask(mask, dataset)
    blended = np.where(mask[..., None] >= 0, np.round(blended), image)
    return blended.astype(np.uint8)


def legend(mask, dataset, class_names=None):
    """(name, RGB colour, pixel share) of every class in ``mask``, most frequent first."""
    mask = _indices(mask)
    if class_names is None and dataset is None:
        raise ValueError("legend needs class_names when the data set is not one of the zoo's")
    names = class_names or CLASSES_BY_DATASET[dataset]
    labelled = mask[mask >= 0]
    classes, counts = np.unique(labelled, return_counts=True)
    colors = color_mask(classes[None], dataset)[0]
    order = np.argsort(-counts, kind="stable")
    return [(names[classes[i]], tuple(int(c) for c in colors[i]), counts[i] / max(mask.size, 1)) for i in order]


def save_png(path, image):
    """Write a PIL image or a uint8 array as PNG, atomically."""
    if not isinstance(image, Image.Image):
        image = Image.fromarray(np.asarray(image))
    with atomic_path(path, suffix=".png") as tmp:
        image.save(tmp, format="PNG")


def instance_colors(count, seed=0):
    """``count`` well-separated RGB colours (golden-ratio hues), one per detection."""
    import colorsys

    hues = (seed * 0.17 + np.arange(count) * 0.618033988749895) % 1.0
    return np.array([colorsys.hsv_to_rgb(h, 0.85, 0.95) for h in hues]).reshape(-1, 3) * 255


def draw_instances(image, boxes, masks, labels, scores, alpha=0.5):
    """The detections over a uint8 RGB image: each mask tinted, its box outlined and labelled "name 0.87"."""
    from PIL import ImageDraw

    image = np.asarray(image)
    if image.dtype != np.uint8 or image.ndim != 3 or image.shape[-1] != 3:
        raise ValueError(f"draw_instances takes a uint8 RGB image [H, W, 3], got {image.dtype} {image.shape}")
    colors = instance_colors(len(scores))
    canvas = image.astype(np.float32)
    for mask, color in zip(masks, colors, strict=True):
        region = np.asarray(mask, bool)
        canvas[region] = (1.0 - alpha) * canvas[region] + alpha * color
    picture = Image.fromarray(np.round(canvas).astype(np.uint8))
    draw = ImageDraw.Draw(picture)
    for box, label, score, color in zip(boxes, labels, scores, colors, strict=True):
        outline = tuple(int(c) for c in color)
        x1, y1, x2, y2 = (float(v) for v in box)
        draw.rectangle((x1, y1, x2, y2), outline=outline, width=2)
        text = f"{label} {score:.2f}"
        left, top, right, bottom = draw.textbbox((x1, y1), text)
        draw.rectangle((left, top - (bottom - top) - 2, right + 2, top), fill=outline)
        draw.text((x1 + 1, top - (bottom - top) - 2), text, fill=(0, 0, 0))
    return np.asarray(picture)
