"""Time GluonCV's segmentation training step (scripts/segmentation/train.py's) on MXNet; side venv only.

    .venv-gluoncv/bin/python benchmarks/gluoncv_train_bench.py fcn --backbone resnet50 --size 480 --batch-size 2 \
        --threads 2 --json out.json

The step is train.py's: ``get_segmentation_model(model, dataset='ade20k', backbone, aux=True, crop_size)``
with random weights (``pretrained_base=False``), not hybridized (train.py does not), wrapped in
``DataParallelModel``/``DataParallelCriterion`` on one CPU context, ``MixSoftmaxCrossEntropyLoss(aux=True,
aux_weight=0.5)``, a forward under ``autograd.record(True)``, ``autograd.backward`` and ``gluon.Trainer``'s SGD
(momentum 0.9, weight decay 1e-4) ``step(batch_size)``, then the losses fetched to the host.
"""

import argparse
import importlib.metadata
import json
import os
import resource
import sys
import time


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("models", nargs="+", help="fcn, psp, deeplab")
    parser.add_argument("--backbone", default="resnet50")
    parser.add_argument("--size", type=int, default=480, help="the square crop")
    parser.add_argument("--batch-size", type=int, default=2)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--iters", type=int, default=3)
    parser.add_argument("--json", default=None)
    args = parser.parse_args(argv)
    if args.threads:
        os.environ["OMP_NUM_THREADS"] = str(args.threads)
    import mxnet as mx
    import numpy as np
    from gluoncv.loss import MixSoftmaxCrossEntropyLoss
    from gluoncv.model_zoo.segbase import get_segmentation_model
    from gluoncv.utils.parallel import DataParallelCriterion, DataParallelModel
    from mxnet import autograd, gluon

    ctx = [mx.cpu()]
    rng = np.random.default_rng(0)
    data = mx.nd.array(rng.standard_normal((args.batch_size, 3, args.size, args.size), dtype=np.float32))
    target = mx.nd.array(rng.integers(0, 150, (args.batch_size, args.size, args.size)).astype(np.float32))
    results = []
    for name in args.models:
        mx.random.seed(0)
        model = get_segmentation_model(model=name, dataset="ade20k", backbone=args.backbone, aux=True,
                                       pretrained_base=False, base_size=args.size * 520 // 480, crop_size=args.size)
        model.initialize(mx.init.Xavier(), ctx=ctx, force_reinit=True)
        net = DataParallelModel(model, ctx)
        criterion = DataParallelCriterion(MixSoftmaxCrossEntropyLoss(True, aux_weight=0.5), ctx)
        trainer = gluon.Trainer(model.collect_params(), "sgd", {"learning_rate": 1e-3, "wd": 1e-4, "momentum": 0.9})

        def step(net=net, criterion=criterion, trainer=trainer):
            with autograd.record(True):
                outputs = net(data)
                losses = criterion(outputs, target)
                mx.nd.waitall()
                autograd.backward(losses)
            trainer.step(args.batch_size)
            return float(sum(loss.asnumpy().mean() for loss in losses))

        for _ in range(1 + args.warmup):
            step()
        times = []
        for _ in range(args.iters):
            start = time.perf_counter()
            step()
            times.append(time.perf_counter() - start)
        times.sort()
        median = times[len(times) // 2]
        results.append({"model": f"{name}_{args.backbone}", "batch_size": args.batch_size, "size": args.size,
                        "steps_per_s": 1 / median, "step_s_p50": median, "times_s": times,
                        "process_peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024})
        print(f"gluoncv {name}_{args.backbone}: {1 / median:.3f} steps/s", file=sys.stderr)
    payload = {"framework": "gluoncv", "mxnet": mx.__version__, "gluoncv": importlib.metadata.version("gluoncv"),
               "omp_num_threads": os.environ.get("OMP_NUM_THREADS"), "results": results}
    text = json.dumps(payload, indent=2)
    if args.json:
        with open(args.json, "w") as f:
            f.write(text + "\n")
    else:
        print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
