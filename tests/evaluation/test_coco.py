"""COCO evaluation plumbing: ground truth fed back as detections scores AP 1; layouts and errors."""

import json
import types
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from kseg.evaluation import coco as coco_eval
from kseg.evaluation.instance import Instances, resized_size
from kseg.presets.classes import COCO_DETECTION_CLASSES

REALDATA = Path(__file__).resolve().parents[3] / "shared" / "realdata" / "coco_person"
MODEL = types.SimpleNamespace(name="ground_truth", metadata=types.SimpleNamespace(classes=COCO_DETECTION_CLASSES))


def write_layout(root):
    """Two images with a person and a car each, as COCO polygons."""
    (root / "val2017").mkdir(parents=True)
    (root / "annotations").mkdir()
    images, annotations = [], []
    for image_id in (7, 3):
        Image.fromarray(np.full((60, 80, 3), 90, np.uint8)).save(root / "val2017" / f"{image_id:012d}.jpg")
        images.append({"id": image_id, "file_name": f"{image_id:012d}.jpg", "height": 60, "width": 80})
        for category, (x, y, w, h) in ((1, (5, 6, 20, 30)), (3, (40, 10 + image_id, 30, 20))):
            polygon = [x, y, x + w, y, x + w, y + h, x, y + h]
            annotations.append({"id": len(annotations) + 1, "image_id": image_id, "category_id": category,
                                "bbox": [x, y, w, h], "area": w * h, "iscrowd": 0, "segmentation": [polygon]})
    categories = [{"id": 1, "name": "person"}, {"id": 3, "name": "car"}]
    document = {"images": images, "annotations": annotations, "categories": categories}
    (root / "annotations" / "instances_val2017.json").write_text(json.dumps(document))
    return root


class GroundTruthPredictor:
    """Answers each image (in evaluate_coco's order: sorted ids) with its own annotations."""

    coco = None

    def __init__(self, *args, **kwargs):
        self.queue = sorted(self.coco.getImgIds())

    def predict(self, image):
        from pycocotools import mask as mask_util

        image_id = self.queue.pop(0)
        annotations = self.coco.loadAnns(self.coco.getAnnIds(imgIds=image_id, iscrowd=False))
        names = {c["id"]: c["name"] for c in self.coco.loadCats(self.coco.getCatIds())}
        boxes = np.array([[a["bbox"][0], a["bbox"][1], a["bbox"][0] + a["bbox"][2], a["bbox"][1] + a["bbox"][3]]
                          for a in annotations], np.float32).reshape(-1, 4)
        masks = np.array([mask_util.decode(self.coco.annToRLE(a)) for a in annotations], np.uint8)
        ids = np.array([COCO_DETECTION_CLASSES.index(names[a["category_id"]]) for a in annotations], np.int32)
        return Instances(boxes, ids, np.linspace(0.9, 0.5, len(ids)).astype(np.float32), masks,
                         COCO_DETECTION_CLASSES)


def evaluate_ground_truth(monkeypatch, root, annotations=None, out_dir=None):
    from pycocotools.coco import COCO

    annotation_file, _ = coco_eval.locate(root, annotations=annotations)
    with coco_eval._quiet():
        GroundTruthPredictor.coco = COCO(str(annotation_file))
    monkeypatch.setattr("kseg.evaluation.instance.InstancePredictor", GroundTruthPredictor)
    return coco_eval.evaluate_coco(MODEL, root, annotations=annotations, out_dir=out_dir, verbose=0)


def test_ground_truth_scores_ap_one(monkeypatch, tmp_path):
    root = write_layout(tmp_path / "coco")
    report = evaluate_ground_truth(monkeypatch, tmp_path, out_dir=tmp_path / "out")
    assert report["images"] == 2 and report["detections"] == 4
    for iou_type in ("bbox", "segm"):
        assert report[iou_type]["AP"] == pytest.approx(1.0) and report[iou_type]["AP50"] == pytest.approx(1.0)
    written = json.loads((tmp_path / "out" / "detections.json").read_text())
    assert {d["category_id"] for d in written} == {1, 3} and written[0]["bbox"][2] > 0
    assert (root / "val2017").is_dir()


def test_real_person_samples(monkeypatch):
    if not REALDATA.is_dir():
        pytest.skip(f"real COCO person samples not found in {REALDATA}")
    annotations = REALDATA / "annotations" / "person_val2017_subset.json"
    report = evaluate_ground_truth(monkeypatch, REALDATA, annotations=annotations)
    assert report["images"] == 4 and report["detections"] == 14
    assert report["segm"]["AP"] == pytest.approx(1.0) and report["bbox"]["AP"] == pytest.approx(1.0)


def test_missing_layout_names_what_is_expected(tmp_path):
    with pytest.raises(FileNotFoundError, match="instances_val2017.json"):
        coco_eval.locate(tmp_path)


def test_gluoncv_resize_rule():
    # gluoncv.data.transforms.image.resize_short_within(short=800, max_size=1333)
    assert resized_size(480, 640) == (800, 1067)
    assert resized_size(400, 1200) == (444, 1333)
    assert resized_size(427, 640, 320, 512) == (320, 480)
