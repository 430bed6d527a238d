"""Images in, colour masks and overlays out: what ``tools/predict.py`` and ``train.py --predict`` write."""

import sys
from pathlib import Path

import numpy as np


def _say(line, bar_drawn):
    """Print above the progress bar: clear its line first (Keras redraws it below, with no newline until done)."""
    if bar_drawn:
        sys.stdout.write("\r\033[K")
    print(line, flush=True)


def predict_images(predictor, image_paths, out_dir, dataset, alpha=0.5):
    """Write ``{stem}_mask.png`` and ``{stem}_overlay.png`` for every image; return their paths.

    ``predictor``: a :class:`kseg.evaluation.Predictor`-like object (``predict(normalised [H, W, 3])``)
    or a Keras model (predicted single scale at the image's size).
    """
    import keras

    from kseg import visualize
    from kseg.data.preprocessing import load_image, normalize_image
    from kseg.evaluation import Predictor

    if isinstance(predictor, keras.Model):
        predictor = Predictor(predictor, jit_compile=None)
    out_dir = Path(out_dir)
    paths = [Path(p) for p in image_paths]
    progress = keras.utils.Progbar(len(paths), unit_name="image") if len(paths) > 1 else None
    written = []
    for i, path in enumerate(paths):
        image = load_image(path)
        labels = np.asarray(predictor.predict(normalize_image(image)))
        mask_path, overlay_path = out_dir / f"{path.stem}_mask.png", out_dir / f"{path.stem}_overlay.png"
        visualize.save_png(mask_path, visualize.colorize(labels, dataset))
        visualize.save_png(overlay_path, visualize.overlay(image, labels, dataset, alpha))
        found = ", ".join(f"{name} {share:.1%}" for name, _, share in visualize.legend(labels, dataset))
        _say(f"{path.name}: {found} -> {mask_path}, {overlay_path}", progress is not None and i > 0)
        written.append((mask_path, overlay_path))
        if progress is not None:
            progress.update(i + 1)
    return written
