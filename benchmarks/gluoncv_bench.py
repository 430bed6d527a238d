"""Time GluonCV zoo models on MXNet; runs under the GluonCV side venv only (no kseg, no TensorFlow).

    .venv-gluoncv/bin/python benchmarks/gluoncv_bench.py fcn_resnet101_voc --size 480x480 --threads 2 \
        --input inputs.npy --json out.json

Each model is ``gluoncv.model_zoo.get_model(name, pretrained=False,
pretrained_base=False, aux=False)`` with random (Xavier) weights, hybridized
with ``static_alloc=True, static_shape=True``. A timed call is the forward pass
on the same NCHW batch, ``mx.nd.waitall()``, and the sum of the logits fetched
to the host (as kseg's ``--fetch sum``). The resize targets GluonCV bakes in at
construction (crop 480) are set to the input's size first.

``--threads N`` sets ``OMP_NUM_THREADS=N`` (MKL-DNN's and MXNet's operator
threads) before MXNet starts.
"""

import argparse
import importlib.metadata
import json
import os
import resource
import sys

from bench_common import common_arguments, load_images, time_model


def feature_size(n):
    """Size of c3/c4 (stride 8) in GluonCV's dilated ResNet v1s: three ceil-halvings."""
    for _ in range(3):
        n = (n + 1) // 2
    return n


def set_resize_targets(net, height, width):
    """Point every baked-in BilinearResize2D target at this input size (as tools/gluoncv_reference.py)."""
    net._up_kwargs = {"height": height, "width": width}
    feature = {"height": feature_size(height), "width": feature_size(width)}
    stack = list(net._children.values())
    while stack:
        block = stack.pop()
        if hasattr(block, "_up_kwargs"):
            block._up_kwargs = dict(feature)
        stack.extend(block._children.values())


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    common_arguments(parser)
    args = parser.parse_args(argv)
    if args.threads:
        # MXNet reads these when its engine starts, i.e. at import.
        os.environ["OMP_NUM_THREADS"] = str(args.threads)
    import gluoncv
    import mxnet as mx
    from mxnet.runtime import Features

    images = load_images(args)
    x = mx.nd.array(images.transpose(0, 3, 1, 2), ctx=mx.cpu())
    results = []
    for name in args.models:
        mx.random.seed(args.seed)
        net = gluoncv.model_zoo.get_model(name, pretrained=False, pretrained_base=False, aux=False)
        net.initialize(mx.init.Xavier(), ctx=mx.cpu(), force_reinit=True)
        set_resize_targets(net, images.shape[1], images.shape[2])
        net.hybridize(static_alloc=True, static_shape=True)

        def call(net=net):
            out = net(x)
            out = out[0] if isinstance(out, (list, tuple)) else out
            mx.nd.waitall()
            return float(out.sum().asscalar())

        record = {"model": name, "height": int(images.shape[1]), "width": int(images.shape[2])}
        record.update(time_model(call, images.shape[0], args.warmup, args.iters, args.max_foreign_load))
        record["parameters"] = sum(int(p.data().size) for p in net.collect_params().values())
        # The process's peak resident set so far (KiB on Linux): run one model per process for a clean figure.
        record["process_peak_rss_mib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        results.append(record)
        print(
            f"gluoncv {name}: {record['images_per_s']:.3f} img/s, p50 {record['latency_ms']['p50']:.0f} ms, "
            f"other load {record['cpu_use']['foreign_cores']} cores",
            file=sys.stderr,
        )
        del net
    payload = {
        "framework": "gluoncv",
        "environment": {
            "mxnet": mx.__version__,
            "gluoncv": importlib.metadata.version("gluoncv"),  # gluoncv.__version__ says 0.11.0 in 0.10.5.post0
            "gluoncv_module_version": gluoncv.__version__,
            "mkldnn": Features().is_enabled("MKLDNN"),
            "omp_num_threads": os.environ.get("OMP_NUM_THREADS"),
            "hybridize": "static_alloc=True, static_shape=True",
        },
        "results": results,
    }
    text = json.dumps(payload, indent=2)
    if args.json:
        with open(args.json, "w") as f:
            f.write(text + "\n")
    else:
        print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
