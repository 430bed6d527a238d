"""COCO instance segmentation evaluation as GluonCV's Mask R-CNN evaluation, scored by pycocotools.

As ``scripts/instance/mask_rcnn/eval_mask_rcnn.py``: every image is predicted
at the model's test size, detections with id >= 0 and score >= 0.001 are
kept, boxes are mapped back to the image, masks pasted with GluonCV's exact
interpolation and RLE-encoded, and COCOeval scores ``bbox`` and ``segm`` (its
default caps: 100 detections per image). The model's class names are matched
to the annotation file's categories by name, so a model fine-tuned on a
COCO-format data set of its own is scored on its own categories.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from kseg.utils.quiet import progress_bar

if TYPE_CHECKING:
    import keras

STAT_NAMES = (
    "AP", "AP50", "AP75", "APs", "APm", "APl", "AR1", "AR10", "AR100", "ARs", "ARm", "ARl",
)
LAYOUT = """\
coco/
  annotations/instances_val2017.json   (or --annotations FILE)
  val2017/000000000139.jpg ..."""


def locate(root, split="val2017", annotations=None):
    """``(annotation file, image folder)`` of a COCO layout; a clear error when a part is missing."""
    root = Path(root)
    for base in (root, root / "coco"):
        ann = Path(annotations) if annotations else base / "annotations" / f"instances_{split}.json"
        images = base / split
        if ann.is_file() and images.is_dir():
            return ann, images
    raise FileNotFoundError(f"No COCO {split} data set under {root}; expected the layout\n{LAYOUT}")


def _quiet():
    return contextlib.redirect_stdout(io.StringIO())


def detections_to_coco(instances, image_id, category_ids):
    """COCO result dicts (bbox [x, y, w, h] and RLE segmentation) of one image's :class:`Instances`."""
    from pycocotools import mask as mask_util

    results = []
    for box, class_id, score, mask in zip(
        instances.boxes, instances.class_ids, instances.scores, instances.masks, strict=True
    ):
        if int(class_id) not in category_ids:
            continue
        x1, y1, x2, y2 = (float(v) for v in box)
        rle = mask_util.encode(np.asfortranarray(mask[:, :, None]))[0]
        rle["counts"] = rle["counts"].decode("ascii")
        results.append({
            "image_id": int(image_id),
            "category_id": category_ids[int(class_id)],
            "bbox": [round(x1, 2), round(y1, 2), round(x2 - x1, 2), round(y2 - y1, 2)],
            "score": round(float(score), 3),
            "segmentation": rle,
        })
    return results


def evaluate_coco(
    model: keras.Model,
    root: str | os.PathLike,
    split: str = "val2017",
    annotations: str | os.PathLike | None = None,
    max_images: int | None = None,
    short: int | None = None,
    max_size: int | None = None,
    jit_compile: bool | None = None,
    out_dir: str | os.PathLike | None = None,
    verbose: int = 1,
) -> dict[str, Any]:
    """Predict every image of the split and return ``{"bbox": {...}, "segm": {...}, "images": N, ...}``.

    ``root`` holds ``annotations/instances_{split}.json`` and ``{split}/`` (or a
    ``coco/`` folder that does); ``annotations`` names another annotation file.
    ``max_images``: the first images by id only; ``short``/``max_size``: another
    test size than the model's. ``bbox`` and ``segm`` map :data:`STAT_NAMES` to
    COCOeval's stats (fractions, not percent). ``out_dir`` also receives
    ``detections.json`` (COCO results format) and ``metrics.json``.

    Example:
        >>> model = kseg.models.get("mask_rcnn_fpn_resnet50_v1b_coco", weights="pretrained")
        >>> report = evaluate_coco(model, "/data/coco", "val2017", max_images=50)
        >>> report["bbox"]["AP"], report["segm"]["AP"]
    """
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    from kseg.data.preprocessing import load_image
    from kseg.evaluation.instance import InstancePredictor

    annotation_file, image_dir = locate(root, split, annotations)
    with _quiet():
        coco = COCO(str(annotation_file))
    names = {c["name"]: c["id"] for c in coco.loadCats(coco.getCatIds())}
    category_ids = {i: names[name] for i, name in enumerate(model.metadata.classes) if name in names}
    image_ids = sorted(coco.getImgIds())[: max_images or None]
    predictor = InstancePredictor(model, short, max_size, score_threshold=0.001, exact_masks=True,
                                  jit_compile=jit_compile)
    results, started = [], time.perf_counter()
    progress = progress_bar(len(image_ids), unit_name="image", verbose=verbose)
    for done, image_id in enumerate(image_ids, start=1):
        info = coco.loadImgs(image_id)[0]
        instances = predictor.predict(load_image(image_dir / info["file_name"]))
        results.extend(detections_to_coco(instances, image_id, category_ids))
        progress.update(done, values=[("detections", len(instances))])
    report = {"images": len(image_ids), "detections": len(results), "seconds": time.perf_counter() - started}
    for iou_type in ("bbox", "segm"):
        report[iou_type] = _score(coco, results, image_ids, iou_type, COCOeval)
    if out_dir is not None:
        from kseg.utils.io import write_atomic

        out_dir = Path(out_dir)
        write_atomic(out_dir / "detections.json", json.dumps(results))
        write_atomic(out_dir / "metrics.json", json.dumps({"model": model.name, **report}, indent=2) + "\n")
    return report


def _score(coco, results, image_ids, iou_type, coco_eval_class):
    if not results:
        return dict.fromkeys(STAT_NAMES, 0.0)
    with _quiet():
        detections = coco.loadRes([dict(r) for r in results])
        evaluator = coco_eval_class(coco, detections, iou_type)
        evaluator.params.imgIds = image_ids
        evaluator.evaluate()
        evaluator.accumulate()
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        evaluator.summarize()
    return {name: float(value) for name, value in zip(STAT_NAMES, evaluator.stats, strict=True)}
