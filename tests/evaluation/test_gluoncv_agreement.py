"""MultiScalePredictor against GluonCV's own MultiEvalModel, on the same weights and images.

In the side venv: build fcn_resnet50_ade with seeded random weights (the
functions of ``tools/gluoncv_reference.py``), save its ``.params``, and run
``MultiEvalModel`` (segbase.py; its source is checked to be cb07ee2a's) on two
real ADE20K images resized to odd sizes. Then kseg loads the same file and must
give the same argmax on at least 99.9% of the pixels. Small base/crop sizes
(240/160) keep a full ResNet-50 affordable on CPU while running every branch:
long side within the crop (scale 0.5), the short side padded before sliding
(170x260 at 1.0), plain sliding (200x150 at 1.0) and a 4x3 grid with cut,
re-padded last windows (1.75).
"""

import json
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest

import kseg
from kseg.evaluation import MultiScalePredictor
from kseg.presets import IMAGENET_MEAN, IMAGENET_STD

REPO = Path(__file__).resolve().parents[2]
ADE_IMAGES = REPO.parent / "shared" / "realdata" / "ADEChallengeData2016" / "images" / "validation"
MODEL = "fcn_resnet50_ade"
SEED = 0
SETTINGS = {"base_size": 240, "crop_size": 160, "scales": [0.5, 1.0, 1.75]}
SIZES = [(200, 150), (170, 260)]  # height x width

# sha1 of the source of MultiEvalModel, _resize_image, _pad_image, _crop_image and
# _flip_image in gluoncv/model_zoo/segbase.py at dmlc/gluon-cv cb07ee2a (unchanged
# through HEAD and in the gluoncv 0.10.5.post0 wheel).
CB07EE2A_SOURCE_SHA1 = "dc953e5fa08b9219c60cdce71952dc71a181c714"

SIDE_SCRIPT = r"""
import hashlib, inspect, json, sys, time
import numpy as np
import mxnet as mx
import gluoncv
from gluoncv.model_zoo import segbase

config = json.loads(sys.argv[1])
sys.path.insert(0, config["tools"])
from gluoncv_reference import build_model, calibrate_batchnorm, damp_residual_branches, init_params

names = ["MultiEvalModel", "_resize_image", "_pad_image", "_crop_image", "_flip_image"]
source = "".join(inspect.getsource(getattr(segbase, n)) for n in names)
source_sha1 = hashlib.sha1(source.encode()).hexdigest()

# The reference runner's recipe: seeded weights, calibrated BN, damped residual branches.
t0 = time.perf_counter()
seed = config["seed"]
mx.random.seed(seed)
np.random.seed(seed)
net = build_model(config["model"])
net(mx.nd.zeros((1, 3, 33, 33)))
mx.nd.waitall()
params = net._collect_params_with_prefix()
init_params(params, seed)
calibrate_batchnorm(net, seed)
damp_residual_branches(params)
net.save_parameters(config["params"])
# What get_model(..., base_size=B, crop_size=C) sets: MultiEvalModel reads base/crop from the
# module, and evaluate() (forward) resizes the logits to the crop, the size of every window.
net.base_size, net.crop_size = config["base_size"], config["crop_size"]
net._up_kwargs = {"height": config["crop_size"], "width": config["crop_size"]}
t_init = time.perf_counter() - t0

evaluator = segbase.MultiEvalModel(net, net.nclass, ctx_list=[mx.cpu()], scales=config["scales"])  # flip=True
images = np.load(config["inputs"])
scores, seconds = {}, {}
for key in sorted(images.files):
    t1 = time.perf_counter()
    # As test.py --eval: one CHW image per context, pred[0] of parallel_forward.
    pred = evaluator.parallel_forward([mx.nd.array(images[key].transpose(2, 0, 1))])[0]
    scores[key] = pred.asnumpy()[0].transpose(1, 2, 0)
    seconds[key] = time.perf_counter() - t1
np.savez(config["scores"], **scores)
print(json.dumps({"source_sha1": source_sha1, "gluoncv": gluoncv.__version__, "mxnet": mx.__version__,
                  "init_s": t_init, "seconds": seconds}))
"""


def normalised_images():
    """Two real ADE20K images resized to odd sizes (random ones when the folder is absent)."""
    files = sorted(ADE_IMAGES.glob("*.jpg"))
    mean, std = np.array(IMAGENET_MEAN, np.float32), np.array(IMAGENET_STD, np.float32)
    images = {}
    for i, (height, width) in enumerate(SIZES):
        if len(files) > i:
            from PIL import Image

            with Image.open(files[i]) as im:
                rgb = np.asarray(im.convert("RGB").resize((width, height), Image.BILINEAR), np.float32)
        else:
            rgb = np.random.default_rng([SEED, i]).uniform(0, 255, (height, width, 3)).astype(np.float32)
        images[f"image_{i}"] = ((rgb / 255.0 - mean) / std).astype(np.float32)  # ToTensor + Normalize
    return images, [f.name for f in files[: len(SIZES)]]


@pytest.mark.gluoncv
@pytest.mark.parity
@pytest.mark.large
@pytest.mark.isolated
def test_agrees_with_gluoncv_multi_eval_model(side_python, tmp_path):
    images, sources = normalised_images()
    inputs = tmp_path / "inputs.npz"
    np.savez(inputs, **images)
    config = dict(
        SETTINGS,
        model=MODEL,
        seed=SEED,
        tools=str(REPO / "tools"),
        inputs=str(inputs),
        params=str(tmp_path / f"{MODEL}.params"),
        scores=str(tmp_path / "gluoncv_scores.npz"),
    )
    result = subprocess.run([side_python, "-c", SIDE_SCRIPT, json.dumps(config)], capture_output=True, text=True)
    assert result.returncode == 0, f"GluonCV side failed:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
    side = json.loads(result.stdout.strip().splitlines()[-1])
    assert side["source_sha1"] == CB07EE2A_SOURCE_SHA1, "the installed MultiEvalModel is not cb07ee2a's"
    expected = np.load(config["scores"])

    model = kseg.models.get(MODEL, weights=config["params"])
    predictor = MultiScalePredictor(
        model, SETTINGS["base_size"], SETTINGS["crop_size"], SETTINGS["scales"], max_batch=8, jit_compile=None
    )
    branches = {(p.sliding, p.padded != (p.height, p.width)) for h, w in SIZES for p in predictor.plan(h, w)}
    assert branches == {(False, True), (True, True), (True, False)}, branches

    report = {"images": sources or "random", "gluoncv_seconds": side["seconds"], "gluoncv_init_s": side["init_s"]}
    for key, image in images.items():
        start = time.perf_counter()
        labels, scores = predictor.predict(image, return_scores=True)
        scores, labels = np.asarray(scores), np.asarray(labels)
        reference = expected[key]
        assert scores.shape == reference.shape == (*image.shape[:2], 150)
        report[key] = {
            "size": list(image.shape[:2]),
            "kseg_seconds": time.perf_counter() - start,
            "argmax_agreement": float(np.mean(labels == reference.argmax(-1))),
            "scores_relative_error": float(np.linalg.norm(scores - reference) / np.linalg.norm(reference)),
            "scores_max_relative_error": float(np.max(np.abs(scores - reference) / np.abs(reference))),
            "classes_predicted": int(np.unique(reference.argmax(-1)).size),
        }
    print(json.dumps(report, indent=1))
    (tmp_path / "agreement.json").write_text(json.dumps(report, indent=1))
    for key in images:
        assert report[key]["argmax_agreement"] >= 0.999, report[key]
        assert report[key]["scores_relative_error"] < 1e-5, report[key]
