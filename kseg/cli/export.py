"""Export a zoo model as a SavedModel for TF-Serving.

    kseg export --model psp_resnet101_ade --weights pretrained --out serving/psp_resnet101_ade

writes TF-Serving's versioned layout ``serving/psp_resnet101_ade/1/`` atomically
and prints how to inspect and serve it. The SavedModel's signatures:
``serving_default`` takes RGB uint8 pixels (``images``, ``[B, H, W, 3]``, any
size) and ``serving_bytes`` encoded JPEG/PNG files (``image_bytes``, ``[B]``,
one size per request). Semantic models return ``class_map`` (int32
``[B, H, W]``) and ``probabilities`` (float32 ``[B, H, W, C]``;
``--noprobabilities`` leaves them out, which REST clients want: REST returns
every output); Mask R-CNN models their detections with pasted masks.
Preprocessing happens inside the graph. See ``kseg.export.export_saved_model``.
"""

import shlex
import sys
from pathlib import Path

from absl import app, flags, logging

from kseg.presets import SEMANTIC

FLAGS = flags.FLAGS


def define_flags(flag_values=FLAGS):
    """The command's flags (a function, so that tests can define them in their own FlagValues)."""
    flags.DEFINE_string(
        "model", None, "Zoo name, e.g. psp_resnet101_ade (kseg.models.list_models()).", flag_values=flag_values
    )
    flags.DEFINE_string(
        "weights",
        "pretrained",
        "'pretrained', a GluonCV .params or kseg .weights.h5 file, or 'none' (random weights).",
        flag_values=flag_values,
    )
    flags.DEFINE_integer(
        "num-classes", None, "Classes, when not the zoo entry's (a fine-tuned .weights.h5).", flag_values=flag_values
    )
    flags.DEFINE_string(
        "out",
        None,
        "The model's base folder (TF-Serving's model_base_path); the version goes inside.",
        flag_values=flag_values,
    )
    flags.DEFINE_integer("version", 1, "Version folder number.", lower_bound=0, flag_values=flag_values)
    flags.DEFINE_bool(
        "xla", False, "Compile the model with XLA (needs a TF-Serving build with XLA).", flag_values=flag_values
    )
    flags.DEFINE_bool("overwrite", False, "Replace an existing version folder.", flag_values=flag_values)
    flags.DEFINE_bool(
        "probabilities",
        True,
        "Add the probabilities output (--noprobabilities: class_map only).",
        flag_values=flag_values,
    )


def export(model_name, weights, out, num_classes=None, version=1, xla=False, overwrite=False, probabilities=True):
    """Build, export and return ``(version_dir, model)``; raises ValueError/FileNotFoundError/FileExistsError."""
    import kseg
    from kseg.export import export_saved_model

    preset = kseg.presets.get_preset(model_name)
    if num_classes is not None and num_classes < 1:
        raise ValueError(f"--num-classes must be positive, got {num_classes}")
    if not probabilities and preset.task != SEMANTIC:
        raise ValueError(f"--noprobabilities applies to semantic models; {model_name} returns detections")
    final = Path(out) / str(version)
    if final.exists() and not overwrite:
        raise FileExistsError(f"{final} already exists; pass --overwrite or another --version")
    if weights.lower() not in ("pretrained", "none") and not Path(weights).is_file():
        raise FileNotFoundError(f"--weights: no file {weights}")
    # Another class count than the preset's takes a fine-tuned file of that many classes (strict).
    model = kseg.models.get(model_name, weights=weights, num_classes=num_classes, strict=True)
    task_options = {"include_probabilities": probabilities} if preset.task == SEMANTIC else {}
    path = export_saved_model(model, out, version=version, xla=xla, overwrite=overwrite, **task_options)
    return path, model


def usage(path, model_name, xla):
    """The lines printed after an export: inspect, serve, query."""
    version_dir = shlex.quote(str(path.resolve()))
    base = shlex.quote(str(path.resolve().parent))
    name = shlex.quote(model_name)
    lines = [
        f"inspect: saved_model_cli show --dir {version_dir} --all",
        f"serve:   docker run --rm -p 8500:8500 -p 8501:8501 -v {base}:/models/{name} -e MODEL_NAME={name} "
        "tensorflow/serving",
        'query:   curl -d \'{"signature_name": "serving_bytes", '
        '"instances": [{"b64": "\'"$(base64 -w0 image.jpg)"\'"}]}\' '
        f"http://localhost:8501/v1/models/{name}:predict",
    ]
    if xla:
        lines.append("note:    exported with --xla: it needs a TF-Serving build with XLA (the stock images lack it)")
    return lines


def main(argv, flag_values=FLAGS):
    """Run the command; returns the exit status (0, 1 for a failed export, 2 for bad usage)."""
    if len(argv) > 1:
        print(f"error: unexpected arguments: {' '.join(argv[1:])}", file=sys.stderr)
        return 2
    for name in ("model", "out"):
        if not flag_values[name].value:
            print(f"error: --{name} is required", file=sys.stderr)
            return 2
    try:
        path, model = export(
            flag_values.model,
            flag_values.weights,
            flag_values.out,
            num_classes=flag_values["num-classes"].value,
            version=flag_values.version,
            xla=flag_values.xla,
            overwrite=flag_values.overwrite,
            probabilities=flag_values.probabilities,
        )
    except (ValueError, TypeError, OSError) as error:  # OSError: missing weights, an existing version
        print(f"kseg export: {error}", file=sys.stderr)
        return 1
    from kseg.export import read_metadata

    outputs = ", ".join(read_metadata(path)["signatures"]["serving_default"]["outputs"])
    random = " (random weights)" if flag_values.weights.lower() == "none" else ""
    print(f"wrote {path}: {model.name}{random}, {model.metadata.num_classes} classes")
    print(f"signatures: serving_default (images uint8 [B,H,W,3]), serving_bytes (image_bytes string [B]) -> {outputs}")
    for line in usage(path, model.name, flag_values.xla):
        print(line)
    return 0


if __name__ == "__main__":
    define_flags()
    logging.set_verbosity(logging.WARNING)
    app.run(main)
