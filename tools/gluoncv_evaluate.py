"""GluonCV's own evaluation of a seeded random model, for checking ``recipes/test.py``.

Runs ONLY under the side venv (mxnet + gluoncv; never imports kseg)::

    .venv-gluoncv/bin/python tools/gluoncv_evaluate.py --model fcn_resnet50_ade \
        --dataset ade20k --root ../shared/realdata --base-size 240 --crop-size 160 \
        --scales 0.5,1.0 --out DIR

It builds the zoo network with the reference runner's seeded weights
(``gluoncv_reference.py``), writes ``DIR/<model>.params``, and evaluates it the
way GluonCV's ``scripts/segmentation/test.py --eval`` did for the published
table (cb07ee2a): GluonCV's data set class in ``testval`` mode with ToTensor +
Normalize, ``MultiEvalModel`` (or, with ``--single-scale``, ``model.predict``
on the full image as HEAD's test.py does), and ``SegmentationMetric``. It
writes ``DIR/gluoncv_metrics.json`` (pixAcc, mIoU, per-class IoU) and
``DIR/gluoncv_predictions.npz`` (argmax per image, keyed by the image's file stem).
``--root`` is what GluonCV's data set class takes as ``root``.
"""

import argparse
import json
import os
import sys

import mxnet as mx
import numpy as np
from gluoncv.data import get_segmentation_dataset
from gluoncv.model_zoo import segbase
from gluoncv.utils.metrics import SegmentationMetric
from mxnet.gluon.data.vision import transforms

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from gluoncv_reference import (  # noqa: E402
    DynamicSizes,
    build_model,
    calibrate_batchnorm,
    damp_residual_branches,
    init_params,
)


def seeded_model(name, seed, base_size, crop_size):
    """The reference runner's seeded network, set up as ``get_model(..., base_size, crop_size)`` would be.

    The reference runner's size hooks stay on: every resize target follows the
    tensor that reaches it, which is what ``get_model(crop_size=...)`` fixes for
    MultiEvalModel's crop-sized windows and what ``predict`` sets for one image.
    """
    mx.random.seed(seed)
    np.random.seed(seed)
    net = build_model(name)
    net.dynamic_sizes = DynamicSizes(net)
    net(mx.nd.zeros((1, 3, 33, 33)))
    params = net._collect_params_with_prefix()
    init_params(params, seed)
    calibrate_batchnorm(net, seed)
    damp_residual_branches(params)
    net.base_size, net.crop_size = base_size, crop_size
    # MultiEvalModel calls net.evaluate(), which no pre-hook sees: its windows are crop-sized.
    net._up_kwargs = {"height": crop_size, "width": crop_size}
    return net


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", required=True)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--dataset", required=True)
    parser.add_argument("--root", required=True)
    parser.add_argument("--split", default="val")
    parser.add_argument("--base-size", type=int, default=520)
    parser.add_argument("--crop-size", type=int, default=480)
    parser.add_argument("--scales", default="0.5,0.75,1.0,1.25,1.5,1.75")
    parser.add_argument("--no-flip", action="store_true")
    parser.add_argument("--single-scale", action="store_true")
    parser.add_argument("--out", required=True)
    args = parser.parse_args(argv)

    os.makedirs(args.out, exist_ok=True)
    net = seeded_model(args.model, args.seed, args.base_size, args.crop_size)
    net.save_parameters(os.path.join(args.out, f"{args.model}.params"))

    normalize = transforms.Normalize([0.485, 0.456, 0.406], [0.229, 0.224, 0.225])
    transform = transforms.Compose([transforms.ToTensor(), normalize])
    dataset = get_segmentation_dataset(
        args.dataset, root=args.root, split=args.split, mode="testval", transform=transform,
        base_size=args.base_size, crop_size=args.crop_size,
    )
    scales = [float(s) for s in args.scales.split(",")]
    flip = not args.no_flip
    evaluator = segbase.MultiEvalModel(net, dataset.num_class, ctx_list=[mx.cpu()], scales=scales, flip=flip)
    metric = SegmentationMetric(dataset.num_class)
    predictions = {}
    for i in range(len(dataset)):
        image, target = dataset[i]
        if args.single_scale:
            scores = net.predict(image.expand_dims(0))
        else:
            scores = evaluator.parallel_forward([image])[0]  # [1, C, H, W] for the one context
        metric.update(target.expand_dims(0), scores)  # NDArrays: list inputs run in threads that hide errors
        stem = os.path.splitext(os.path.basename(dataset.images[i]))[0]
        predictions[stem] = mx.nd.argmax(scores, axis=1)[0].asnumpy().astype(np.int16)
        print(f"{i + 1}/{len(dataset)} {stem} pixAcc/mIoU so far: {metric.get()}", flush=True)

    pix_acc, miou = metric.get()
    inter, union = metric.total_inter.astype(np.float64), metric.total_union.astype(np.float64)
    report = {
        "model": args.model, "seed": args.seed, "dataset": args.dataset, "split": args.split,
        "images": len(dataset), "pixAcc": float(pix_acc), "mIoU": float(miou),
        "IoU": (1.0 * inter / (np.spacing(1) + union)).tolist(),
        # GluonCV's accumulated areas, so that a check can bound how far a few differing pixels move the metrics.
        "inter": inter.tolist(), "union": union.tolist(),
        "correct": float(metric.total_correct), "labelled": float(metric.total_label),
        "scales": [1.0] if args.single_scale else scales, "flip": not (args.no_flip or args.single_scale),
    }
    np.savez(os.path.join(args.out, "gluoncv_predictions.npz"), **predictions)
    with open(os.path.join(args.out, "gluoncv_metrics.json"), "w") as f:
        json.dump(report, f, indent=1)
    print(json.dumps({k: report[k] for k in ("pixAcc", "mIoU", "images")}))


if __name__ == "__main__":
    main()
