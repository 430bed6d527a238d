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

    kseg export --model deeplab_resnet101_voc --format tflite --quantization int8 \
        --calibration-images 'photos/*.jpg' --input-size 513x513 --out deeplab_voc_int8.tflite

writes a LiteRT file for phones (``--quantization`` float32, float16 or int8,
calibrated on the images given) and its metadata beside it
(``deeplab_voc_int8.json``). See ``kseg.export.export_litert``.
"""

import glob
import shlex
import sys
from pathlib import Path

from absl import app, flags, logging

from kseg.presets import SEMANTIC

QUANTIZATIONS = ("float32", "float16", "int8")  # kseg.export.QUANTIZATIONS, without importing TensorFlow
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".gif")

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
        "The model's base folder (TF-Serving's model_base_path); the version goes inside. "
        "With --format=tflite: the .tflite file.",
        flag_values=flag_values,
    )
    flags.DEFINE_enum(
        "format", "saved_model", ["saved_model", "tflite"], "A SavedModel for TF-Serving, or a LiteRT file.",
        flag_values=flag_values,
    )
    flags.DEFINE_enum(
        "precision", "float32", ["float32", "mixed_bfloat16"],
        "SavedModels: the compute precision (mixed_bfloat16: bfloat16 arithmetic, float32 outputs; refused where "
        "this machine lacks bfloat16 arithmetic).",
        flag_values=flag_values,
    )
    flags.DEFINE_enum(
        "quantization", "float32", list(QUANTIZATIONS), "LiteRT only: the file's number format.",
        flag_values=flag_values,
    )
    flags.DEFINE_string(
        "calibration-images", None,
        "LiteRT int8: a folder, a file or a glob pattern of images like those the model will see.",
        flag_values=flag_values,
    )
    flags.DEFINE_string(
        "input-size", None, "LiteRT only: HEIGHTxWIDTH the file takes (default: the preset's crop size).",
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


def export(model_name, weights, out, num_classes=None, version=1, xla=False, overwrite=False, probabilities=True,
           precision="float32"):  # fmt: skip
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
    model = kseg.models.get(model_name, weights=weights, num_classes=num_classes, strict=True, precision=precision)
    task_options = {"include_probabilities": probabilities} if preset.task == SEMANTIC else {}
    path = export_saved_model(model, out, version=version, xla=xla, overwrite=overwrite, **task_options)
    return path, model


def calibration_files(pattern):
    """The image files a ``--calibration-images`` value names (a folder, a file or a glob), sorted."""
    path = Path(pattern)
    if path.is_dir():
        files = sorted(p for p in path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    elif path.is_file():
        files = [path]
    else:
        files = sorted(Path(p) for p in glob.glob(pattern) if Path(p).is_file())
    if not files:
        raise FileNotFoundError(f"--calibration-images: no images in {pattern}")
    return files


def parse_input_size(text):
    """``513x513`` (or ``513``) -> (513, 513); ValueError otherwise."""
    parts = str(text).lower().split("x")
    try:
        size = tuple(int(p) for p in parts)
    except ValueError:
        size = ()
    size = size * 2 if len(size) == 1 else size
    if len(size) != 2 or min(size) < 1:
        raise ValueError(f"--input-size: expected HEIGHTxWIDTH, e.g. 480x480, got {text!r}")
    return size


def export_litert_file(model_name, weights, out, quantization="float32", calibration_images=None, input_size=None,
                       num_classes=None, overwrite=False, probabilities=True):  # fmt: skip
    """Build, convert and write a LiteRT file; returns ``(path, model)``; raises ValueError/OSError."""
    import kseg
    from kseg.export import export_litert

    preset = kseg.presets.get_preset(model_name)
    if preset.task != SEMANTIC:
        raise ValueError(f"--format=tflite covers semantic models; {model_name} is a {preset.task} model")
    if num_classes is not None and num_classes < 1:
        raise ValueError(f"--num-classes must be positive, got {num_classes}")
    if quantization == "int8" and not calibration_images:
        raise ValueError("--quantization=int8 needs --calibration-images (images like those the model will see)")
    files = calibration_files(calibration_images) if calibration_images else None
    size = parse_input_size(input_size) if input_size else None
    if weights.lower() not in ("pretrained", "none") and not Path(weights).is_file():
        raise FileNotFoundError(f"--weights: no file {weights}")
    model = kseg.models.get(model_name, weights=weights, num_classes=num_classes, strict=True)
    path = export_litert(
        model, out, input_size=size, quantization=quantization, calibration_images=files,
        include_probabilities=probabilities, overwrite=overwrite,
    )  # fmt: skip
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
    litert = flag_values.format == "tflite"
    if not litert:
        for name in ("calibration-images", "input-size"):
            if flag_values[name].present:
                print(f"error: --{name} applies to --format=tflite", file=sys.stderr)
                return 2
        if flag_values.quantization != "float32":
            print("error: --quantization applies to --format=tflite", file=sys.stderr)
            return 2
    elif flag_values.xla or flag_values["version"].present or flag_values.precision != "float32":
        print("error: --xla, --version and --precision apply to SavedModels, not to --format=tflite "
              "(its number format is --quantization)", file=sys.stderr)  # fmt: skip
        return 2
    if litert:
        return _main_litert(flag_values)
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
            precision=flag_values.precision,
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


def _main_litert(flag_values):
    try:
        path, model = export_litert_file(
            flag_values.model,
            flag_values.weights,
            flag_values.out,
            quantization=flag_values.quantization,
            calibration_images=flag_values["calibration-images"].value,
            input_size=flag_values["input-size"].value,
            num_classes=flag_values["num-classes"].value,
            overwrite=flag_values.overwrite,
            probabilities=flag_values.probabilities,
        )
    except (ValueError, TypeError, OSError) as error:
        print(f"kseg export: {error}", file=sys.stderr)
        return 1
    from kseg.export import read_litert_metadata

    metadata = read_litert_metadata(path)
    random = " (random weights)" if flag_values.weights.lower() == "none" else ""
    shape = "x".join(str(side) for side in metadata["input"]["shape"])
    size_mib = path.stat().st_size / 2**20
    print(f"wrote {path} ({size_mib:.1f} MiB, {metadata['quantization']}): {model.name}{random}, "
          f"{metadata['num_classes']} classes; metadata in {path.with_suffix('.json')}")  # fmt: skip
    print(f"input: images uint8 [{shape}] RGB -> {', '.join(metadata['outputs'])}")
    print(f"run:   ai_edge_litert.interpreter.Interpreter(model_path={str(path)!r}).get_signature_runner()(images=x)")
    return 0


if __name__ == "__main__":
    define_flags()
    logging.set_verbosity(logging.WARNING)
    app.run(main)
