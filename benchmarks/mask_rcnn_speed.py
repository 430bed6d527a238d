"""Mask R-CNN inference time, kseg against GluonCV on MXNet, side by side on the same machine and input.

    .venv/bin/python benchmarks/mask_rcnn_speed.py --models mask_rcnn_resnet50_v1b_coco --size 512 --iters 3

Both run the network on one normalised ``[1, 3, S, S]`` image (kseg: NHWC) with
random weights, warm-up excluded: GluonCV hybridized (static_alloc, static
shape) with ``mx.nd.waitall()``; kseg as a ``tf.function`` (``--xla`` for XLA),
outputs fetched. GluonCV computes a mask for each of its 1000 output rows, and
so does ``MaskRCNN.call``: that is the like-for-like time. kseg is also timed
with masks for the top ``--top-masks`` detections only (TF Model Garden's and
detectron2's 100 per image): different work, reported in its own column.
Prints seconds per image and the ratios, and appends a section to
``benchmarks/RESULTS.md`` with ``--write``.
"""

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

GLUONCV = r"""
import json, sys, time
import mxnet as mx
from gluoncv.model_zoo import get_model
name, size, iters, threads = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
net = get_model(name, pretrained=False, pretrained_base=False)
net.initialize()
net.hybridize(static_alloc=True, static_shape=True)
x = mx.nd.random.normal(shape=(1, 3, size, size))
for _ in range(2):
    [o.wait_to_read() for o in net(x)]
times = []
for _ in range(iters):
    start = time.perf_counter()
    outputs = net(x)
    mx.nd.waitall()
    times.append(time.perf_counter() - start)
print(json.dumps({"seconds": sorted(times)[len(times) // 2], "all": times}))
"""


def gluoncv_seconds(name, size, iters, threads):
    python = REPO / ".venv-gluoncv" / "bin" / "python"
    env = dict(os.environ, OMP_NUM_THREADS=str(threads), MXNET_CPU_WORKER_NTHREADS=str(threads))
    result = subprocess.run([str(python), "-c", GLUONCV, name, str(size), str(iters), str(threads)],
                            capture_output=True, text=True, env=env)
    if result.returncode:
        raise RuntimeError(result.stderr[-2000:])
    return json.loads(result.stdout.strip().splitlines()[-1])


def _median_seconds(function, x, iters):
    for _ in range(2):
        {k: v.numpy() for k, v in function(x).items()}
    times = []
    for _ in range(iters):
        start = time.perf_counter()
        {k: v.numpy() for k, v in function(x).items()}
        times.append(time.perf_counter() - start)
    return {"seconds": sorted(times)[len(times) // 2], "all": times}


def kseg_seconds(name, size, iters, threads, xla, top_masks):
    import tensorflow as tf

    tf.config.threading.set_intra_op_parallelism_threads(threads)
    tf.config.threading.set_inter_op_parallelism_threads(threads)
    import kseg

    model = kseg.models.get(name)
    x = tf.random.normal([1, size, size, 3])
    spec = [tf.TensorSpec(x.shape, tf.float32)]

    def top(images):
        maps = model.feature_maps(images)
        _, rois = model.proposals(maps, tf.shape(images)[1:3])
        class_ids, scores, boxes = model.detect(maps, rois)
        class_ids, scores, boxes = class_ids[:, :top_masks], scores[:, :top_masks], boxes[:, :top_masks]
        return {"class_ids": class_ids, "scores": scores, "boxes": boxes,
                "masks": model.masks(maps, boxes, class_ids)}

    full = _median_seconds(tf.function(model.call, jit_compile=xla, input_signature=spec), x, iters)
    full["top"] = _median_seconds(tf.function(top, jit_compile=xla, input_signature=spec), x, iters)
    return full


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--models", default="mask_rcnn_resnet50_v1b_coco,mask_rcnn_fpn_resnet50_v1b_coco")
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--iters", type=int, default=3)
    parser.add_argument("--threads", type=int, default=os.cpu_count())
    parser.add_argument("--xla", action="store_true")
    parser.add_argument("--top-masks", type=int, default=100, help="kseg's second column: masks for this many")
    parser.add_argument("--write", action="store_true", help="append the table to benchmarks/RESULTS.md")
    args = parser.parse_args(argv)
    if args.top_masks < 1:
        parser.error(f"--top-masks must be at least 1, got {args.top_masks}")
    rows = []
    for name in args.models.split(","):
        theirs = gluoncv_seconds(name, args.size, args.iters, args.threads)
        ours = kseg_seconds(name, args.size, args.iters, args.threads, args.xla, args.top_masks)
        ratio, top = theirs["seconds"] / ours["seconds"], ours["top"]["seconds"]
        rows.append((name, ours["seconds"], theirs["seconds"], ratio, top, theirs["seconds"] / top))
        print(f"{name}: kseg {ours['seconds']:.2f} s, GluonCV {theirs['seconds']:.2f} s per image: {ratio:.1f}x; "
              f"kseg with {args.top_masks} masks {top:.2f} s: {theirs['seconds'] / top:.1f}x", flush=True)
    if args.write:
        cpu = platform.processor() or platform.machine()
        try:
            cpu = next(line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if "model name" in line)
        except (OSError, StopIteration):
            pass
        lines = [
            f"\n## Mask R-CNN inference, CPU ({time.strftime('%Y-%m-%d')})\n",
            f"{cpu}, {args.threads} threads; one {args.size}x{args.size} image, float32, random weights, "
            f"median of {args.iters} after warm-up; kseg {'with' if args.xla else 'without'} XLA. "
            "`benchmarks/mask_rcnn_speed.py`.\n",
            f"| model | kseg s/img (1000 masks, as GluonCV) | GluonCV-MXNet s/img | speed-up "
            f"| kseg s/img ({args.top_masks} masks) | speed-up |",
            "|---|---|---|---|---|---|",
        ]
        lines += [f"| {n} | {a:.2f} | {b:.2f} | {r:.1f}x | {t:.2f} | {tr:.1f}x |" for n, a, b, r, t, tr in rows]
        with open(REPO / "benchmarks" / "RESULTS.md", "a") as f:
            f.write("\n".join(lines) + "\n")
    return rows


if __name__ == "__main__":
    sys.exit(0 if main() else 1)
