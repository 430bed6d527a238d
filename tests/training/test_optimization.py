"""GluonSGD, the poly schedule and the masked loss against MXNet/GluonCV and numpy."""

import json
import subprocess

import keras
import numpy as np
import pytest

from kseg.losses import SegmentationCrossEntropy, masked_cross_entropy
from kseg.training import GluonSGD, PolyLearningRate

MXNET_SGD = """
import json, sys, numpy as np, mxnet as mx
cfg = json.loads(sys.argv[1])
clip = {"clip_gradient": cfg["clip"]} if cfg.get("clip") else {}
opt = mx.optimizer.SGD(learning_rate=cfg["lr"], momentum=0.9, wd=cfg["wd"], **clip)
opt.set_lr_mult({0: 1.0, 1: cfg["mult"]})
opt.set_wd_mult({0: 1.0, 1: cfg.get("wd_mult", 1.0)})
weights = [mx.nd.array(np.array(w, dtype="float32")) for w in cfg["weights"]]
states = [opt.create_state(i, w) for i, w in enumerate(weights)]
for grads in cfg["grads"]:
    for i, (w, g) in enumerate(zip(weights, grads)):
        opt.update(i, w, mx.nd.array(np.array(g, dtype="float32")), states[i])
print(json.dumps([w.asnumpy().tolist() for w in weights]))
"""

GLUONCV_POLY = """
import json, sys
from gluoncv.utils import LRScheduler
cfg = json.loads(sys.argv[1])
s = LRScheduler(mode="poly", base_lr=cfg["lr"], nepochs=cfg["epochs"], iters_per_epoch=cfg["iters"], power=0.9)
out = []
for t in range(cfg["epochs"] * cfg["iters"]):
    s.update(t)
    out.append(s.learning_rate)
print(json.dumps(out))
"""


def run_side(side_python, script, config):
    result = subprocess.run([side_python, "-c", script, json.dumps(config)], capture_output=True, text=True, check=True)
    return json.loads(result.stdout.strip().splitlines()[-1])


def kseg_sgd_steps(weights, grads, lr, wd, mult, wd_mult=1.0, clip=None):
    variables = [keras.Variable(np.array(w, "float32"), name=f"w{i}") for i, w in enumerate(weights)]
    optimizer = GluonSGD(lr, momentum=0.9, l2_decay=wd, lr_multipliers={variables[1].path: mult},
                         l2_multipliers={variables[1].path: wd_mult}, clipvalue=clip)  # fmt: skip
    for step in grads:
        optimizer.apply_gradients([(np.array(g, "float32"), v) for g, v in zip(step, variables, strict=True)])
    return [v.numpy() for v in variables]


def test_gluon_sgd_matches_the_mxnet_formula():
    rng = np.random.default_rng(0)
    weights = [rng.standard_normal(4), rng.standard_normal(3)]
    grads = [[rng.standard_normal(4), rng.standard_normal(3)] for _ in range(3)]
    ours = kseg_sgd_steps(weights, grads, lr=0.1, wd=0.01, mult=10.0)
    for index, lr in ((0, 0.1), (1, 1.0)):
        w, mom = np.array(weights[index]), 0.0
        for step in grads:
            mom = 0.9 * mom - lr * (step[index] + 0.01 * w)
            w = w + mom
        np.testing.assert_allclose(ours[index], w, rtol=1e-5)


@pytest.mark.gluoncv
def test_gluon_sgd_matches_mxnet(side_python):
    rng = np.random.default_rng(1)
    config = {
        "lr": 0.05,
        "wd": 1e-4,
        "mult": 10.0,
        "weights": [rng.standard_normal(5).tolist(), rng.standard_normal(2).tolist()],
        "grads": [[rng.standard_normal(5).tolist(), rng.standard_normal(2).tolist()] for _ in range(4)],
    }
    expected = run_side(side_python, MXNET_SGD, config)
    ours = kseg_sgd_steps(config["weights"], config["grads"], config["lr"], config["wd"], config["mult"])
    for a, b in zip(ours, expected, strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


@pytest.mark.gluoncv
def test_gluon_sgd_with_bias_decay_off_and_clipping_matches_mxnet(side_python):
    """GluonCV's Mask R-CNN recipe: no weight decay on biases (wd_mult 0), optional clip_gradient."""
    rng = np.random.default_rng(2)
    config = {
        "lr": 0.05,
        "wd": 0.05,  # large, so that a decayed bias would show
        "mult": 1.0,
        "wd_mult": 0.0,
        "clip": 0.7,
        "weights": [rng.standard_normal(5).tolist(), rng.standard_normal(3).tolist()],
        "grads": [[(2 * rng.standard_normal(5)).tolist(), (2 * rng.standard_normal(3)).tolist()] for _ in range(4)],
    }
    expected = run_side(side_python, MXNET_SGD, config)
    ours = kseg_sgd_steps(config["weights"], config["grads"], config["lr"], config["wd"], 1.0, 0.0, config["clip"])
    for a, b in zip(ours, expected, strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    unclipped = kseg_sgd_steps(config["weights"], config["grads"], config["lr"], config["wd"], 1.0, 0.0)
    assert np.abs(unclipped[0] - expected[0]).max() > 1e-3  # the clip took effect


@pytest.mark.gluoncv
def test_poly_schedule_matches_gluoncv(side_python):
    config = {"lr": 0.01, "epochs": 3, "iters": 7}
    expected = run_side(side_python, GLUONCV_POLY, config)
    schedule = PolyLearningRate(0.01, total_steps=21)
    ours = [float(schedule(t)) for t in range(21)]
    np.testing.assert_allclose(ours, expected, rtol=1e-5, atol=1e-9)


def test_poly_warmup_and_config():
    schedule = PolyLearningRate(0.1, total_steps=101, warmup_steps=10)
    assert float(schedule(0)) == pytest.approx(0.1 / 3)
    assert float(schedule(10)) == pytest.approx(0.1 * (1 - 10 / 100) ** 0.9, rel=1e-5)
    assert float(schedule(500)) == 0.0
    assert PolyLearningRate.from_config(schedule.get_config()).get_config() == schedule.get_config()
    with pytest.raises(ValueError, match="total_steps"):
        PolyLearningRate(0.1, total_steps=1)


def test_masked_cross_entropy_against_numpy():
    rng = np.random.default_rng(2)
    logits = rng.standard_normal((2, 5, 6, 4)).astype("float32")
    labels = rng.integers(-1, 4, (2, 5, 6))
    log_softmax = logits - np.log(np.exp(logits).sum(-1, keepdims=True))
    valid = labels >= 0
    expected = -np.take_along_axis(log_softmax, np.where(valid, labels, 0)[..., None], -1)[..., 0][valid].mean()
    assert float(masked_cross_entropy(labels, logits)) == pytest.approx(expected, rel=1e-5)
    assert float(SegmentationCrossEntropy()(labels, logits)) == pytest.approx(expected, rel=1e-5)
    assert float(masked_cross_entropy(np.full((1, 2, 2), -1), logits[:1, :2, :2])) == 0.0


def test_optimizer_config_roundtrip():
    optimizer = GluonSGD(0.02, l2_decay=1e-4, lr_multipliers={"head_conv/kernel": 10.0})
    clone = GluonSGD.from_config(optimizer.get_config())
    assert clone.lr_multipliers == {"head_conv/kernel": 10.0} and clone.l2_decay == 1e-4
    decayless = GluonSGD(0.02, l2_multipliers={"box_predictor/bias": 0.0}, clipvalue=1.5)
    clone = GluonSGD.from_config(decayless.get_config())
    assert clone.l2_multipliers == {"box_predictor/bias": 0.0} and clone.clipvalue == 1.5
