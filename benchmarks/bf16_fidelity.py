"""How far mixed_bfloat16 inference strays from float32: logit error on GluonCV-written weights, pixel agreement
on a trained model.

    python benchmarks/bf16_fidelity.py --params-dir .ci-cache/parity/seed0_480x480x1_97x131x2 \\
        --images '../shared/realdata/ADEChallengeData2016/images/validation/*.jpg' \\
        --trained fcn:resnet18_v1b:19:16=runs/quickstart/fcn_resnet18_v1b_citys.weights.h5 \\
        --trained-images '../shared/realdata/cityscapes/leftImg8bit/*/*/*.png' --results benchmarks/RESULTS.md

For every zoo model with a GluonCV ``.params`` file in ``--params-dir`` (the
parity tests' files: GluonCV's own random initialisation, written by GluonCV),
builds kseg's model in float32 and in mixed_bfloat16 from the same file and
runs both on ``--images`` at ``--size``: the largest logit difference over the
largest float32 logit, and the share of pixels of the same class. With
``--trained METHOD:BACKBONE:CLASSES:STRIDE=WEIGHTS`` it does the same for a
trained model on ``--trained-images`` (at their own size), where the class
agreement means something: random weights give near-ties.
"""

import argparse
import glob
import os
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--params-dir", type=Path, default=None, help="folder of NAME.params (GluonCV-written)")
    parser.add_argument("--models", default=None, help="comma-separated zoo names (default: every file found)")
    parser.add_argument("--images", default=None, help="globs of images for the zoo models (comma-separated)")
    parser.add_argument("--size", default="480x480", help="HEIGHTxWIDTH the zoo models' images are resized to")
    parser.add_argument("--trained", default=None, help="METHOD:BACKBONE:CLASSES:STRIDE=WEIGHTS.weights.h5")
    parser.add_argument("--trained-images", default=None, help="globs of images for the trained model")
    parser.add_argument("--results", type=Path, default=None, help="append the table to this Markdown file")
    return parser.parse_args(argv)


def load_images(pattern, size=None):
    from PIL import Image

    from kseg.data.preprocessing import load_image

    images = []
    paths = sorted({path for part in pattern.split(",") for path in glob.glob(part)})
    for path in paths:
        image = load_image(path)
        if size is not None:
            image = np.asarray(Image.fromarray(image).resize(size[::-1], Image.BILINEAR))
        images.append(image)
    if not images:
        raise SystemExit(f"no images match {pattern}")
    return images


def compare(build, images):
    """(largest |bf16 - f32| / largest |f32| over the images, share of pixels of the same class)."""
    import tensorflow as tf

    from kseg.data.preprocessing import normalize_image
    from kseg.evaluation.predictor import main_logits

    logits = {}
    for precision in ("float32", "mixed_bfloat16"):
        model = build(precision)
        call = tf.function(lambda x, m=model: tf.cast(main_logits(m(x, training=False)), tf.float32))
        logits[precision] = [call(normalize_image(image[None])).numpy()[0] for image in images]
    errors, same = [], []
    for f32, bf16 in zip(logits["float32"], logits["mixed_bfloat16"], strict=True):
        errors.append(np.abs(bf16 - f32).max() / np.abs(f32).max())
        same.append(np.mean(bf16.argmax(-1) == f32.argmax(-1)))
    return float(max(errors)), float(np.mean(same))


def main(argv=None):
    args = parse_args(sys.argv[1:] if argv is None else argv)
    import kseg
    from kseg.cli.export import parse_input_size
    from kseg.ops.runtime import check_inference_precision

    check_inference_precision("mixed_bfloat16")  # refuses CPUs without bfloat16 arithmetic
    rows = []
    if args.params_dir is not None:
        names = args.models.split(",") if args.models else kseg.models.list_models("semantic")
        images = load_images(args.images, parse_input_size(args.size))
        for name in names:
            params = args.params_dir / f"{name}.params"
            if not params.is_file():
                continue
            start = time.perf_counter()
            error, same = compare(lambda p, n=name, w=params: kseg.models.get(n, weights=w, precision=p), images)
            rows.append((name, "GluonCV-written random weights", f"{len(images)} at {args.size}", error, same))
            print(f"{name}: {error:.2e}, {same:.4%} ({time.perf_counter() - start:.0f} s)", file=sys.stderr)
    if args.trained is not None:
        spec, _, weights = args.trained.partition("=")
        method, backbone, classes, stride = spec.split(":")
        images = load_images(args.trained_images)

        def build(precision):
            from kseg.models.layers import dtype_policy_scope

            with dtype_policy_scope(precision):
                model = kseg.models.build(method, backbone, int(classes), output_stride=int(stride))
            kseg.models.load_model_weights(model, weights, strict=True)
            return model

        error, same = compare(build, images)
        sizes = sorted({f"{image.shape[0]}x{image.shape[1]}" for image in images})
        rows.append((f"{method}_{backbone} ({weights})", "trained", f"{len(images)} at {', '.join(sizes)}", error,
                     same))  # fmt: skip
    lines = [
        f"### mixed_bfloat16 against float32 ({time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())})",
        "",
        "`benchmarks/bf16_fidelity.py`: the same weights built in both policies; the error is the largest logit "
        "difference over the largest float32 logit, per image, worst image.",
        "",
        "| model | weights | images | relative logit error | pixels as float32 |",
        "|---|---|---|---|---|",
        *(f"| {name} | {source} | {images} | {error:.1e} | {same:.2%} |" for name, source, images, error, same in rows),
    ]
    table = "\n".join(lines) + "\n"
    print(table)
    if args.results is not None:
        with open(args.results, "a") as f:
            f.write("\n" + table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
