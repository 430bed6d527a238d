"""Mask R-CNN training steps per second, kseg and GluonCV side by side, one real image per step, on this CPU.

    .venv/bin/python benchmarks/mask_rcnn_train_speed.py                       # R18 C4 and FPN at 320/512
    .venv/bin/python benchmarks/mask_rcnn_train_speed.py --models mask_rcnn_fpn_resnet50_v1b_coco --short 800 \\
        --max-size 1333

The same image (COCO val2017 785 of ``shared/realdata``), resized as GluonCV's train transform does, the same
RPN targets (kseg's, equal to GluonCV's: tests/parity) and one image per step, GluonCV's published layout.
kseg's step is what ``recipes/train.py`` runs (:class:`kseg.training.mask_rcnn.MaskRCNNTraining`, GluonSGD,
``train_on_batch``: features, RPN losses, proposals 12000 -> NMS -> 2000, the RCNN sampler, both heads, five
losses, backward, update; no XLA, none on CPUs). GluonCV's is ``ForwardBackwardTask.forward_backward`` plus
``Trainer.step`` (``tools/gluoncv_rcnn_train_reference.py train-step``: everything but its RCNN sampler, whose
draw it is given). Both run with ``--threads``; the first ``1 + --warmup`` steps are not timed. Appends a table
to ``benchmarks/RESULTS.md``.
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
COCO_PERSON = REPO.parent / "shared" / "realdata" / "coco_person"


def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", default="mask_rcnn_resnet18_v1b_coco,mask_rcnn_fpn_resnet18_v1b_coco")
    parser.add_argument("--short", type=int, default=320)
    parser.add_argument("--max-size", type=int, default=512)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--iters", type=int, default=3)
    parser.add_argument("--no-gluoncv", action="store_true")
    parser.add_argument(
        "--gluoncv-python", default=os.environ.get("KSEG_GLUONCV_PYTHON") or str(REPO / ".venv-gluoncv/bin/python")
    )
    parser.add_argument("--results", type=Path, default=HERE / "RESULTS.md")
    parser.add_argument("--no-write", action="store_true")
    return parser.parse_args(argv)


def one_image_batch(model, args):
    """The batch of one real image for ``model``: kseg's transform, its own size as the canvas, RPN targets."""
    from kseg.data.datasets.coco_instances import COCOInstances
    from kseg.data.instance_batches import stack_examples, training_example
    from kseg.data.instance_transforms import InstanceTrainTransform
    from kseg.data.preprocessing import load_image

    record = COCOInstances(COCO_PERSON / "annotations" / "person_val2017_subset.json", COCO_PERSON / "val2017")[0]
    sample = InstanceTrainTransform(args.short, args.max_size)(load_image(record.path), record.boxes, record.classes,
                                                                record.polygons, flip=False)  # fmt: skip
    example = training_example(sample, sample.image.shape[:2], "fpn" in model, len(sample.boxes), seed=(0, 0))
    return stack_examples([example])


def kseg_rate(model, batch, args):
    import kseg
    from kseg.training import GluonSGD, StepWarmupSchedule, bias_l2_multipliers
    from kseg.training.mask_rcnn import MaskRCNNTraining

    trainer = MaskRCNNTraining(kseg.models.get(model))
    optimizer = GluonSGD(StepWarmupSchedule(0.01, 1000), momentum=0.9, l2_decay=1e-4,
                         l2_multipliers=bias_l2_multipliers(trainer.trainable_variables))  # fmt: skip
    trainer.compile(optimizer=optimizer, jit_compile=False)
    for _ in range(1 + args.warmup):
        trainer.train_on_batch(batch)
    times = []
    for _ in range(args.iters):
        start = time.perf_counter()
        trainer.train_on_batch(batch)  # returns the losses as numpy: the step is done
        times.append(time.perf_counter() - start)
    return statistics.median(times), trainer


def gluoncv_rate(model, batch, trainer, args):
    """GluonCV's step on the same image and targets; the RCNN samples are kseg's draw for it."""
    from kseg.ops.rcnn_targets import rcnn_sample

    # Which RoIs are sampled does not change the cost: kseg's sampler on proposals jittered around the gt.
    rng = np.random.default_rng(0)
    boxes = batch["gt_boxes"][0]
    picks = boxes[rng.integers(0, len(boxes), 2000)]
    size = np.concatenate([picks[:, 2:] - picks[:, :2]] * 2, axis=1)
    proposals = (picks + rng.normal(0, 0.2, picks.shape) * size).astype(np.float32)
    settings = trainer.settings
    rois, labels, matches = rcnn_sample(proposals[None], np.ones((1, 2000), np.float32), boxes[None],
                                        rng.random((1, 2000 + len(boxes))).astype(np.float32),
                                        settings.num_sample, settings.max_positive)  # fmt: skip
    inputs = {"image": np.transpose(batch["images"], (0, 3, 1, 2)), "gt_boxes": batch["gt_boxes"],
              "gt_labels": batch["gt_classes"].astype(np.float32), "gt_masks": batch["gt_masks"].astype(np.float32),
              "rpn_cls_target": batch["rpn_cls_target"], "rpn_box_target": batch["rpn_box_target"],
              "rpn_box_mask": np.repeat(batch["rpn_box_weight"][..., None], 4, -1), "rois": rois.numpy(),
              "samples": labels.numpy().astype(np.float32), "matches": matches.numpy().astype(np.float32)}  # fmt: skip
    with tempfile.TemporaryDirectory() as folder:
        np.savez(Path(folder) / "in.npz", **inputs)
        command = [args.gluoncv_python, str(REPO / "tools" / "gluoncv_rcnn_train_reference.py"), "train-step",
                   "--model", model, "--seed", "0", "--steps", str(1 + args.warmup + args.iters),
                   "--in", str(Path(folder) / "in.npz"), "--out", str(Path(folder) / "out.npz")]  # fmt: skip
        env = dict(os.environ, OMP_NUM_THREADS=str(args.threads), MXNET_CPU_WORKER_NTHREADS=str(args.threads))
        result = subprocess.run(command, capture_output=True, text=True, env=env)
        if result.returncode:
            raise RuntimeError(f"GluonCV's train-step failed: {result.stderr[-2000:]}")
        meta = json.loads(str(np.load(Path(folder) / "out.npz")["meta"]))
    times = meta["info"]["step_seconds"][1 + args.warmup :]
    return statistics.median(times)


def main(argv=None):
    args = parse_args(argv)
    import tensorflow as tf

    tf.config.threading.set_intra_op_parallelism_threads(args.threads)  # before TensorFlow starts
    rows = []
    for model in args.models.split(","):
        batch = one_image_batch(model, args)
        ours, trainer = kseg_rate(model, batch, args)
        theirs = None if args.no_gluoncv else gluoncv_rate(model, batch, trainer, args)
        height, width = batch["images"].shape[1:3]
        rows.append((model, f"{height}x{width}", ours, theirs))
        ratio = f"{theirs / ours:.2f}x" if theirs else "-"
        print(f"{model} {height}x{width}: kseg {ours:.2f} s/step, GluonCV {theirs or float('nan'):.2f} s/step, "
              f"kseg {ratio} GluonCV's rate", flush=True)  # fmt: skip
    if args.no_write:
        return
    lines = [
        "",
        f"## Mask R-CNN training steps, kseg vs GluonCV ({time.strftime('%Y-%m-%d')}, "
        f"`benchmarks/mask_rcnn_train_speed.py`, one image per step, {args.threads} threads, one run)",
        "",
        "| model | image | kseg s/step | GluonCV s/step | kseg's rate / GluonCV's |",
        "|---|---|---|---|---|",
    ]
    for model, size, ours, theirs in rows:
        ratio = f"{theirs / ours:.2f}x" if theirs else "-"
        lines.append(f"| {model} | {size} | {ours:.2f} | {theirs:.2f} | {ratio} |" if theirs
                     else f"| {model} | {size} | {ours:.2f} | - | - |")  # fmt: skip
    with open(args.results, "a") as f:
        f.write("\n".join(lines) + "\n")
    print(f"Appended to {args.results}")


if __name__ == "__main__":
    main()
