"""Mask R-CNN parity with GluonCV: its own ``.params`` and outputs on real COCO images.

``tools/gluoncv_rcnn_reference.py`` (side venv) builds each zoo model with
seeded, calibrated random weights, runs GluonCV on the real person samples
and records every stage. kseg loads the file and must give: features and RPN
outputs to 1e-5 relative; the heads' outputs on GluonCV's own RoIs to 1e-5;
final detections matching GluonCV's (same class, box IoU > 0.99, score within
1e-4) for at least 99% of the top 100; masks, once pasted, with IoU > 0.99.

``KSEG_PARITY_SEED``, ``KSEG_RCNN_PARITY_SIZE`` (``SHORTxMAX``, default
``320x512``), ``KSEG_RCNN_PARITY_IMAGES``, ``KSEG_RCNN_PARITY_ROIS`` and
``KSEG_PARITY_CACHE`` choose the seed, test size, images, test-time counts and cache.

Both sides keep ``KSEG_RCNN_PARITY_ROIS`` (default 300) proposals and detections instead of GluonCV's 1000:
the same weights and the same code (the counts are the buffers' sizes of the proposal NMS and the final
top-k), at a third of the cost of the box and mask branches on both sides. ``KSEG_RCNN_PARITY_ROIS=1000``
runs GluonCV's own test settings.
"""

import os
import subprocess
from pathlib import Path

import numpy as np
import pytest

import kseg
from kseg.models.mask_rcnn import MaskRCNN, MaskRCNNConfig
from kseg.ops import box_iou, paste_masks
from kseg.weights.mxnet_params import read_params

REPO = Path(__file__).resolve().parents[2]
REALDATA = REPO.parent / "shared" / "realdata" / "coco_person" / "val2017"
SEED = int(os.environ.get("KSEG_PARITY_SEED", "0"))
SHORT, MAX_SIZE = (int(v) for v in os.environ.get("KSEG_RCNN_PARITY_SIZE", "320x512").split("x"))
# 640x425 -> 482x320 at the default size, an odd width. More images: KSEG_RCNN_PARITY_IMAGES=a.jpg,b.jpg.
IMAGES = tuple(os.environ.get("KSEG_RCNN_PARITY_IMAGES", "000000000785.jpg").split(","))
ROIS = int(os.environ.get("KSEG_RCNN_PARITY_ROIS", "300"))


@pytest.fixture(scope="session")
def rcnn_reference_dir(tmp_path_factory):
    root = os.environ.get("KSEG_PARITY_CACHE")
    base = Path(root) if root else tmp_path_factory.mktemp("rcnn_parity")
    path = base / f"rcnn_seed{SEED}_{SHORT}x{MAX_SIZE}_{ROIS}rois_{'_'.join(Path(i).stem for i in IMAGES)}"
    path.mkdir(parents=True, exist_ok=True)
    return path


def gluoncv_reference(side_python, directory, name):
    params, outputs = directory / f"{name}.params", directory / f"{name}.npz"
    if not (params.is_file() and outputs.is_file()):
        command = [
            side_python, str(REPO / "tools" / "gluoncv_rcnn_reference.py"), "--models", name, "--seed", str(SEED),
            "--short", str(SHORT), "--max-size", str(MAX_SIZE), "--rois", str(ROIS), "--out", str(directory),
            "--no-check",
            "--images", *(str(REALDATA / image) for image in IMAGES),
        ]  # fmt: skip
        result = subprocess.run(command, capture_output=True, text=True)
        assert result.returncode == 0, f"GluonCV failed for {name}:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
    return params, np.load(outputs)


def relative_error(actual, expected):
    return float(np.linalg.norm(np.asarray(actual) - expected) / np.linalg.norm(expected))


def nhwc(array):
    return np.transpose(array, (0, 2, 3, 1))


def matched(ours_ids, ours_scores, ours_boxes, ids, scores, boxes, top=100):
    """Of GluonCV's top ``top`` valid detections, which have a kseg detection of the same class with
    box IoU > 0.99 (or the same corners, for zero-area boxes) and score within 1e-4; returns
    (fraction, [(gluoncv index, kseg index)])."""
    valid = np.flatnonzero(ids >= 0)[:top]
    iou = np.asarray(box_iou(boxes[valid], ours_boxes))
    # Zero-area boxes (from zero-area RoIs at the image border) have no IoU: compare their corners.
    same_corners = np.abs(boxes[valid][:, None, :] - ours_boxes[None]).max(-1) < 1e-2
    pairs = []
    for row, index in enumerate(valid):
        candidates = np.flatnonzero(
            (ours_ids == ids[index])
            & ((iou[row] > 0.99) | same_corners[row])
            & (np.abs(ours_scores - scores[index]) <= 1e-4)
        )
        if candidates.size:
            pairs.append((index, int(candidates[np.argmax(iou[row][candidates])])))
    return len(pairs) / max(len(valid), 1), pairs


@pytest.mark.gluoncv
@pytest.mark.parity
@pytest.mark.large
@pytest.mark.parametrize("name", [  # C4 R50/R101 take GiBs that a worker would keep (conftest.py)
    pytest.param(name, marks=pytest.mark.isolated) if "fpn" not in name and "18" not in name else name
    for name in kseg.models.list_models("instance")
])  # fmt: skip
def test_mask_rcnn_matches_gluoncv(side_python, rcnn_reference_dir, name):
    if not REALDATA.is_dir():
        pytest.skip(f"real COCO samples not found in {REALDATA}")
    params, reference = gluoncv_reference(side_python, rcnn_reference_dir, name)
    preset = kseg.presets.get_preset(name)
    config = MaskRCNNConfig(**{**preset.architecture, "rpn_post_nms": ROIS, "max_detections": ROIS})
    model = MaskRCNN(config, metadata=preset.model_metadata(), name=name)
    kseg.models.load_model_weights(model, params, strict=True)
    gluoncv_count = sum(a.size for key, a in read_params(params, strip_prefixes=True).items() if "anchor" not in key)
    assert model.count_params() == kseg.presets.get_preset(name).metadata.num_params == gluoncv_count
    levels = ("p2", "p3", "p4", "p5", "p6") if model.config.fpn else ("c4",)
    for i in range(len(IMAGES)):
        key = f"img{i}/"
        x = nhwc(reference[key + "input"])
        maps = model.feature_maps(x)
        for level, ours in zip(levels, maps, strict=True):
            error = relative_error(ours, nhwc(reference[f"{key}features/{level}"]))
            assert error < 1e-5, f"{name} image {i} {level}: relative error {error:.2e}"

        # RPN: the proposals (score order) and, on GluonCV's own RoIs, the box head.
        rpn_scores, rpn_boxes = (np.asarray(t)[0] for t in model.proposals(maps, x.shape[1:3]))
        expected_scores, expected_boxes = reference[key + "rpn_scores"], reference[key + "rpn_boxes"]
        assert relative_error(rpn_scores, expected_scores) < 1e-5
        valid = expected_scores > 0
        # Near-tied scores may swap places: each of GluonCV's proposals must be among kseg's.
        best = np.asarray(box_iou(expected_boxes[valid], rpn_boxes)).max(axis=1)
        assert np.mean(best > 0.99) >= 0.99, f"{name}: {np.mean(best > 0.99):.1%} of GluonCV's proposals found"

        rois = reference[key + "rpn_boxes"][None].astype(np.float32)
        heads = model.box_head(model.pool(maps, rois))
        probabilities = np.asarray(heads["class_logits"])
        probabilities = np.exp(probabilities - probabilities.max(-1, keepdims=True))
        probabilities /= probabilities.sum(-1, keepdims=True)
        assert relative_error(probabilities, reference[key + "cls_prob"]) < 1e-5
        deltas = np.asarray(heads["box_deltas"]).reshape(-1, 80, 4)
        assert relative_error(deltas, reference[key + "box_pred"]) < 1e-5

        # End to end, as model(x) runs it (its stages on kseg's own proposals): detections, then the masks of
        # the detections matched to GluonCV's top 100 (model(x) computes all of them: the same code, 3x the time).
        detected = model.detect(maps, rpn_boxes[None])
        outputs = {k: np.asarray(v)[0] for k, v in zip(("class_ids", "scores", "boxes"), detected, strict=True)}
        ids, scores, boxes = reference[key + "ids"], reference[key + "scores"], reference[key + "bboxes"]
        fraction, pairs = matched(outputs["class_ids"], outputs["scores"], outputs["boxes"], ids, scores, boxes)
        assert fraction >= 0.99, f"{name} image {i}: {fraction:.1%} of GluonCV's top 100 matched"
        assert len(pairs) >= 10, f"{name}: too few detections to compare ({len(pairs)})"
        rows = sorted({ours for _, ours in pairs})
        masks = np.asarray(model.masks(maps, outputs["boxes"][rows][None], outputs["class_ids"][rows][None]))[0]
        outputs["masks"] = dict(zip(rows, masks, strict=True))
        scale = float(reference[key + "scale"])
        height, width = (int(v) for v in reference[key + "orig_size"])
        pasted = reference[key + "masks_pasted"]
        for theirs, ours in pairs:
            if theirs >= len(pasted):
                continue
            raw_error = np.abs(outputs["masks"][ours] - reference[key + "masks_raw"][theirs]).max()
            assert raw_error < 5e-4, f"{name}: raw mask of detection {theirs} differs by {raw_error:.2e}"
            mask = paste_masks(outputs["masks"][ours][None], outputs["boxes"][ours][None] / scale, (width, height))[0]
            union = np.logical_or(mask, pasted[theirs]).sum()
            if union:
                assert np.logical_and(mask, pasted[theirs]).sum() / union > 0.99
