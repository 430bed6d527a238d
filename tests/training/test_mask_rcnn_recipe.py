"""Mask R-CNN through the shared training loop: a COCO-format set of its own categories, COCO evaluation, the run
folder, and a run stopped and resumed ending with the weights of an uninterrupted one."""

import json

import numpy as np
import pytest
from test_case import weights_in_file

import kseg
from kseg.data.synthetic import SHAPE_CATEGORIES
from kseg.training import TrainConfig, train

MODEL = "mask_rcnn_fpn_resnet18_v1b_coco"
pytestmark = pytest.mark.isolated  # a training run peaks at a few GiB (conftest.py)


def tiny(root, run_dir, **changes):
    settings = dict(model_zoo=MODEL, dataset_dir=str(root), run_dir=str(run_dir), epochs=1, batch_size=2, short=64,
                    max_size=80, lr=0.01, warmup_steps=2, precision="float32", val_every=0, seed=5)  # fmt: skip
    return TrainConfig(**{**settings, **changes})


def test_a_run_trains_on_its_own_categories_and_scores_them(shapes, tmp_path):
    lines = []
    report = train(tiny(shapes, tmp_path / "run", val_every=1), log=lines.append)
    assert report.finished and report.steps == 2
    names = [c["name"] for c in SHAPE_CATEGORIES]
    assert any(f"Training on the data set's 3 categories: {', '.join(names)}" in line for line in lines)
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert set(metrics["bbox"]) >= {"AP", "AP50", "AR100"} and set(metrics["segm"]) >= {"AP", "AP50"}
    assert metrics["gluoncv_reported"]["mask AP"] == 30.4 and metrics["images"] == 2
    history = json.loads((tmp_path / "run" / "validation.json").read_text())
    assert [entry["epoch"] for entry in history] == [1]
    # The last epoch's validation scored the final weights: metrics.json takes it instead of a second COCOeval.
    assert metrics["bbox"] == history[-1]["bbox"] and metrics["segm"] == history[-1]["segm"]
    assert sum("COCO val (2 images)" in line for line in lines) == 2, lines
    assert any("epoch 1's validation: the same weights" in line for line in lines), lines
    # The weights are the detector's, for the data set's classes: kseg.models.get loads them back.
    model = kseg.models.get(MODEL, weights=str(report.weights), classes=names)
    assert model.metadata.classes == tuple(names)


def test_a_stopped_run_resumes_to_the_weights_of_an_uninterrupted_one(shapes, tmp_path):
    whole = train(tiny(shapes, tmp_path / "whole", epochs=2, deterministic=True))
    stopped = train(tiny(shapes, tmp_path / "parts", epochs=2, deterministic=True, stop_after_steps=3))
    assert not stopped.finished and stopped.steps == 3
    resumed = train(tiny(shapes, tmp_path / "parts", epochs=2, deterministic=True))
    assert resumed.finished and resumed.steps == whole.steps == 4
    a, b = weights_in_file(whole.weights), weights_in_file(resumed.weights)
    assert sorted(a) == sorted(b)
    for name in a:
        np.testing.assert_array_equal(a[name], b[name], err_msg=name)


def test_mask_rcnn_options_are_checked_before_training(shapes, tmp_path):
    with pytest.raises(ValueError, match="lr_decay_epochs must be numbers"):
        tiny(shapes, tmp_path, lr_decay_epochs=("x",))
    with pytest.raises(FileNotFoundError, match="nor a GluonCV ImageNet backbone"):
        train(tiny(shapes, tmp_path, pretrained_backbone="resnet18_v2"))


def test_the_rcnn_sampler_counts_come_from_the_options(shapes, tmp_path):
    lines = []
    train(tiny(shapes, tmp_path / "a", rcnn_samples=64, dry_run=True), log=lines.append)
    assert any("RCNN sampler 64 RoIs (at most 16 positive)" in line for line in lines), lines  # GluonCV's 0.25
    lines.clear()
    train(tiny(shapes, tmp_path / "b", rcnn_positives=8, dry_run=True), log=lines.append)
    assert any("RCNN sampler 512 RoIs (at most 8 positive)" in line for line in lines), lines  # FPN's 512 kept
    with pytest.raises(ValueError, match="rcnn_positives \\(40\\) must not exceed rcnn_samples \\(32\\)"):
        tiny(shapes, tmp_path, rcnn_samples=32, rcnn_positives=40)
    with pytest.raises(ValueError, match="must not exceed the 512 RoIs"):
        train(tiny(shapes, tmp_path / "c", rcnn_positives=600, dry_run=True))


def test_init_from_a_zoo_entry_reuses_the_rows_of_its_classes_kept_by_name(shapes, tmp_path, monkeypatch):
    """--init-from the zoo entry with --reuse-classes: categories named as COCO's ("dog", "person") start from its
    rows (background too); "unicorn" starts afresh; the log says which were reused."""
    import shutil

    from kseg.presets.datasets import COCO_DETECTION_CLASSES
    from kseg.training.trainer import training_task

    own = tmp_path / "own"
    shutil.copytree(shapes, own)
    for document in (own / "annotations").glob("*.json"):
        data = json.loads(document.read_text())
        for category, name in zip(data["categories"], ("dog", "unicorn", "person"), strict=True):
            category["name"] = name
        document.write_text(json.dumps(data))
    published = kseg.models.get(MODEL)
    published.save_weights(tmp_path / "published.weights.h5")
    monkeypatch.setattr("kseg.models.registry.pretrained_weights", lambda name: tmp_path / "published.weights.h5")
    lines = []
    task = training_task(tiny(own, tmp_path / "run", init_from=MODEL, reuse_classes=True), lines.append)
    task.datasets()  # the task takes its classes from the data set
    model = task.build_model()
    task.initialize(model)
    # The reader orders the categories by their COCO ids (3, 7, 12).
    classes = list(model.detector.metadata.classes)
    assert sorted(classes) == ["dog", "person", "unicorn"]
    assert any("class rows of 2 of 3 classes reused" in line for line in lines)
    old = published.box_head.get_layer("class_predictor").get_weights()[0]
    new = model.detector.box_head.get_layer("class_predictor").get_weights()[0]
    np.testing.assert_array_equal(new[:, 0], old[:, 0])  # background
    for name in ("dog", "person"):
        np.testing.assert_array_equal(new[:, 1 + classes.index(name)], old[:, 1 + COCO_DETECTION_CLASSES.index(name)])
    assert not np.array_equal(new[:, 1 + classes.index("unicorn")], old[:, 1 + classes.index("unicorn")])
    with pytest.raises(ValueError, match="reuse_classes reuses --init-from's class rows"):
        tiny(own, tmp_path, reuse_classes=True)
