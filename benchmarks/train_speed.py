"""Training steps per second, kseg and GluonCV side by side: fcn, psp and deeplab on ResNet-50, 480x480, batch 2.

    .venv/bin/python benchmarks/train_speed.py                  # kseg here, GluonCV in the side venv
    .venv/bin/python benchmarks/train_speed.py --models fcn --no-gluoncv

kseg's step is the one ``recipes/train.py`` runs: the model ``SemanticTraining``
builds for ``--model M --backbone resnet50 --dataset ade20k --aux`` (random
weights), compiled as the trainer compiles it (GluonSGD with the head's 10x
learning rate, the poly schedule, the masked cross-entropy of both heads,
pixAcc/mIoU), one ``train_on_batch`` per step (no XLA: none on CPUs). GluonCV's
is ``scripts/segmentation/train.py``'s (``benchmarks/gluoncv_train_bench.py``).
Both take the same thread count; the first call and ``--warmup`` more are not
timed. Appends a table to ``benchmarks/RESULTS.md``.
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(REPO))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", default="fcn,psp,deeplab")
    parser.add_argument("--backbone", default="resnet50")
    parser.add_argument("--size", type=int, default=480)
    parser.add_argument("--batch-size", type=int, default=2)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--iters", type=int, default=3)
    parser.add_argument("--precision", default="float32", help="kseg's dtype policy (mixed_bfloat16 on GPUs)")
    parser.add_argument("--xla", action="store_true", help="kseg: jit_compile the step (GPUs, TPUs)")
    parser.add_argument("--no-gluoncv", action="store_true")
    parser.add_argument(
        "--gluoncv-python", default=os.environ.get("KSEG_GLUONCV_PYTHON") or str(REPO / ".venv-gluoncv/bin/python")
    )
    parser.add_argument("--results", type=Path, default=HERE / "RESULTS.md")
    parser.add_argument("--no-write", action="store_true")
    return parser.parse_args(argv)


def kseg_step_rate(method, args):
    import tensorflow as tf

    from kseg.models.layers import dtype_policy_scope
    from kseg.training import GluonSGD, PolyLearningRate, TrainConfig
    from kseg.training.semantic import SemanticTraining

    config = TrainConfig(model=method, backbone=args.backbone, dataset="ade20k", aux=True,
                         batch_size=args.batch_size, crop_size=args.size, base_size=args.size * 520 // 480)  # fmt: skip
    task = SemanticTraining(config, log=lambda line: None)
    with dtype_policy_scope(args.precision):
        model = task.build_model()
    optimizer = GluonSGD(learning_rate=PolyLearningRate(config.lr, 10_000, power=config.power),
                         momentum=config.momentum, l2_decay=config.weight_decay,
                         lr_multipliers=task.lr_multipliers(model))  # fmt: skip
    model.compile(optimizer=optimizer, jit_compile=args.xla, **task.compile_arguments(model))
    rng = np.random.default_rng(0)
    images = tf.constant(rng.standard_normal((args.batch_size, args.size, args.size, 3), dtype=np.float32))
    masks = tf.constant(rng.integers(0, 150, (args.batch_size, args.size, args.size)), tf.int32)
    targets = {"logits": masks, "aux_logits": masks}
    for _ in range(1 + args.warmup):
        model.train_on_batch(images, targets)
    times = []
    for _ in range(args.iters):
        start = time.perf_counter()
        model.train_on_batch(images, targets)  # returns the losses as numpy: the step is done
        times.append(time.perf_counter() - start)
    median = statistics.median(times)
    return {"steps_per_s": 1 / median, "step_s_p50": median, "times_s": times}


def gluoncv_step_rate(method, args):
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "out.json"
        command = [args.gluoncv_python, str(HERE / "gluoncv_train_bench.py"), method, "--backbone", args.backbone,
                   "--size", str(args.size), "--batch-size", str(args.batch_size), "--threads", str(args.threads),
                   "--warmup", str(args.warmup), "--iters", str(args.iters), "--json", str(out)]  # fmt: skip
        proc = subprocess.run(command, capture_output=True, text=True, check=False)
        if proc.returncode != 0:
            raise RuntimeError(f"gluoncv_train_bench.py failed:\n{proc.stderr[-2000:]}")
        (record,) = json.loads(out.read_text())["results"]
        return record


def main(argv=None):
    args = parse_args(sys.argv[1:] if argv is None else argv)
    from kseg.benchmark import machine_info, set_threads

    set_threads(args.threads)
    rows = []
    for method in args.models.split(","):
        row = {"model": f"{method}_{args.backbone}", "kseg": kseg_step_rate(method, args)}
        if not args.no_gluoncv:
            row["gluoncv"] = gluoncv_step_rate(method, args)
        rows.append(row)
        print(json.dumps({k: v if k == "model" else v["steps_per_s"] for k, v in row.items()}), file=sys.stderr)
    machine = machine_info()
    lines = [
        f"## Training steps per second, kseg and GluonCV ({time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())})",
        "",
        f"`benchmarks/train_speed.py`: {machine.get('cpu', 'CPU')}, {args.threads} threads; {args.size}x{args.size}, "
        f"batch {args.batch_size}, ADE20K's 150 classes, auxiliary head on, random weights, kseg {args.precision}"
        f"{' + XLA' if args.xla else ''} (GluonCV float32), median of "
        f"{args.iters} steps after {1 + args.warmup} untimed. kseg: recipes/train.py's compiled step (no XLA on "
        "CPUs); GluonCV: scripts/segmentation/train.py's step (not hybridized, as train.py).",
        "",
        "| model | kseg steps/s | kseg s/step | GluonCV steps/s | GluonCV s/step | kseg/GluonCV |",
        "|---|---|---|---|---|---|",
    ]
    for row in rows:
        k, g = row["kseg"], row.get("gluoncv")
        gluon = f"{g['steps_per_s']:.3f} | {g['step_s_p50']:.2f} | {k['steps_per_s'] / g['steps_per_s']:.2f}" if g \
            else "– | – | –"
        lines.append(f"| {row['model']} | {k['steps_per_s']:.3f} | {k['step_s_p50']:.2f} | {gluon} |")
    text = "\n".join(lines) + "\n"
    print(text)
    if not args.no_write:
        with open(args.results, "a") as f:
            f.write("\n" + text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
