"""Convert a GluonCV segmentation ``.params`` file to kseg ``.weights.h5``.

    python tools/convert_gluoncv.py --model deeplab_resnet101_voc \
        --params deeplab_resnet101_voc-311ed22c.params --out deeplab_resnet101_voc.weights.h5 --verify

The output holds the full zoo model (with the auxiliary head where GluonCV's
file has one) and is written atomically. ``--verify`` checks the file's SHA-1
against GluonCV's model store first.
"""

import hashlib
import sys
from pathlib import Path

from absl import app, flags

FLAGS = flags.FLAGS
flags.DEFINE_string("model", None, "Zoo name, e.g. deeplab_resnet101_voc.")
flags.DEFINE_string("params", None, "GluonCV .params file.")
flags.DEFINE_string("out", None, "Output path ending in .weights.h5.")
flags.DEFINE_bool("verify", False, "Check the .params SHA-1 against GluonCV's model store.")


def sha1_of(path, chunk=1 << 20):
    digest = hashlib.sha1()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def convert(model_name, params, out, verify=False):
    """Convert and write atomically; returns the built model."""
    import kseg
    from kseg.utils.io import atomic_path

    entry = kseg.models.get_entry(model_name)
    params, out = Path(params), Path(out)
    if not out.name.endswith(".weights.h5"):
        raise ValueError(f"--out must end in .weights.h5 (Keras' weights format), got {out}")
    if not params.is_file():
        raise FileNotFoundError(f"GluonCV file not found: {params}")
    if verify:
        actual = sha1_of(params)
        if actual != entry.sha1:
            raise ValueError(
                f"SHA-1 mismatch for {params}: {actual}, but GluonCV's {entry.gluoncv_file} has {entry.sha1}"
            )
    model = kseg.models.get(model_name, weights=params, aux=entry.aux)
    with atomic_path(out, suffix=".weights.h5") as tmp:
        model.save_weights(tmp)
    return model


def main(argv):
    del argv
    for name in ("model", "params", "out"):
        if not getattr(FLAGS, name):
            print(f"error: --{name} is required", file=sys.stderr)
            return 2
    try:
        model = convert(FLAGS.model, FLAGS.params, FLAGS.out, FLAGS.verify)
    except (ValueError, FileNotFoundError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    print(f"wrote {FLAGS.out}: {model.name}, {model.count_params():,} parameters")
    return 0


if __name__ == "__main__":
    app.run(main)
