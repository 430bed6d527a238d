"""kseg vs GluonCV (MXNet) vs torchvision: inference speed of the same architectures, in one run.

    .venv/bin/python benchmarks/side_by_side.py      # kseg + GluonCV, float32, batch 1, 480x480, 2 threads
    .venv/bin/python benchmarks/side_by_side.py --torch-python /work/venv_torch/bin/python --rounds 3

Every framework sees the same seeded N(0, 1) batch and the same thread count:
kseg runs in this process (TensorFlow intra-op threads = ``--threads``),
GluonCV in the side venv (``benchmarks/gluoncv_bench.py``, hybridized,
``OMP_NUM_THREADS``) and torchvision under ``--torch-python``
(``benchmarks/torch_bench.py``, ``torch.set_num_threads``). Frameworks take
turns model by model; before each measurement the script waits (up to
``--wait-idle`` seconds) until the other processes on the machine leave the CPU
idle, and it records how much CPU they took during the timed calls. With
``--rounds N`` the sequence repeats and each framework's fastest round (by p50)
is reported, the same rule for all; every round is kept in the JSON.

Appends a section to ``benchmarks/RESULTS.md`` and the run to
``benchmarks/RESULTS.json`` (``--no-write`` prints only).
"""

import argparse
import datetime
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(REPO))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

# The same architecture in each framework (None: the framework has no such model).
MODELS = {
    "fcn_resnet101": {"kseg": "fcn_resnet101_voc", "gluoncv": "fcn_resnet101_voc", "torchvision": "fcn_resnet101"},
    "deeplab_resnet101": {
        "kseg": "deeplab_resnet101_voc",
        "gluoncv": "deeplab_resnet101_voc",
        "torchvision": "deeplabv3_resnet101",
    },
    "psp_resnet101": {"kseg": "psp_resnet101_voc", "gluoncv": "psp_resnet101_voc", "torchvision": None},
    "fcn_resnet50": {"kseg": "fcn_resnet50_ade", "gluoncv": "fcn_resnet50_ade", "torchvision": "fcn_resnet50"},
    "deeplab_resnet50": {
        "kseg": "deeplab_resnet50_ade",
        "gluoncv": "deeplab_resnet50_ade",
        "torchvision": "deeplabv3_resnet50",
    },
    "psp_resnet50": {"kseg": "psp_resnet50_ade", "gluoncv": "psp_resnet50_ade", "torchvision": None},
    "deeplab_resnet152": {"kseg": "deeplab_resnet152_voc", "gluoncv": "deeplab_resnet152_voc", "torchvision": None},
}
DEFAULT_MODELS = ("fcn_resnet101", "deeplab_resnet101", "psp_resnet101")

ARCHITECTURE_NOTES = (
    "kseg and GluonCV run the same network (GluonCV's ResNet-v1s backbone: deep 3x3 stem 64-64-128, "
    "dilated, output stride 8; aux head off). torchvision's `fcn_resnet101` / `deeplabv3_resnet101` "
    "(21 classes, no aux head) differ: a ResNet-v1b backbone (one 7x7 stem conv, ~6 GMAC less at 480x480), "
    "bilinear resizing without aligned corners, and DeepLab's head without the dropout (no compute at "
    "inference); the heads' convolutions are otherwise GluonCV's (FCN: 3x3 2048->512, 1x1 ->classes; "
    "DeepLabV3: ASPP 1x1 + 3x3 rates 12/24/36 + image pooling, 1x1 projection, 3x3 256->256, 1x1 ->classes). "
    "torchvision has no PSPNet."
)


def parse_args(argv=None):
    from kseg.benchmark import PRECISIONS, parse_size, positive_int

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--models",
        default=",".join(DEFAULT_MODELS),
        help=f"comma-separated, from: {', '.join(MODELS)} (default: {','.join(DEFAULT_MODELS)})",
    )
    parser.add_argument("--batch-size", type=positive_int, default=1)
    parser.add_argument("--size", type=parse_size, default=(480, 480), help="HEIGHTxWIDTH (default 480x480)")
    parser.add_argument("--threads", type=positive_int, default=2, help="threads for every framework (default 2)")
    parser.add_argument("--precision", choices=PRECISIONS, default="float32", help="kseg's policy (others: float32)")
    parser.add_argument("--xla", action=argparse.BooleanOptionalAction, default=False, help="kseg jit_compile")
    parser.add_argument("--warmup", type=positive_int, default=3)
    parser.add_argument("--iters", type=positive_int, default=10)
    parser.add_argument("--rounds", type=positive_int, default=1, help="repeat; report each framework's best round")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--gluoncv-python",
        default=os.environ.get("KSEG_GLUONCV_PYTHON") or str(REPO / ".venv-gluoncv" / "bin" / "python"),
        help="python with mxnet + gluoncv",
    )
    parser.add_argument("--no-gluoncv", action="store_true", help="leave GluonCV out")
    parser.add_argument("--torch-python", default=None, help="python with torch + torchvision (default: no torch)")
    parser.add_argument("--torch-channels-last", action="store_true", help="torchvision in NHWC memory format")
    parser.add_argument("--wait-idle", type=float, default=300.0, help="seconds to wait for a quiet CPU (0: never)")
    parser.add_argument("--idle-threshold", type=float, default=0.97, help="idle fraction that counts as quiet")
    parser.add_argument(
        "--max-foreign-load",
        type=float,
        default=0.1,
        metavar="CORES",
        help="repeat a timed call during which other processes used more cores than this (default 0.1; <0: never)",
    )
    parser.add_argument("--results", type=Path, default=HERE / "RESULTS.md")
    parser.add_argument("--json", type=Path, default=HERE / "RESULTS.json")
    parser.add_argument("--no-write", action="store_true", help="print the table only")
    parser.add_argument("--note", default="", help="a line added to the run's section")
    args = parser.parse_args(argv)
    names = [m.strip() for m in args.models.split(",") if m.strip()]
    unknown = [m for m in names if m not in MODELS]
    if unknown or not names:
        parser.error(f"unknown model(s) {', '.join(unknown) or '(none given)'}; choose from {', '.join(MODELS)}")
    args.models = names
    if not args.no_gluoncv and not Path(args.gluoncv_python).is_file():
        parser.error(f"--gluoncv-python {args.gluoncv_python} not found (or pass --no-gluoncv)")
    if args.torch_python and not Path(args.torch_python).is_file():
        parser.error(f"--torch-python {args.torch_python} not found")
    return args


# ----------------------------------------------------------------------------- machine state


def _cpu_ticks():
    with open("/proc/stat") as f:
        ticks = [int(v) for v in f.readline().split()[1:]]
    return sum(ticks[:8]), ticks[3] + ticks[4]


def wait_for_idle(max_wait_s, threshold=0.97, needed=3):
    """Wait until ``needed`` one-second samples in a row show the CPU ``threshold`` idle; returns seconds waited."""
    start = time.monotonic()
    quiet = 0
    while max_wait_s > 0 and time.monotonic() - start < max_wait_s:
        total, idle = _cpu_ticks()
        time.sleep(1.0)
        total2, idle2 = _cpu_ticks()
        quiet = quiet + 1 if (idle2 - idle) / max(1, total2 - total) >= threshold else 0
        if quiet >= needed:
            break
    return time.monotonic() - start


def versions(python, modules):
    code = (
        f"import importlib.metadata as m, json, sys; print(json.dumps({{n: m.version(n) for n in {list(modules)!r}}}))"
    )
    try:
        out = subprocess.run([python, "-c", code], capture_output=True, text=True, timeout=120, check=True).stdout
        return json.loads(out)
    except (OSError, subprocess.SubprocessError, ValueError):
        return {}


# ----------------------------------------------------------------------------- the frameworks


def run_script(python, script, models, args, input_path, extra=()):
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "result.json"
        command = [
            python,
            str(HERE / script),
            *models,
            "--threads",
            str(args.threads),
            "--warmup",
            str(args.warmup),
            "--iters",
            str(args.iters),
            "--input",
            str(input_path),
            "--json",
            str(out),
            *extra,
        ]
        if args.max_foreign_load >= 0:
            command += ["--max-foreign-load", str(args.max_foreign_load)]
        proc = subprocess.run(command, capture_output=True, text=True, check=False)
        if proc.returncode != 0 or not out.is_file():
            tail = "\n".join(proc.stderr.strip().splitlines()[-15:])
            raise RuntimeError(f"{script} failed (exit {proc.returncode}):\n{tail}")
        return json.loads(out.read_text())


class KsegRunner:
    def __init__(self, args, images):
        from kseg import benchmark

        self.benchmark = benchmark
        self.args = args
        self.images = images
        self.models = {}

    def run(self, zoo_name):
        import keras

        if zoo_name not in self.models:
            keras.mixed_precision.set_global_policy(self.args.precision)
            keras.utils.set_random_seed(self.args.seed)
            self.models[zoo_name] = self.benchmark.build_model(zoo_name)
        model = self.models[zoo_name]
        (record,) = self.benchmark.benchmark_model(
            model,
            xla=self.args.xla,
            warmup=self.args.warmup,
            iters=self.args.iters,
            inputs=self.images,
            max_foreign=self.args.max_foreign_load if self.args.max_foreign_load >= 0 else None,
        )
        record["model"] = zoo_name
        record["parameters"] = int(model.count_params())
        record["precision"] = self.args.precision
        record["xla"] = bool(self.args.xla)
        return record


def measure(args):
    import numpy as np

    from kseg import benchmark

    threads = benchmark.set_threads(args.threads)
    rng = np.random.default_rng(args.seed)
    images = rng.standard_normal((args.batch_size, *args.size, 3), dtype=np.float32)
    kseg_runner = KsegRunner(args, images)
    frameworks = ["kseg"]
    if not args.no_gluoncv:
        frameworks.append("gluoncv")
    if args.torch_python:
        frameworks.append("torchvision")
    rounds = {(m, f): [] for m in args.models for f in frameworks}
    environments = {}
    with tempfile.TemporaryDirectory() as tmp:
        input_path = Path(tmp) / "images.npy"
        np.save(input_path, images)
        for round_index in range(args.rounds):
            for key in args.models:
                for framework in frameworks:
                    name = MODELS[key][framework]
                    if name is None:
                        continue
                    waited = wait_for_idle(args.wait_idle, args.idle_threshold)
                    load = [round(v, 2) for v in os.getloadavg()]
                    if framework == "kseg":
                        record = kseg_runner.run(name)
                    elif framework == "gluoncv":
                        payload = run_script(args.gluoncv_python, "gluoncv_bench.py", [name], args, input_path)
                        environments["gluoncv"] = payload["environment"]
                        (record,) = payload["results"]
                    else:
                        extra = ["--classes", str(_classes(key))]
                        if args.torch_channels_last:
                            extra.append("--channels-last")
                        payload = run_script(args.torch_python, "torch_bench.py", [name], args, input_path, extra)
                        environments["torchvision"] = payload["environment"]
                        (record,) = payload["results"]
                    record.update({"round": round_index, "waited_for_idle_s": round(waited, 1), "load_before": load})
                    rounds[(key, framework)].append(record)
                    print(
                        f"[round {round_index + 1}/{args.rounds}] {framework:11s} {name:24s} "
                        f"{record['images_per_s']:7.3f} img/s  p50 {record['latency_ms']['p50']:8.1f} ms  "
                        f"other load {record['cpu_use'].get('foreign_cores')} cores",
                        flush=True,
                    )
    environments["kseg"] = {**benchmark.tf_info(), "threads": threads}
    return frameworks, rounds, environments


def _classes(key):
    from kseg.models import get_entry

    return get_entry(MODELS[key]["kseg"]).num_classes


# ----------------------------------------------------------------------------- reporting


def best(records):
    return min(records, key=lambda r: r["latency_ms"]["p50"]) if records else None


def build_run(args, frameworks, rounds, environments):
    from kseg.benchmark import machine_info

    machine = machine_info()
    software = {"kseg": environments.get("kseg", {})}
    if "gluoncv" in frameworks:
        software["gluoncv"] = {**versions(args.gluoncv_python, ["mxnet", "gluoncv"]), **environments.get("gluoncv", {})}
    if "torchvision" in frameworks:
        software["torchvision"] = environments.get("torchvision", {})
    rows = []
    for key in args.models:
        row = {"model": key}
        for framework in frameworks:
            chosen = best(rounds[(key, framework)])
            row[framework] = None if chosen is None else {**chosen, "name": MODELS[key][framework]}
        rows.append(row)
    return {
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "machine": machine,
        "software": software,
        "settings": {
            "device": "CPU",
            "precision": args.precision,
            "batch_size": args.batch_size,
            "size": list(args.size),
            "threads": args.threads,
            "xla": bool(args.xla),
            "warmup": args.warmup,
            "iters": args.iters,
            "rounds": args.rounds,
            "seed": args.seed,
            "max_foreign_load": args.max_foreign_load,
            "torch_channels_last": bool(args.torch_channels_last),
            "frameworks": frameworks,
            "note": args.note,
        },
        "rows": rows,
        "all_rounds": {f"{key}/{fw}": records for (key, fw), records in rounds.items()},
    }


def _cell(record, field):
    if record is None:
        return "–"
    if field == "img/s":
        return f"{record['images_per_s']:.3f}"
    return f"{record['latency_ms']['p50']:.0f}"


def _ratio(kseg, other):
    if kseg is None or other is None:
        return "–"
    return f"{kseg['images_per_s'] / other['images_per_s']:.2f}"


def markdown(run):
    settings, machine, software = run["settings"], run["machine"], run["software"]
    frameworks = settings["frameworks"]
    tf = software["kseg"]
    lines = [
        f"## {run['date']}: CPU, {settings['precision']}, batch {settings['batch_size']}, "
        f"{settings['size'][0]}x{settings['size'][1]}, {settings['threads']} threads",
        "",
        f"- Machine: {machine['cpu']} (lscpu model name), {machine['cpu_cores']} cores, "
        f"{machine['memory_gib']} GiB, {machine['platform']}; no GPU.",
    ]
    stack = [f"kseg on TensorFlow {tf.get('tensorflow')} / Keras {tf.get('keras')} (oneDNN {_on(tf.get('onednn'))})"]
    if "gluoncv" in software:
        g = software["gluoncv"]
        stack.append(f"GluonCV {g.get('gluoncv')} on MXNet {g.get('mxnet')} (MKL-DNN {_on(g.get('mkldnn'))})")
    if "torchvision" in software:
        t = software["torchvision"]
        layout = "channels-last" if t.get("channels_last") else "NCHW"
        stack.append(f"torchvision {t.get('torchvision')} on torch {t.get('torch')} ({layout})")
    lines.append(f"- Software: {'; '.join(stack)}.")
    threads = tf.get("threads", {})
    lines.append(
        f"- Settings: {settings['threads']} threads everywhere (TF intra-op {threads.get('intra_op')}, "
        f"inter-op {threads.get('inter_op')}; MXNet OMP_NUM_THREADS; torch.set_num_threads), kseg XLA "
        f"{_on(settings['xla'])}, the same seeded N(0, 1) input, {settings['warmup']} warm-up calls then "
        f"{settings['iters']} timed calls, each ending with the logits' sum on the host; "
        f"best of {settings['rounds']} round(s) by p50."
    )
    foreign = [
        r[f]["cpu_use"].get("foreign_cores")
        for r in run["rows"]
        for f in frameworks
        if r.get(f) and r[f].get("cpu_use", {}).get("foreign_cores") is not None
    ]
    discarded = sum(r[f]["cpu_use"].get("discarded_calls", 0) for r in run["rows"] for f in frameworks if r.get(f))
    if foreign:
        rule = ""
        if settings.get("max_foreign_load", -1) >= 0:
            rule = (
                f" (calls during which they used more than {settings['max_foreign_load']} cores were repeated: "
                f"{discarded} in the reported rounds)"
            )
        lines.append(
            f"- Quiet machine: other processes used on average at most {max(foreign):.2f} of "
            f"{machine['cpu_cores']} cores during the reported timed calls{rule}."
        )
    if settings.get("note"):
        lines.append(f"- Note: {settings['note']}")
    lines.append("")
    names = {"kseg": "kseg", "gluoncv": "GluonCV", "torchvision": "torchvision"}
    header = ["model"]
    for f in frameworks:
        header += [f"{names[f]} img/s", f"{names[f]} p50 ms"]
    header += [f"kseg/{names[f]} (img/s)" for f in frameworks if f != "kseg"]
    lines.append("| " + " | ".join(header) + " |")
    lines.append("|" + "---|" * len(header))
    for row in run["rows"]:
        cells = [row["model"]]
        for f in frameworks:
            cells += [_cell(row.get(f), "img/s"), _cell(row.get(f), "p50")]
        cells += [_ratio(row.get("kseg"), row.get(f)) for f in frameworks if f != "kseg"]
        lines.append("| " + " | ".join(cells) + " |")
    lines += [
        "",
        "Ratios are kseg's images/s over the other's (above 1: kseg is faster; kseg's share of the other's "
        "time is the inverse).",
        "",
        f"GPU: not measured (this machine has no GPU); rows open. {ARCHITECTURE_NOTES}",
        "",
    ]
    return "\n".join(lines)


def _on(flag):
    return "on" if flag else "off"


RESULTS_HEADER = """# Inference speed: kseg vs GluonCV vs torchvision

Written by `benchmarks/side_by_side.py`, one section per run (newest last);
the raw numbers of every round are in `RESULTS.json`. Models have random
weights (speed does not depend on them). kseg alone: `tools/benchmark.py`.

"""


def append_results(run, md_path, json_path):
    md_path = Path(md_path)
    text = md_path.read_text() if md_path.is_file() else RESULTS_HEADER
    md_path.write_text(text.rstrip("\n") + "\n\n" + markdown(run))
    json_path = Path(json_path)
    runs = json.loads(json_path.read_text())["runs"] if json_path.is_file() else []
    runs.append(run)
    tmp = json_path.with_name(json_path.name + ".tmp")
    tmp.write_text(json.dumps({"runs": runs}, indent=1) + "\n")
    os.replace(tmp, json_path)


def main(argv=None):
    args = parse_args(argv)
    frameworks, rounds, environments = measure(args)
    run = build_run(args, frameworks, rounds, environments)
    print()
    print(markdown(run))
    if not args.no_write:
        append_results(run, args.results, args.json)
        print(f"appended to {args.results} and {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
