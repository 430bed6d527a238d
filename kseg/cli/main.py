"""The ``kseg`` command: list, info, convert, predict, export, bench.

    kseg list
    kseg info psp_resnet101_ade
    kseg convert --model psp_resnet101_ade --params psp_resnet101_ade-240a4758.params --out psp.weights.h5
    kseg predict street.jpg --model psp_resnet101_ade --out predictions
    kseg export --model psp_resnet101_ade --out serving/psp_resnet101_ade
    kseg bench fcn_resnet101_voc --batch-sizes 1

Exit codes: 0 done, 1 failed (the reason on stderr), 2 bad usage.
"""

import argparse
import json
import os
import sys

COMMANDS = {
    "list": "the zoo's models with GluonCV's scores",
    "info": "one model's metadata, weights file and cache state",
    "convert": "a GluonCV .params file to a kseg .weights.h5",
    "predict": "colour masks and overlays for image files",
    "export": "a SavedModel for TF-Serving",
    "bench": "throughput and latency of a model",
}


def _usage():
    lines = [__doc__.split("\n")[0], "", "usage: kseg COMMAND [--help] ...", "", "commands:"]
    lines += [f"  {name:<8} {text}" for name, text in COMMANDS.items()]
    return "\n".join(lines)


def _list(argv):
    parser = argparse.ArgumentParser(prog="kseg list", description=COMMANDS["list"])
    parser.add_argument("--dataset", choices=("ade20k", "pascal_voc", "coco", "citys"), help="only this data set")
    parser.add_argument("--json", action="store_true", help="JSON instead of a table")
    args = parser.parse_args(argv)
    from kseg.models.mask_rcnn.config import MASK_RCNN_ZOO
    from kseg.models.zoo import SEMANTIC_ZOO

    entries = [e for e in SEMANTIC_ZOO.values() if args.dataset in (None, e.dataset)]
    instances = [e for e in MASK_RCNN_ZOO.values() if args.dataset in (None, "coco")]
    if args.json:
        print(json.dumps([_summary(e) for e in entries + instances], indent=2))
        return 0
    print(f"{'name':<36} {'method':<16} {'backbone':<14} {'dataset':<10} {'classes':>7} {'pixAcc':>6} {'mIoU':>5}")
    for e in entries:
        pixacc = "-" if e.pixacc is None else f"{e.pixacc:.1f}"
        print(f"{e.name:<36} {e.method:<16} {e.backbone:<14} {e.dataset:<10} {e.num_classes:>7} {pixacc:>6} "
              f"{e.miou:>5.1f}")
    if instances:
        header = f"{'name':<36} {'method':<16} {'backbone':<14} {'dataset':<10} {'classes':>7}"
        print(f"\n{header} {'boxAP':>6} {'mskAP':>5}")
    for e in instances:
        method = "mask_rcnn_fpn" if e.fpn else "mask_rcnn"
        print(f"{e.name:<36} {method:<16} {f'resnet{e.depth}_{e.variant}':<14} {'coco':<10} {e.num_classes:>7} "
              f"{e.box_ap:>6.1f} {e.mask_ap:>5.1f}")
    return 0


def _summary(entry):
    if hasattr(entry, "box_ap"):
        return {
            "name": entry.name, "method": "mask_rcnn_fpn" if entry.fpn else "mask_rcnn",
            "backbone": f"resnet{entry.depth}_{entry.variant}", "dataset": "coco", "num_classes": entry.num_classes,
            "box_AP": entry.box_ap, "mask_AP": entry.mask_ap,
        }
    return {
        "name": entry.name, "method": entry.method, "backbone": entry.backbone, "dataset": entry.dataset,
        "num_classes": entry.num_classes, "pixAcc": entry.pixacc, "mIoU": entry.miou,
    }


def _info(argv):
    parser = argparse.ArgumentParser(prog="kseg info", description=COMMANDS["info"])
    parser.add_argument("name", help="a zoo name (kseg list)")
    args = parser.parse_args(argv)
    from kseg.models.mask_rcnn.config import MASK_RCNN_ZOO
    from kseg.models.registry import get_entry, kseg_home

    home = kseg_home()
    if args.name in MASK_RCNN_ZOO:
        import dataclasses

        entry = MASK_RCNN_ZOO[args.name]
        cached = [str(p) for p in (home / f"{entry.name}.weights.h5", home / entry.gluoncv_file) if p.is_file()]
        info = {**_summary(entry), **dataclasses.asdict(entry), "gluoncv_file": entry.gluoncv_file, "url": entry.url,
                "mask_size": entry.mask_size, "cache": str(home), "cached_files": cached,
                "classes": list(entry.classes)}
        print(json.dumps(info, indent=2))
        return 0
    entry = get_entry(args.name)
    cached = [str(p) for p in (home / f"{entry.name}.weights.h5", home / entry.gluoncv_file) if p.is_file()]
    info = {
        **_summary(entry),
        "aux": entry.aux,
        "base_size": entry.base_size,
        "crop_size": entry.crop_size,
        "gluoncv_file": entry.gluoncv_file,
        "sha1": entry.sha1,
        "url": entry.url,
        "recipe": entry.recipe,
        "notes": entry.notes,
        "cache": str(home),
        "cached_files": cached,
        "classes": list(entry.classes),
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
    from kseg.weights.convert import convert

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


def main(argv=None):
    argv = sys.argv[1:] if argv is None else list(argv)
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
    except (ValueError, OSError, DownloadError) as error:
        print(f"kseg {command}: {error}", file=sys.stderr)
        return 1


def entry_point():
    sys.exit(main())


if __name__ == "__main__":
    entry_point()
