"""pixAcc/mIoU against GluonCV's own SegmentationMetric, and the Keras metrics against the numpy one."""

import json
import subprocess
import sys
import textwrap

import keras
import numpy as np
import pytest

from kseg.losses import SegmentationCrossEntropy
from kseg.metrics import ConfusionMatrix, MeanIoU, PixelAccuracy

NUM_CLASSES = 6


def batches(seed=0, count=3):
    """Random labels with ignore pixels; class 4 never appears, class 5 is only ever predicted."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(count):
        labels = rng.choice([-1, 0, 1, 2, 3], size=(2, 13, 17), p=[0.2, 0.3, 0.2, 0.2, 0.1])
        logits = rng.normal(size=(2, 13, 17, NUM_CLASSES)).astype(np.float32)
        logits[..., 4] -= 100.0
        logits[labels == 1, 1] += 1.5  # some agreement, so IoUs are not all tiny
        out.append((labels.astype(np.int32), logits))
    return out


GLUONCV_SCRIPT = textwrap.dedent(
    """
    import json, sys
    import mxnet as mx, numpy as np
    from gluoncv.utils.metrics import SegmentationMetric
    data = np.load(sys.argv[1])
    metric = SegmentationMetric(int(sys.argv[2]))
    for i in range(len(data.files) // 2):
        # GluonCV's layout: NCHW scores, NHW targets; NDArrays (a list would run in threads).
        metric.update(mx.nd.array(data[f"labels_{i}"]), mx.nd.array(data[f"logits_{i}"].transpose(0, 3, 1, 2)))
    pix_acc, miou = metric.get()
    iou = 1.0 * metric.total_inter / (np.spacing(1) + metric.total_union)
    print(json.dumps({"pixAcc": float(pix_acc), "mIoU": float(miou), "IoU": iou.tolist()}))
    """
)


@pytest.mark.gluoncv
def test_confusion_matrix_equals_gluoncv_segmentation_metric(side_python, tmp_path):
    data = batches()
    arrays = {}
    for i, (labels, logits) in enumerate(data):
        arrays[f"labels_{i}"], arrays[f"logits_{i}"] = labels, logits
    np.savez(tmp_path / "batches.npz", **arrays)
    result = subprocess.run(
        [side_python, "-c", GLUONCV_SCRIPT, str(tmp_path / "batches.npz"), str(NUM_CLASSES)],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    expected = json.loads(result.stdout.strip().splitlines()[-1])

    matrix = ConfusionMatrix(NUM_CLASSES)
    for labels, logits in data:
        matrix.update(labels, logits)
    got = matrix.result()
    assert got["pixAcc"] == pytest.approx(expected["pixAcc"], rel=1e-12)
    assert got["mIoU"] == pytest.approx(expected["mIoU"], rel=1e-12)
    np.testing.assert_allclose(got["IoU"], expected["IoU"], rtol=1e-12)
    assert got["IoU"][4] == 0.0 and got["IoU"][5] == 0.0  # absent, and predicted-only, classes count 0
    assert 0.0 < got["mIoU"] < got["pixAcc"] < 1.0


def test_ignored_pixels_never_count():
    labels = np.array([[-1, -1, 0, 1]])
    predictions = np.array([[1, 1, 0, 0]])
    result = ConfusionMatrix(2).update(labels, predictions).result(["a", "b"])
    assert result["pixAcc"] == pytest.approx(0.5)
    assert result["IoU"]["a"] == pytest.approx(0.5) and result["IoU"]["b"] == 0.0


def test_merge_equals_one_pass():
    data = batches(seed=1)
    one, parts = ConfusionMatrix(NUM_CLASSES), [ConfusionMatrix(NUM_CLASSES) for _ in data]
    for (labels, logits), part in zip(data, parts, strict=True):
        one.update(labels, logits)
        part.update(labels, logits)
    merged = parts[0].merge(parts[1]).merge(parts[2])
    np.testing.assert_array_equal(merged.matrix, one.matrix)


@pytest.mark.parametrize(
    "labels, predictions, error",
    [
        (np.zeros((2, 3), np.int32), np.zeros((3, 2), np.int64), "do not match"),
        (np.full((2, 2), 7), np.zeros((2, 2), np.int64), "out of range"),
        (np.zeros((2, 2), np.int32), np.full((2, 2), 9), r"must lie in \[0, 6\)"),
        (np.zeros((2, 2), np.int32), np.zeros((2, 2, 4), np.float32), "4 classes"),
        (np.zeros((2, 2), np.float32), np.zeros((2, 2), np.int64), "integers"),
    ],
)
def test_bad_input_is_named(labels, predictions, error):
    with pytest.raises((ValueError, TypeError), match=error):
        ConfusionMatrix(NUM_CLASSES).update(labels, predictions)


def test_keras_metrics_equal_the_numpy_matrix_eagerly():
    matrix, miou, pix = ConfusionMatrix(NUM_CLASSES), MeanIoU(NUM_CLASSES), PixelAccuracy(NUM_CLASSES)
    for labels, logits in batches():
        matrix.update(labels, logits)
        miou.update_state(labels[..., None], logits)  # [B, H, W, 1] labels too
        pix.update_state(labels, logits)
    np.testing.assert_array_equal(miou.confusion_matrix(), matrix.matrix)
    assert float(miou.result()) == pytest.approx(matrix.mean_iou(), rel=1e-6)
    assert float(pix.result()) == pytest.approx(matrix.pixel_accuracy(), rel=1e-6)
    assert miou.result_dict()["IoU"] == pytest.approx(matrix.iou().tolist(), rel=1e-12)
    miou.reset_state()
    assert miou.confusion_matrix().sum() == 0


def test_keras_metrics_reject_mismatched_sizes():
    with pytest.raises(ValueError, match="label's height and width"):
        MeanIoU(NUM_CLASSES).update_state(np.zeros((1, 4, 4), np.int32), np.zeros((1, 8, 8, NUM_CLASSES)))


def tiny_two_output_model():
    """Logits and aux logits from a 1x1 conv, as a kseg model with aux returns them."""
    inputs = keras.Input((None, None, 3))
    logits = keras.layers.Conv2D(NUM_CLASSES, 1, name="logits")(inputs)
    aux = keras.layers.Conv2D(NUM_CLASSES, 1, name="aux_logits")(inputs)
    return keras.Model(inputs, {"logits": logits, "aux_logits": aux})


def test_keras_metrics_inside_evaluate_and_fit_under_xla():
    """Attached to the "logits" output only; evaluate and fit (learning rate 0: fixed predictions) under XLA."""
    model = tiny_two_output_model()
    miou, pix = MeanIoU(NUM_CLASSES), PixelAccuracy(NUM_CLASSES)
    model.compile(
        optimizer=keras.optimizers.SGD(0.0),
        loss={"logits": SegmentationCrossEntropy(), "aux_logits": SegmentationCrossEntropy()},
        metrics={"logits": [miou, pix]},
        jit_compile=True,
    )
    rng = np.random.default_rng(3)
    images = rng.normal(size=(6, 9, 11, 3)).astype(np.float32)
    labels = rng.integers(-1, NUM_CLASSES, (6, 9, 11)).astype(np.int32)
    targets = {"logits": labels, "aux_logits": labels}
    results = model.evaluate(images, targets, batch_size=4, verbose=0, return_dict=True)  # a last batch of 2
    assert model.jit_compile is True
    assert not any(key.startswith("aux_logits_") and key != "aux_logits_loss" for key in results)
    expected = ConfusionMatrix(NUM_CLASSES).update(labels, model.predict(images, verbose=0)["logits"])
    np.testing.assert_array_equal(miou.confusion_matrix(), expected.matrix)
    assert results["logits_mIoU"] == pytest.approx(expected.mean_iou(), rel=1e-6)
    assert results["logits_pixAcc"] == pytest.approx(expected.pixel_accuracy(), rel=1e-6)
    history = model.fit(images, targets, batch_size=4, epochs=1, verbose=0, shuffle=False)
    np.testing.assert_array_equal(miou.confusion_matrix(), expected.matrix)  # reset at the epoch's start
    assert history.history["logits_mIoU"][0] == pytest.approx(expected.mean_iou(), rel=1e-6)


def test_keras_counts_stay_exact_past_float32():
    metric = MeanIoU(2)
    metric.matrix.assign([[2.0**24, 0.0], [0.0, 0.0]])
    metric.update_state(np.zeros((1, 1, 1), np.int32), np.array([[[[1.0, 0.0]]]], np.float32))
    assert metric.confusion_matrix()[0, 0] == 2**24 + 1  # float32 would have stayed at 2^24


def test_keras_metric_drops_the_ignore_label_and_round_trips_its_config():
    labels = np.array([[[0, 1, 255, -1]]], np.int32)
    logits = np.eye(2, dtype=np.float32)[[[[0, 0, 1, 1]]]]
    metric = PixelAccuracy(2, ignore_label=255)
    metric.update_state(labels, logits)
    np.testing.assert_array_equal(metric.confusion_matrix(), [[1, 0], [1, 0]])
    assert float(metric.result()) == pytest.approx(0.5)
    assert metric.result_dict(["a", "b"])["IoU"] == pytest.approx({"a": 0.5, "b": 0.0})
    clone = PixelAccuracy.from_config(metric.get_config())
    assert (clone.name, clone.num_classes, clone.ignore_label) == ("pixAcc", 2, 255)
    assert keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(MeanIoU(3))).num_classes == 3


MIRRORED_SCRIPT = textwrap.dedent(
    """
    import json, numpy as np, tensorflow as tf
    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
    import keras
    from kseg.losses import SegmentationCrossEntropy
    from kseg.metrics import MeanIoU, PixelAccuracy

    def build(jit_compile):
        inputs = keras.Input((None, None, 3))
        conv = keras.layers.Conv2D(6, 1, kernel_initializer=keras.initializers.GlorotNormal(seed=5),
                                   bias_initializer=keras.initializers.RandomNormal(seed=6))
        model = keras.Model(inputs, conv(inputs))
        metrics = [MeanIoU(6), PixelAccuracy(6)]
        model.compile(loss=SegmentationCrossEntropy(), metrics=metrics, jit_compile=jit_compile)
        return model, metrics[0]

    rng = np.random.default_rng(4)
    images = rng.normal(size=(9, 9, 11, 3)).astype(np.float32)  # batches of 4, 4, 1: one replica gets none at the end
    labels = rng.integers(-1, 6, (9, 9, 11)).astype(np.int32)
    strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
    with strategy.scope():
        mirrored = build(False)  # XLA cannot reach the second logical CPU's model variables (a TF known issue)
    single = build(True)
    out = {"replicas": strategy.num_replicas_in_sync, "labels": labels.tolist()}
    for name, (model, metric) in (("mirrored", mirrored), ("single", single)):
        results = model.evaluate(images, labels, batch_size=4, verbose=0, return_dict=True)
        out[name] = {"matrix": metric.confusion_matrix().tolist(), "mIoU": results["mIoU"], "pixAcc": results["pixAcc"],
                     "predictions": model.predict(images, verbose=0).argmax(-1).tolist()}
    print(json.dumps(out))
    """
)


def test_keras_metric_sums_over_mirrored_replicas():
    result = subprocess.run([sys.executable, "-c", MIRRORED_SCRIPT], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    out = json.loads(result.stdout.strip().splitlines()[-1])
    assert out["replicas"] == 2
    mirrored, single = out["mirrored"], out["single"]
    assert mirrored["predictions"] == single["predictions"]
    assert len(np.unique(single["predictions"])) > 3  # the random model predicts several classes
    np.testing.assert_array_equal(mirrored["matrix"], single["matrix"])
    expected = ConfusionMatrix(6).update(np.array(out["labels"]), np.array(single["predictions"]))
    np.testing.assert_array_equal(np.array(mirrored["matrix"]), expected.matrix)
    assert mirrored["mIoU"] == single["mIoU"] and mirrored["pixAcc"] == single["pixAcc"]


def test_images_without_labelled_pixels_are_an_empty_result():
    matrix = ConfusionMatrix(3)
    matrix.update(np.full((4, 5), -1), np.zeros((4, 5), np.int64))  # every pixel ignored
    matrix.update(np.zeros((0, 5), np.int64), np.zeros((0, 5), np.int64))  # no pixel at all
    result = matrix.result(["a", "b", "c"])
    assert result["pixAcc"] == 0.0 and result["mIoU"] == 0.0 and list(result["IoU"].values()) == [0.0, 0.0, 0.0]
