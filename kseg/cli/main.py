"""The ``kseg`` command: list, info, convert, predict, export, bench.

    kseg list
    kseg info psp_resnet101_ade
    kseg convert --model psp_resnet101_ade --params psp_resnet101_ade-240a4758.params --out psp.weights.h5
    kseg predict street.jpg --model psp_resnet101_ade --out predictions
    kseg export --model psp_resnet101_ade --out serving/psp_resnet101_ade
    kseg export --model fcn_resnet101_voc --format tflite --quantization float16 --out fcn_voc.tflite
    kseg bench fcn_resnet101_voc --batch-sizes 1

Exit codes: 0 done, 1 failed (the reason on stderr), 2 bad usage.
"""

import argparse
import json
import os
import sys

from kseg.presets import BACKBONE, DATASET_KEYS, INSTANCE, PRESETS, SEMANTIC, get_preset, list_presets
from kseg.utils.paths import kseg_home

# Everything up to a subcommand's own work reads plain tables: `kseg --help`, `list` and `info` load no TensorFlow.
COMMANDS = {
    "list": "the zoo's models with GluonCV's scores",
    "info": "one model's metadata, weights file and cache state",
    "convert": "a GluonCV .params file to a kseg .weights.h5",
    "predict": "colour masks and overlays for image files",
    "export": "a SavedModel for TF-Serving, or a LiteRT file (--format=tflite)",
    "bench": "throughput and latency of a model",
}


def _usage():
    lines = [__doc__.split("\n")[0], "", "usage: kseg COMMAND [--help] [--debug] ...", "", "commands:"]
    lines += [f"  {name:<8} {text}" for name, text in COMMANDS.items()]
    return "\n".join(lines)


def _describe(preset):
    """(method, backbone) of a preset, as ``kseg list`` shows them."""
    architecture = preset.architecture
    if preset.task == SEMANTIC:
        return architecture["method"], architecture["backbone"]
    if preset.task == INSTANCE:
        method = "mask_rcnn_fpn" if architecture["fpn"] else "mask_rcnn"
        return method, f"resnet{architecture['depth']}_{architecture['variant']}"
    return "backbone", preset.name


# The columns of each task's table in `kseg list`: (heading, metric key).
_TABLE_METRICS = {
    SEMANTIC: (("pixAcc", "pixAcc"), ("mIoU", "mIoU")),
    INSTANCE: (("boxAP", "box AP"), ("mskAP", "mask AP")),
    BACKBONE: (("top-1", "top-1"),),
}


def _score(value):
    return "-" if value is None else f"{value:.1f}"


def _summary(preset):
    method, backbone = _describe(preset)
    return {
        "name": preset.name,
        "task": preset.task,
        "method": method,
        "backbone": backbone,
        "dataset": preset.dataset,
        "num_classes": preset.num_classes,
        "metrics": dict(preset.metrics),
    }


def _list(argv):
    parser = argparse.ArgumentParser(prog="kseg list", description=COMMANDS["list"])
    parser.add_argument("--dataset", choices=(*DATASET_KEYS, "imagenet"), help="only this data set")
    parser.add_argument("--task", choices=("semantic", "instance", "backbone"), help="only this task")
    parser.add_argument("--json", action="store_true", help="JSON instead of a table")
    args = parser.parse_args(argv)
    presets = [PRESETS[name] for name in list_presets(args.task)]
    presets = [p for p in presets if args.dataset in (None, p.dataset)]
    if args.json:
        print(json.dumps([_summary(p) for p in presets], indent=2))
        return 0
    for task, columns in _TABLE_METRICS.items():
        rows = [p for p in presets if p.task == task]
        if not rows:
            continue
        header = f"{'name':<36} {'method':<16} {'backbone':<14} {'dataset':<10} {'classes':>7}"
        print(header + "".join(f" {heading:>6}" for heading, _ in columns))
        for p in rows:
            method, backbone = _describe(p)
            classes = "-" if p.num_classes is None else p.num_classes
            scores = "".join(f" {_score(p.metrics.get(key)):>6}" for _, key in columns)
            print(f"{p.name:<36} {method:<16} {backbone:<14} {p.dataset:<10} {classes:>7}{scores}")
        print()
    return 0


def _info(argv):
    parser = argparse.ArgumentParser(prog="kseg info", description=COMMANDS["info"])
    parser.add_argument("name", help="a zoo name (kseg list)")
    args = parser.parse_args(argv)
    preset = get_preset(args.name)
    home = kseg_home()
    weights = preset.weights
    cached = [str(p) for p in (home / f"{preset.name}.weights.h5", home / weights.gluoncv_file) if p.is_file()]
    metadata = preset.metadata
    info = {
        **_summary(preset),
        "builder": preset.builder,
        "architecture": dict(preset.architecture),
        "preprocessing": metadata.preprocessing.to_config(),
        "evaluation": metadata.evaluation,
        "num_params": metadata.num_params,
        "gluoncv_file": weights.gluoncv_file,
        "sha1": weights.sha1,
        "url": weights.url,
        "converter": weights.converter,
        "recipe": metadata.recipe,
        "notes": metadata.notes,
        "cache": str(home),
        "cached_files": cached,
        "classes": None if preset.classes is None else list(preset.classes),
    }
    print(json.dumps(info, indent=2))
    return 0


def _convert(argv):
    parser = argparse.ArgumentParser(prog="kseg convert", description=COMMANDS["convert"])
    parser.add_argument("--model", required=True, help="zoo name, e.g. deeplab_resnet101_voc")
    parser.add_argument("--params", required=True, help="GluonCV .params file")
    parser.add_argument("--out", required=True, help="output path ending in .weights.h5")
    parser.add_argument("--verify", action="store_true", help="check the SHA-1 against GluonCV's model store")
    args = parser.parse_args(argv)
    get_preset(args.model)  # an unknown name is refused before TensorFlow loads
    from kseg.models import convert

    model = convert(args.model, args.params, args.out, args.verify)
    print(f"wrote {args.out}: {model.name}, {model.count_params():,} parameters")
    return 0


def _predict(argv):
    from kseg.cli.predict import main

    sys.argv[0] = "kseg predict"
    main(argv)
    return 0


def _export(argv):
    from absl import flags

    from kseg.cli.export import define_flags, main

    flag_values = flags.FlagValues()
    define_flags(flag_values)
    if "--help" in argv or "-h" in argv:
        print(f"usage: kseg export --model NAME --out DIR [flags]\n\n{COMMANDS['export']}\n\nflags:")
        print(flag_values.get_help(include_special_flags=False))
        return 0
    try:
        remaining = flag_values(["kseg export", *argv])
    except flags.Error as error:
        print(f"kseg export: {error}", file=sys.stderr)
        return 2
    return main(remaining, flag_values)


def _bench(argv):
    from kseg.benchmark import main

    sys.argv[0] = "kseg bench"
    return main(argv) or 0


HANDLERS = {"list": _list, "info": _info, "convert": _convert, "predict": _predict, "export": _export,
            "bench": _bench}


# The commands that need TensorFlow (list and info read the tables alone).
NEEDS_TENSORFLOW = {"convert", "predict", "export", "bench"}


def main(argv=None):
    argv = sys.argv[1:] if argv is None else list(argv)
    debug = "--debug" in argv  # full tracebacks instead of one-line errors, for any command
    argv = [arg for arg in argv if arg != "--debug"]
    if not argv or argv[0] in ("-h", "--help", "help"):
        print(_usage())
        return 0 if argv else 2
    command, rest = argv[0], argv[1:]
    if command not in HANDLERS:
        import difflib

        close = difflib.get_close_matches(command, HANDLERS, n=1)
        hint = f" Did you mean: {close[0]}?" if close else ""
        print(f"kseg: unknown command {command!r}.{hint}\n\n{_usage()}", file=sys.stderr)
        return 2
    from kseg.weights.download import DownloadError

    if command in NEEDS_TENSORFLOW and not any(arg in ("-h", "--help") for arg in rest):
        from kseg.utils.memory import cap_malloc_arenas
        from kseg.utils.quiet import import_tensorflow_quietly

        cap_malloc_arenas()
        import_tensorflow_quietly()
    if debug:
        import keras

        keras.config.disable_traceback_filtering()
        return HANDLERS[command](rest)
    try:
        return HANDLERS[command](rest)
    except SystemExit as exit_:  # argparse (2) and the tools' own messages (a string: 1)
        if isinstance(exit_.code, str):
            print(exit_.code, file=sys.stderr)
            return 1
        return exit_.code or 0
    except BrokenPipeError:  # output piped into head & co.
        sys.stdout = open(os.devnull, "w")  # noqa: SIM115 - Python flushes it at exit
        return 0
    except KeyboardInterrupt:
        print(f"kseg {command}: interrupted", file=sys.stderr)
        return 130
    except (ValueError, TypeError, OSError, DownloadError) as error:
        print(f"kseg {command}: {_one_line(error)}", file=sys.stderr)
        return 1


def _one_line(error):
    """An error as one line: Keras wraps a model's own message in several, with the call's arguments."""
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    for line in lines:  # Keras: "Exception encountered when calling X.call().", then the message itself
        if not line.startswith(("Exception encountered when calling", "Arguments received by")):
            return line.replace("\x1b[1m", "").replace("\x1b[0m", "")
    return lines[0] if lines else type(error).__name__


def entry_point():
    sys.exit(main())


if __name__ == "__main__":
    entry_point()
