"""Mask R-CNN's training forward: five finite losses on real images, GluonCV's frozen set, and a step that learns."""

from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

import kseg
from kseg.data.datasets.coco_instances import COCOInstances
from kseg.data.instance_batches import stack_examples, training_example
from kseg.data.instance_transforms import InstanceTrainTransform
from kseg.training.mask_rcnn import LOSS_NAMES, TrainingSettings, freeze_for_training, training_losses
from kseg.training.optimizer import GluonSGD, bias_l2_multipliers

COCO_PERSON = Path(__file__).resolve().parents[2].parent / "shared" / "realdata" / "coco_person"
CANVAS = (320, 512)
pytestmark = pytest.mark.isolated  # training steps peak at several GiB (conftest.py)


@pytest.fixture(scope="module")
def real_batch():
    annotations = COCO_PERSON / "annotations" / "person_val2017_subset.json"
    if not annotations.is_file():
        pytest.skip(f"the real COCO person samples are not at {COCO_PERSON}")
    data = COCOInstances(annotations, COCO_PERSON / "val2017")
    transform = InstanceTrainTransform(256, 512, seed=0)
    examples = {}
    for fpn in (False, True):
        items = []
        for index, record in enumerate(list(data)[:2]):
            sample = transform(np.asarray(Image.open(record.path).convert("RGB")), record.boxes, record.classes,
                               record.polygons, index=index)  # fmt: skip
            items.append(training_example(sample, CANVAS, fpn, max_objects=12, seed=(0, index)))
        examples[fpn] = stack_examples(items)
    return examples


def small_settings():
    return TrainingSettings(num_sample=64, max_positive=16, rpn_pre_nms=2000, rpn_post_nms=300)


@pytest.mark.parametrize("name", ["mask_rcnn_resnet18_v1b_coco", "mask_rcnn_fpn_resnet18_v1b_coco"])
def test_training_losses_are_finite_and_frozen_parts_get_no_gradient(real_batch, name):
    model = freeze_for_training(kseg.models.get(name))
    batch = real_batch[model.config.fpn]
    settings = small_settings()
    priority = tf.random.stateless_uniform([2, settings.rpn_post_nms + 12], [1, 2])
    trainable = model.trainable_variables
    assert not any("bn" in v.path or v.path.startswith(("stem", "layer1_")) for v in trainable)
    assert any(v.path.startswith("layer2_") for v in trainable) and any("rpn" in v.path for v in trainable)
    with tf.GradientTape() as tape:
        losses = training_losses(model, batch, priority, settings)
        total = tf.add_n([tf.reduce_sum(v) for v in losses.values()]) / 2
    assert sorted(losses) == sorted(LOSS_NAMES)
    for key, value in losses.items():
        assert value.shape == (2,) and np.isfinite(value.numpy()).all() and (value.numpy() > 0).all(), key
    gradients = tape.gradient(total, trainable)
    missing = [v.path for v, g in zip(trainable, gradients, strict=True) if g is None]
    assert not missing, missing
    assert all(np.isfinite(g.numpy()).all() for g in gradients)


def test_sgd_steps_on_one_batch_lower_its_loss(real_batch):
    model = freeze_for_training(kseg.models.get("mask_rcnn_fpn_resnet18_v1b_coco"))
    batch = real_batch[True]
    settings = small_settings()
    optimizer = GluonSGD(0.005, momentum=0.9, l2_decay=1e-4,
                         l2_multipliers=bias_l2_multipliers(model.trainable_variables))  # fmt: skip
    priority = tf.random.stateless_uniform([2, settings.rpn_post_nms + 12], [3, 4])

    def total_loss():
        losses = training_losses(model, batch, priority, settings)
        return tf.add_n([tf.reduce_sum(v) for v in losses.values()]) / 2

    first = float(total_loss())
    for _ in range(4):
        with tf.GradientTape() as tape:
            loss = total_loss()
        gradients = tape.gradient(loss, model.trainable_variables)
        optimizer.apply_gradients(zip(gradients, model.trainable_variables, strict=True))
    assert float(total_loss()) < first


def first_step_losses(batches, jit_compile, precision="float32"):
    import keras

    from kseg.training.mask_rcnn import MaskRCNNTraining

    policy = keras.config.dtype_policy()
    keras.config.set_dtype_policy(precision)
    try:
        keras.utils.set_random_seed(11)
        trainer = MaskRCNNTraining(kseg.models.get("mask_rcnn_fpn_resnet18_v1b_coco", classes=["a", "b", "c"]))
        trainer.compile(optimizer=GluonSGD(0.01), jit_compile=jit_compile)
        history = trainer.fit(batches, steps_per_epoch=1, epochs=1, verbose=0, shuffle=False)
    finally:
        keras.config.set_dtype_policy(policy)
    return {key: values[0] for key, values in history.history.items()}


@pytest.fixture(scope="module")
def shape_batches(shapes):
    from kseg.training.data import instance_training_dataset

    data = COCOInstances(shapes / "annotations" / "instances_train2017.json", shapes / "train2017")
    return instance_training_dataset(data, 2, 1, InstanceTrainTransform(64, 80), (64, 96), True, 4, seed=0)


@pytest.mark.large
def test_the_whole_training_step_compiles_with_xla(shape_batches):
    """Static shapes end to end (XLA compiles the step once per canvas, as on GPUs and TPUs); the same losses."""
    eager = first_step_losses(shape_batches, jit_compile=False)
    compiled = first_step_losses(shape_batches, jit_compile=True)
    for key, value in eager.items():
        assert compiled[key] == pytest.approx(value, rel=1e-4), key


def test_a_bfloat16_step_keeps_float32_losses(shape_batches):
    from kseg.ops.runtime import bfloat16_hardware

    if not bfloat16_hardware():
        pytest.skip("this CPU has no bfloat16 arithmetic (AVX512-BF16 or AMX)")
    exact = first_step_losses(shape_batches, jit_compile=False)
    mixed = first_step_losses(shape_batches, jit_compile=False, precision="mixed_bfloat16")
    for key, value in exact.items():
        assert np.isfinite(mixed[key]) and mixed[key] == pytest.approx(value, rel=0.1, abs=0.02), key


def test_float16_training_scales_its_loss():
    """Under mixed_float16 Keras wraps GluonSGD in its dynamic loss scaling (float16 gradients of the five losses
    would underflow otherwise), and the losses stay float32. No float16 step is run here: this CPU emulates
    float16 arithmetic (a test taking one step of the tiny model in float32 and one in float16 ran 7.7 minutes)."""
    import keras

    from kseg.training.mask_rcnn import MaskRCNNTraining

    policy = keras.config.dtype_policy()
    keras.config.set_dtype_policy("mixed_float16")
    try:
        trainer = MaskRCNNTraining(kseg.models.get("mask_rcnn_fpn_resnet18_v1b_coco", classes=["a", "b", "c"]))
        trainer.compile(optimizer=GluonSGD(0.01))
    finally:
        keras.config.set_dtype_policy(policy)
    assert isinstance(trainer.optimizer, keras.optimizers.LossScaleOptimizer)
    assert isinstance(trainer.optimizer.inner_optimizer, GluonSGD)
    assert trainer.detector.compute_dtype == "float16"
    assert trainer.detector.get_layer("box_head").get_layer("class_predictor").compute_dtype == "float32"
