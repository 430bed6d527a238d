"""Segment images with a zoo model and write colour masks and overlays.

    python tools/predict.py --model psp_resnet101_ade --weights pretrained --out predictions street.jpg room.png

For every image it writes ``{stem}_mask.png`` (a palettised PNG in GluonCV's
colours, see ``kseg.visualize.colorize``) and ``{stem}_overlay.png`` (the mask
blended over the image), and prints the classes found. Prediction is single
scale at the image's own size, as GluonCV's demos; ``--multi-scale`` uses
GluonCV's evaluation protocol instead.
"""

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("images", nargs="+", type=Path, help="image files (any format PIL reads)")
    parser.add_argument("--model", required=True, help="a zoo name, e.g. fcn_resnet50_ade")
    parser.add_argument("--weights", default="pretrained", help="'pretrained', a .params/.weights.h5 path, or 'none'")
    parser.add_argument("--out", type=Path, default=Path("predictions"), help="output folder")
    parser.add_argument("--multi-scale", action="store_true", help="GluonCV's multi-scale, flipped protocol")
    parser.add_argument("--alpha", type=float, default=0.5, help="overlay opacity of the mask")
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    missing = [str(p) for p in args.images if not p.is_file()]
    if missing:
        raise SystemExit(f"Image not found: {', '.join(missing)}")

    import keras
    import numpy as np

    import kseg
    from kseg import visualize
    from kseg.data.preprocessing import load_image, normalize_image
    from kseg.evaluation import MultiScalePredictor, Predictor

    entry = kseg.models.get_entry(args.model)
    weights = None if args.weights.lower() == "none" else args.weights
    model = kseg.models.get(args.model, weights=weights)
    predictor = MultiScalePredictor(model, jit_compile=None) if args.multi_scale else Predictor(model, jit_compile=None)
    progress = keras.utils.Progbar(len(args.images), verbose=1 if len(args.images) > 1 else 0)
    written = []
    for i, path in enumerate(args.images):
        image = load_image(path)
        labels = np.asarray(predictor.predict(normalize_image(image)))
        mask_path, overlay_path = args.out / f"{path.stem}_mask.png", args.out / f"{path.stem}_overlay.png"
        visualize.save_png(mask_path, visualize.colorize(labels, entry.dataset))
        visualize.save_png(overlay_path, visualize.overlay(image, labels, entry.dataset, args.alpha))
        found = ", ".join(f"{name} {share:.0%}" for name, _, share in visualize.legend(labels, entry.dataset)[:6])
        print(f"{path.name}: {found} -> {mask_path}, {overlay_path}")
        written.append((mask_path, overlay_path))
        progress.update(i + 1)
    return written


if __name__ == "__main__":
    main()
