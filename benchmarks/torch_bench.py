"""Time torchvision segmentation models on the CPU; runs under a python with torch + torchvision (no kseg).

    /work/venv_torch/bin/python benchmarks/torch_bench.py fcn_resnet101 --size 480x480 --threads 2 \
        --classes 21 --input inputs.npy --json out.json

Each model is ``torchvision.models.segmentation.<name>(weights=None,
weights_backbone=None, num_classes=C)`` (no aux head), in ``eval()`` mode under
``torch.inference_mode()``, on the same NCHW batch; a timed call is the forward
pass and the sum of the ``"out"`` logits fetched to the host (as kseg's
``--fetch sum``). ``--threads N`` is ``torch.set_num_threads(N)``.
``--channels-last`` converts model and input to NHWC memory format; the
default is torch's NCHW. On a GPU (``--device cuda``) ``--bf16`` runs the
forward under ``torch.autocast(dtype=bfloat16)`` and ``--compile`` through
``torch.compile`` (its compilation happens in the untimed first call).
"""

import argparse
import json
import sys

from bench_common import common_arguments, load_images, time_model


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    common_arguments(parser)
    parser.add_argument("--classes", type=int, default=21)
    parser.add_argument("--channels-last", action="store_true")
    parser.add_argument("--device", default="cpu", help="cpu or cuda")
    parser.add_argument("--bf16", action="store_true", help="autocast to bfloat16")
    parser.add_argument("--compile", action="store_true", help="torch.compile the model")
    args = parser.parse_args(argv)
    import numpy as np
    import torch
    import torchvision
    from torchvision.models import segmentation

    if args.threads:
        torch.set_num_threads(args.threads)
    images = load_images(args)
    x = torch.from_numpy(np.ascontiguousarray(images.transpose(0, 3, 1, 2))).to(args.device)
    if args.channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    results = []
    for name in args.models:
        torch.manual_seed(args.seed)
        net = getattr(segmentation, name)(weights=None, weights_backbone=None, num_classes=args.classes).eval()
        net = net.to(args.device)
        if args.channels_last:
            net = net.to(memory_format=torch.channels_last)
        forward = torch.compile(net) if args.compile else net

        def call(forward=forward):
            with torch.inference_mode(), torch.autocast(args.device, torch.bfloat16, enabled=args.bf16):
                return float(forward(x)["out"].float().sum())

        record = {"model": name, "height": int(images.shape[1]), "width": int(images.shape[2])}
        record.update(time_model(call, images.shape[0], args.warmup, args.iters, args.max_foreign_load))
        record["parameters"] = sum(p.numel() for p in net.parameters())
        results.append(record)
        print(
            f"torchvision {name}: {record['images_per_s']:.3f} img/s, p50 {record['latency_ms']['p50']:.0f} ms, "
            f"other load {record['cpu_use']['foreign_cores']} cores",
            file=sys.stderr,
        )
        del net
    payload = {
        "framework": "torchvision",
        "environment": {
            "torch": torch.__version__,
            "torchvision": torchvision.__version__,
            "threads": torch.get_num_threads(),
            "mkldnn": bool(torch.backends.mkldnn.is_available()),
            "channels_last": bool(args.channels_last),
            "device": torch.cuda.get_device_name() if args.device == "cuda" else "cpu",
            "bf16": bool(args.bf16),
            "compile": bool(args.compile),
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
