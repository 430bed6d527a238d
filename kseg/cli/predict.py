"""Segment images with a zoo model and write colour masks and overlays.

    kseg predict --model psp_resnet101_ade --weights pretrained --out predictions street.jpg room.png

For every image it writes ``{stem}_mask.png`` (a palettised PNG in GluonCV's
colours, see ``kseg.visualize.colorize``) and ``{stem}_overlay.png`` (the mask
blended over the image), and prints the classes found. Prediction is single
scale at the image's own size, as GluonCV's demos; ``--multi-scale`` uses
GluonCV's evaluation protocol instead (scales 0.5-1.75, flipped, crop windows).
"""

import argparse
import sys
from pathlib import Path

from kseg.presets import CLASSES_BY_DATASET, DATASET_KEYS, INSTANCE, SEMANTIC, get_preset
from kseg.utils.limits import PREDICT_MAX_PIXELS as DEFAULT_MAX_PIXELS
from kseg.utils.memory import cap_malloc_arenas


def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("images", nargs="+", type=Path, help="image files (any format PIL reads)")
    parser.add_argument("--model", required=True, help="a zoo name, e.g. fcn_resnet50_ade")
    parser.add_argument("--weights", default="pretrained",
                        help="'pretrained', a .params/.weights.h5 path, or 'none' (random weights)")
    parser.add_argument("--dataset", choices=DATASET_KEYS, help="palette and class names (default: the model's)")
    parser.add_argument("--out", type=Path, default=Path("predictions"), help="output folder")
    parser.add_argument("--multi-scale", action="store_true", help="GluonCV's multi-scale, flipped protocol")
    parser.add_argument("--no-flip", action="store_true", help="with --multi-scale: leave the flipped pass out")
    parser.add_argument("--base-size", type=int, help="with --multi-scale: GluonCV's base size (default: the model's)")
    parser.add_argument("--crop-size", type=int, help="with --multi-scale: GluonCV's crop size (default: the model's)")
    parser.add_argument("--alpha", type=float, default=0.5, help="overlay opacity of the mask, in [0, 1]")
    parser.add_argument("--score-threshold", type=float, default=0.5, help="Mask R-CNN: draw detections above this")
    parser.add_argument("--max-pixels", type=int, default=DEFAULT_MAX_PIXELS,
                        help=f"skip larger images, which would not fit in memory (default {DEFAULT_MAX_PIXELS:,}; "
                        "0: no limit)")
    parser.add_argument("--precision", choices=("float32", "mixed_bfloat16"), default="float32",
                        help="mixed_bfloat16: bfloat16 arithmetic, about 1.4x faster on CPUs with AVX512-BF16 "
                        "(refused on CPUs without it)")
    parser.add_argument("--window-batch", type=int, default=2,
                        help="with --multi-scale: crop windows per model call (more is faster, and takes more memory)")
    args = parser.parse_args(argv)
    single_scale_only = [flag for flag, given in (("--no-flip", args.no_flip), ("--base-size", args.base_size),
                                                  ("--crop-size", args.crop_size)) if given]
    if single_scale_only and not args.multi_scale:
        parser.error(f"--multi-scale is needed for {', '.join(single_scale_only)}")
    for flag, size in (("--base-size", args.base_size), ("--crop-size", args.crop_size)):
        if size is not None and size < 1:
            parser.error(f"{flag} must be positive, got {size}")
    if not 0.0 <= args.alpha <= 1.0:
        parser.error(f"--alpha must lie in [0, 1], got {args.alpha}")
    if not 0.0 <= args.score_threshold <= 1.0:
        parser.error(f"--score-threshold must lie in [0, 1], got {args.score_threshold}")
    if args.max_pixels < 0:
        parser.error(f"--max-pixels must be 0 (no limit) or positive, got {args.max_pixels}")
    if args.window_batch < 1:
        parser.error(f"--window-batch must be positive, got {args.window_batch}")
    return args


def check_files(args):
    """Name missing and unreadable images and clashing outputs before TensorFlow and the model load.

    Returns ``(path, reason)`` of the images that cannot be predicted; when no image can, that is an error.
    """
    from PIL import Image, UnidentifiedImageError

    from kseg.data.preprocessing import exif_orientation

    bad = []
    for path in args.images:  # opening reads the header only: cheap, and before any model or download
        if not path.is_file():
            bad.append((path, "Image not found"))
            continue
        try:
            with Image.open(path):
                pass
        except (UnidentifiedImageError, OSError, ValueError) as error:
            bad.append((path, f"Not an image file PIL can read ({error})"))
            continue
        orientation = exif_orientation(path)
        if orientation not in (None, 1):
            print(f"{path.name}: its EXIF orientation ({orientation}) is ignored: kseg reads the pixels as stored, "
                  "as GluonCV does", file=sys.stderr)
    if len(bad) == len(args.images):
        raise SystemExit("; ".join(f"{reason}: {path}" for path, reason in bad))
    stems = [p.stem for p in args.images]
    clashes = sorted({s for s in stems if stems.count(s) > 1})
    if clashes:
        raise SystemExit(f"Several images share the name {', '.join(clashes)}; their PNGs would overwrite each other")
    if args.weights.lower() not in ("pretrained", "none") and not Path(args.weights).is_file():
        raise SystemExit(f"--weights: no file {args.weights}")
    for path, reason in bad:
        print(f"{path}: skipped: {reason}", file=sys.stderr)
    return bad


def check_dataset(args, preset):
    """The palette's data set; its classes must be the model's."""
    dataset = args.dataset or preset.dataset
    if len(CLASSES_BY_DATASET[dataset]) != preset.num_classes:
        raise SystemExit(
            f"--dataset {dataset} has {len(CLASSES_BY_DATASET[dataset])} classes, "
            f"but {preset.name} predicts {preset.num_classes}"
        )
    return dataset


def make_predictor(args, model):
    """The model's predictor: semantic single or multi-scale, or Mask R-CNN's (drawn above --score-threshold)."""
    from kseg.evaluation import InstancePredictor, MultiScalePredictor, Predictor

    if model.metadata.task == INSTANCE:
        return InstancePredictor(model, score_threshold=args.score_threshold, exact_masks=False)
    if args.multi_scale:
        return MultiScalePredictor(model, args.base_size, args.crop_size, flip=not args.no_flip,
                                   max_batch=args.window_batch, jit_compile=None, verbose=1)
    return Predictor(model, jit_compile=None)


def main(argv=None):
    """Run the command; returns what was written for every image (see ``kseg.evaluation.predict_files``)."""
    args = parse_args(argv)
    cap_malloc_arenas()  # tools/predict.py comes here without the kseg command's start-up
    bad = check_files(args)
    try:
        preset = get_preset(args.model)
    except ValueError as error:
        raise SystemExit(str(error)) from None
    if preset.task == INSTANCE:
        if args.multi_scale or args.dataset not in (None, "coco"):
            raise SystemExit("Mask R-CNN predicts single scale on COCO's classes (no --multi-scale or --dataset)")
        dataset = None
    elif preset.task == SEMANTIC:
        dataset = check_dataset(args, preset)
    else:
        raise SystemExit(f"{preset.name} is a {preset.task} model: it predicts no classes")

    import kseg
    from kseg.evaluation import predict_files
    from kseg.weights.download import DownloadError

    try:
        model = kseg.models.get(args.model, weights=args.weights, strict=True, precision=args.precision)
    except (FileNotFoundError, DownloadError, ValueError) as error:
        raise SystemExit(str(error)) from None
    readable = [path for path in args.images if path not in {p for p, _ in bad}]
    failed = []
    written = predict_files(make_predictor(args, model), readable, args.out, dataset, args.alpha,
                            max_pixels=args.max_pixels, failed=failed)
    failed = bad + failed
    if failed:
        hint = " (--max-pixels 0 lifts the size limit)" if any("declares" in why for _, why in failed) else ""
        raise SystemExit(f"{len(failed)} of {len(args.images)} image(s) not predicted{hint}: "
                         + ", ".join(str(path) for path, _ in failed))
    return written


if __name__ == "__main__":
    main()
