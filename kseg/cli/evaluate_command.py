"""``recipes/test.py``: flags and the run (the flags are GluonCV's test.py's).

The model's task (its preset's) chooses the evaluation: pixAcc/mIoU or
submission PNGs for semantic models (:func:`kseg.evaluation.evaluate_semantic`),
COCO AP for Mask R-CNN (:func:`kseg.evaluation.evaluate_coco`).
"""

import os
import time

from absl import flags

import kseg
from kseg.cli.flags import dataset_root, jit_compile, value
from kseg.presets import INSTANCE, PRESETS, SEMANTIC


def define_test_flags():
    flags.DEFINE_boolean("eval", False, "pixAcc/mIoU on a labelled split (default val), written to metrics.json.")
    flags.DEFINE_enum("mode", "testval", ["testval", "val"], "testval: full images; val: centre crops.")
    flags.DEFINE_string("split", None, "Split to read (default: val with --eval, test without).")
    flags.DEFINE_boolean("multi-scale", True, "GluonCV's multi-scale protocol (--nomulti-scale: one scale).")
    flags.DEFINE_list("scales", ["0.5", "0.75", "1.0", "1.25", "1.5", "1.75"], "Scales of the multi-scale protocol.")
    flags.DEFINE_boolean("flip", True, "Add horizontally flipped predictions (multi-scale protocol).")
    flags.DEFINE_integer("window-batch", 8, "Windows (flips included) per model call in the multi-scale protocol.",
                         lower_bound=1)
    flags.DEFINE_string("out-dir", "outdir", "Folder for metrics.json and prediction PNGs.")
    flags.DEFINE_boolean("save-predictions", False, "With --eval, also write the prediction PNGs.")
    flags.DEFINE_integer("max-images", None, "Only the first N images (quick checks).", lower_bound=1)
    flags.DEFINE_string("annotations", None, "Mask R-CNN: instances JSON (default annotations/instances_SPLIT.json).")
    flags.DEFINE_integer("short", None, "Mask R-CNN: the test image's short side (default GluonCV's 800).",
                         lower_bound=1)
    flags.DEFINE_integer("max-size", None, "Mask R-CNN: the test image's longest side (default GluonCV's 1333).",
                         lower_bound=1)


def _weights(default):
    """``--weights``/``--resume``: 'pretrained', 'none' or a path (``default`` when neither is given)."""
    weights = value("weights") or value("resume") or default
    return None if weights is None or weights.lower() == "none" else weights


def run_instance_test(name):
    """COCO bbox and segm AP with pycocotools, as GluonCV's Mask R-CNN evaluation."""
    from kseg.evaluation import STAT_NAMES, evaluate_coco

    if (value("dataset") or "coco") != "coco":
        raise ValueError(f"{name} is a COCO instance model: use --dataset coco")
    if not value("eval"):
        raise ValueError("Mask R-CNN models are evaluated with --eval (COCO AP); kseg predict draws their detections")
    model = kseg.models.get(name, weights=_weights("pretrained"), strict=True)
    split = value("split") or "val2017"
    split = "val2017" if split == "val" else split
    out_dir = value("out-dir")
    report = evaluate_coco(
        model, dataset_root() or ".", split, annotations=value("annotations"), max_images=value("max-images"),
        short=value("short"), max_size=value("max-size"), jit_compile=jit_compile(), out_dir=out_dir,
    )  # fmt: skip
    for iou_type in ("bbox", "segm"):
        stats = "  ".join(f"{key} {100 * report[iou_type][key]:.1f}" for key in STAT_NAMES)
        print(f"{iou_type}: {stats}")
    published = PRESETS[name].metrics
    print(f"{report['images']} images, {report['detections']} detections; GluonCV published {published} "
          f"on COCO val2017; metrics: {os.path.join(out_dir, 'metrics.json')}")
    return report


def run_semantic_test(model_zoo):
    """pixAcc/mIoU (``--eval``) or submission PNGs, as GluonCV's test.py."""
    from kseg.evaluation import EvalSettings, evaluate_semantic, write_metrics
    from kseg.models import choose_model

    choice = choose_model(model_zoo, value("model"), value("backbone"), value("dataset"))
    with_metrics = value("eval")
    split = value("split") or ("val" if with_metrics else "test")
    dataset = kseg.data.get_dataset(choice.dataset, split=split, root=dataset_root())
    weights = _weights("pretrained" if choice.preset is not None else None)
    # Inference: a class layer left untrained (GluonCV's file on a data set of other classes) is refused.
    model = choice.build(
        weights, output_stride=value("output-stride"), strict=True,
        metadata=choice.metadata(value("base-size"), value("crop-size")),
    )  # fmt: skip
    settings = EvalSettings(
        mode=value("mode"),
        multi_scale=value("multi-scale"),
        scales=tuple(float(s) for s in value("scales")),
        flip=value("flip"),
        batch_size=value("batch-size"),
        window_batch=value("window-batch"),
        jit_compile=jit_compile(),
        max_images=value("max-images"),
    ).for_model(model)

    out_dir = value("out-dir")
    scales = f"scales {list(settings.scales)}{' + flip' if settings.flip else ''}"
    print(
        f"{choice.name} on {dataset.name}/{split} ({len(dataset)} images), {settings.mode} mode, "
        f"{scales if settings.multi_scale else 'single scale'}, base {settings.base_size} crop {settings.crop_size}"
    )
    result = evaluate_semantic(
        model,
        dataset,
        settings,
        out_dir=out_dir,
        compute_metrics=with_metrics,
        save_predictions=value("save-predictions") or not with_metrics,
    )
    if not with_metrics:
        print(f"Wrote {result['images']} prediction PNGs to {out_dir}")
        return result

    report = {
        "model": choice.name,
        "weights": str(weights),
        "dataset": dataset.name,
        "split": split,
        "dataset_root": str(dataset.root),
        "mode": settings.mode,
        "multi_scale": settings.multi_scale,
        "scales": list(settings.scales) if settings.multi_scale else [1.0],
        "flip": settings.flip and settings.multi_scale,
        "base_size": settings.base_size,
        "crop_size": settings.crop_size,
        **result,
        "gluoncv_reported": choice.preset.metrics if choice.preset else None,
        "kseg_version": kseg.__version__,
        "finished": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    path = os.path.join(out_dir, "metrics.json")
    write_metrics(path, report)
    print(f"pixAcc {100 * result['pixAcc']:.2f}  mIoU {100 * result['mIoU']:.2f}  ({result['images']} images): {path}")
    return report


RUNNERS = {SEMANTIC: run_semantic_test, INSTANCE: run_instance_test}


def run_test(_flags=None):
    """Build the model and data set from the flags, evaluate or predict, and return the result dict."""
    name = value("model-zoo")
    task = kseg.presets.get_preset(name).task if name else SEMANTIC
    if task not in RUNNERS:
        raise ValueError(f"{name} is a {task} model; test.py evaluates semantic and instance segmentation models")
    return RUNNERS[task](name)
