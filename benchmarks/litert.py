"""LiteRT files of a semantic model: size, speed next to kseg's TensorFlow path, and fidelity to float32.

    python benchmarks/litert.py --model fcn_resnet101_voc --size 480x480
    python benchmarks/litert.py --model fcn_resnet18_v1b --num-classes 19 --output-stride 16 \\
        --weights runs/quickstart/fcn_resnet18_v1b_citys.weights.h5 --size 96x96 \\
        --images 'runs/quickstart/data/cityscapes/leftImg8bit/val/*/*.png' \
        --calibration-images 'runs/quickstart/data/cityscapes/leftImg8bit/train/*/*.png'

Converts the model to float32, float16 and int8 (calibrated on
``--calibration-images``, else ``--images``, else seeded noise), then times,
in one process and one sitting, batch-1 calls of kseg's Keras model (``tf.function``, float32) and of each file in
``ai-edge-litert``'s interpreter (XNNPACK, ``--threads``), and compares the
files' outputs with the Keras model's: the largest probability error and the
share of pixels whose class equals float32 Keras's, on ``--images`` (resized to
``--size``). A zoo name builds the preset (random weights unless ``--weights``);
``METHOD_BACKBONE`` (``fcn_resnet18_v1b``) builds ``kseg.models.build(...)``.
Prints a Markdown table; ``--results`` appends it to a file.
"""

import argparse
import glob
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np


def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", required=True, help="zoo name, or METHOD_BACKBONE (kseg.models.build)")
    parser.add_argument("--weights", default="none", help="'pretrained', a .weights.h5/.params file, or 'none'")
    parser.add_argument("--num-classes", type=int, default=None)
    parser.add_argument("--output-stride", type=int, default=8, help="for METHOD_BACKBONE models")
    parser.add_argument("--size", default="480x480", help="HEIGHTxWIDTH of the files' input")
    parser.add_argument("--images", default=None, help="glob of images: fidelity (and calibration, unless told)")
    parser.add_argument("--calibration-images", default=None, help="glob of images for int8 calibration")
    parser.add_argument("--calibration-count", type=int, default=16)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=5, help="timed calls per path (after one warm-up)")
    parser.add_argument("--results", default=None, help="append the table to this Markdown file")
    return parser.parse_args(argv)


def build_model(args):
    import kseg

    if args.model in kseg.presets.PRESETS:
        return kseg.models.get(args.model, weights=args.weights, num_classes=args.num_classes)
    method, _, backbone = args.model.partition("_")
    model = kseg.models.build(method, backbone, args.num_classes or 21, output_stride=args.output_stride)
    if args.weights != "none":
        kseg.models.load_model_weights(model, args.weights, strict=True)
    return model


def timed(call, repeats):
    call()  # warm-up: tracing, delegate preparation
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        call()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main(argv=None):
    args = parse_args(sys.argv[1:] if argv is None else argv)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import tensorflow as tf
    from ai_edge_litert.interpreter import Interpreter

    from kseg.cli.export import parse_input_size
    from kseg.data.preprocessing import normalize_image
    from kseg.export import QUANTIZATIONS, convert_litert
    from kseg.export.litert import calibration_batches

    tf.config.threading.set_intra_op_parallelism_threads(args.threads)
    tf.config.threading.set_inter_op_parallelism_threads(args.threads)
    size = parse_input_size(args.size)
    files = sorted(glob.glob(args.images)) if args.images else []
    rng = np.random.default_rng(0)
    if files:
        images = [batch[0] for batch in calibration_batches(files, size)]
        source = f"{len(files)} images ({args.images})"
    else:
        images = [rng.integers(0, 256, (*size, 3), dtype=np.uint8) for _ in range(8)]
        source = "8 seeded noise images (no --images given)"
    calibration = images[: args.calibration_count]
    if args.calibration_images:
        calibration_files = sorted(glob.glob(args.calibration_images))[: args.calibration_count]
        calibration = [batch[0] for batch in calibration_batches(calibration_files, size)]
        source += f"; int8 calibrated on {len(calibration)} others ({args.calibration_images})"
    model = build_model(args)
    preprocessing = model.metadata.preprocessing
    keras_call = tf.function(lambda x: model(normalize_image(x, preprocessing.mean, preprocessing.std), training=False))

    def keras_probabilities(image):
        outputs = keras_call(tf.constant(image[None]))
        return tf.nn.softmax(outputs["logits"] if isinstance(outputs, dict) else outputs).numpy()[0]

    reference = [keras_probabilities(image) for image in images]
    rows = [("kseg Keras (TensorFlow, float32)", None, timed(lambda: keras_probabilities(images[0]), args.repeats),
             0.0, 1.0)]  # fmt: skip
    with tempfile.TemporaryDirectory() as folder:
        for quantization in QUANTIZATIONS:
            start = time.perf_counter()
            blob = convert_litert(model, size, quantization, calibration_images=calibration)
            converted = time.perf_counter() - start
            path = Path(folder) / f"{quantization}.tflite"
            path.write_bytes(blob)
            runner = Interpreter(model_path=str(path), num_threads=args.threads).get_signature_runner()
            pairs = [(runner(images=image[None]), r) for image, r in zip(images, reference, strict=True)]
            error = max(float(np.abs(o["probabilities"][0] - r).max()) for o, r in pairs)
            agreement = float(np.mean([np.mean(o["class_map"][0] == r.argmax(-1)) for o, r in pairs]))
            seconds = timed(lambda run=runner: run(images=images[0][None]), args.repeats)
            rows.append((f"LiteRT {quantization} (XNNPACK)", len(blob), seconds, error, agreement))
            print(f"{quantization}: converted in {converted:.1f} s", file=sys.stderr)
    keras_seconds = rows[0][2]
    lines = [
        f"### LiteRT: {model.name} at {size[0]}x{size[1]}, batch 1, {args.threads} threads "
        f"({time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())})",
        "",
        f"Weights: {args.weights}. Fidelity on {source}: largest probability error and share of pixels whose "
        "class equals the float32 Keras model's. Median of "
        f"{args.repeats} calls after one warm-up, in one process. `benchmarks/litert.py`.",
        "",
        "| path | file MiB | ms/img | speed vs Keras | max prob. error | pixels as float32 |",
        "|---|---|---|---|---|---|",
    ]
    for name, size_bytes, seconds, error, agreement in rows:
        mib = "–" if size_bytes is None else f"{size_bytes / 2**20:.1f}"
        lines.append(f"| {name} | {mib} | {seconds * 1000:.0f} | {keras_seconds / seconds:.2f}x | {error:.1e} | "
                     f"{agreement * 100:.2f}% |")  # fmt: skip
    table = "\n".join(lines) + "\n"
    print(table)
    if args.results:
        with open(args.results, "a") as f:
            f.write("\n" + table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
