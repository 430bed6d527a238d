"""Inference speed of kseg models: images/s, latency percentiles and peak memory.

    python tools/benchmark.py fcn_resnet101_voc deeplab_resnet101_voc --batch-sizes 1,2 --threads 2 --json bench.json
    python tools/benchmark.py fcn:resnet18_v1b:5 --size 64x64 --iters 2

A model is a zoo name (``kseg.models.get(name)``, random weights) or
``method:backbone:classes`` (``kseg.models.build``). Each iteration calls one
``tf.function`` of ``model(x, training=False)`` (``jit_compile`` per ``--xla``)
on the same random batch and fetches a value that depends on every logit
(``--fetch sum``: their sum; ``argmax``: the label map; ``logits``: all of
them) to the host, so the clock stops only when the work is done. The first
call (tracing, compilation) and ``--warmup`` further calls are not timed.

On a shared machine, ``--max-foreign-load CORES`` repeats (up to 5x
``--iters`` calls in all) a timed call during which other processes used more
CPU cores than that; every record says how much CPU other processes took
(``cpu_use.foreign_cores``, from ``/proc/stat``) and how many calls were
repeated. On a GPU the input batch is placed on the device before timing.

Peak memory: on a GPU, TensorFlow's allocator peak for the benchmark
(``tf.config.experimental.get_memory_info``); on the CPU, how much the
process's peak resident set (``getrusage`` maxrss) grew while building and
running the model, with the process's absolute peak next to it. The CPU figure
is a lower bound when an earlier model already pushed the peak higher; run one
model per process for clean numbers.

Arithmetic limits: each run also times a large float32 and bfloat16 matrix
product in the same process (:func:`kseg.arithmetic.matmul_peak`), counts each
model's multiply-accumulates from its graph (:func:`kseg.arithmetic.count_macs`)
and reports the least time the forward could take at that peak, done directly
and with Winograd F(2x2, 3x3) on the 3x3 stride-1 convolutions, and the share
of the Winograd limit reached (``--no-limits`` skips this).

Mask R-CNN presets are timed too (``mask_rcnn_fpn_resnet50_v1b_coco``): their
fetch is the sum of the detections' scores and masks.

``main(argv)`` is the command line; :func:`benchmark` is the library call.
"""

import argparse
import datetime
import difflib
import json
import os
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from kseg.utils.memory import cap_malloc_arenas

PRECISIONS = ("float32", "mixed_bfloat16", "mixed_float16")
FETCHES = ("sum", "argmax", "logits")
DEFAULT_SIZE = (480, 480)


# ----------------------------------------------------------------------------- argument parsing


def parse_size(text):
    """``480x480`` (height x width) or ``480`` (square) -> (height, width)."""
    parts = str(text).lower().replace(",", "x").split("x")
    try:
        size = tuple(int(p) for p in parts)
    except ValueError:
        size = ()
    if len(size) == 1:
        size = size * 2
    if len(size) != 2 or min(size) < 1:
        raise argparse.ArgumentTypeError(f"invalid size {text!r}: expected HEIGHTxWIDTH, e.g. 480x480")
    return size


def parse_batch_sizes(text):
    """``1,2,4`` -> (1, 2, 4)."""
    try:
        sizes = tuple(int(p) for p in str(text).split(",") if p.strip())
    except ValueError:
        sizes = ()
    if not sizes or min(sizes) < 1:
        raise argparse.ArgumentTypeError(f"invalid batch sizes {text!r}: expected positive integers, e.g. 1,2")
    return sizes


def positive_int(text):
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"invalid value {text!r}: expected a positive integer")
    return value


def non_negative_int(text):
    try:
        value = int(text)
    except ValueError:
        value = -1
    if value < 0:
        raise argparse.ArgumentTypeError(f"invalid value {text!r}: expected an integer >= 0")
    return value


def check_model_spec(spec):
    """Raise ValueError unless ``spec`` is a zoo name or ``method:backbone:classes``."""
    from kseg.models.builders import METHOD_HEADS
    from kseg.presets import list_presets

    known = list_presets("semantic") + list_presets("instance")
    if ":" in spec:
        parts = spec.split(":")
        if len(parts) != 3:
            raise ValueError(f"invalid model {spec!r}: expected a zoo name or METHOD:BACKBONE:CLASSES")
        method, backbone, classes = parts
        if method not in METHOD_HEADS:
            raise ValueError(f"invalid model {spec!r}: unknown method {method!r}; methods: {', '.join(METHOD_HEADS)}")
        if not backbone:
            raise ValueError(f"invalid model {spec!r}: empty backbone")
        if not classes.isdigit() or int(classes) < 1:
            raise ValueError(f"invalid model {spec!r}: classes must be a positive integer")
        return
    if spec not in known:
        close = difflib.get_close_matches(spec, known, n=3, cutoff=0.5)
        hint = f"; did you mean {', '.join(close)}?" if close else f"; zoo names: {', '.join(known)}"
        raise ValueError(f"unknown model {spec!r}{hint}")


def build_parser():
    parser = argparse.ArgumentParser(
        description="Time kseg models' inference: images/s, p50/p90 latency per batch, peak memory.",
    )
    parser.add_argument(
        "models", nargs="+", metavar="MODEL", help="a zoo name (fcn_resnet101_voc) or METHOD:BACKBONE:CLASSES"
    )
    parser.add_argument("--batch-sizes", type=parse_batch_sizes, default=(1,), help="comma-separated (default: 1)")
    parser.add_argument("--size", type=parse_size, default=DEFAULT_SIZE, help="HEIGHTxWIDTH (default: 480x480)")
    parser.add_argument("--precision", choices=PRECISIONS, default="float32", help="Keras dtype policy")
    parser.add_argument(
        "--xla", action=argparse.BooleanOptionalAction, default=False, help="jit_compile the forward (default: off)"
    )
    parser.add_argument("--warmup", type=non_negative_int, default=3, help="untimed calls after the first (default 3)")
    parser.add_argument("--iters", type=positive_int, default=10, help="timed calls per batch size (default 10)")
    parser.add_argument(
        "--threads", type=positive_int, default=None, help="TF intra- and inter-op threads (default: TF's choice)"
    )
    parser.add_argument(
        "--inter-threads", type=positive_int, default=None, help="inter-op threads (default: --threads)"
    )
    parser.add_argument("--fetch", choices=FETCHES, default="sum", help="what reaches the host per call (default sum)")
    parser.add_argument("--output-stride", type=int, choices=(8, 16), default=8, help="backbone output stride")
    parser.add_argument("--seed", type=int, default=0, help="seed of the weights and the input")
    parser.add_argument(
        "--max-foreign-load",
        type=float,
        default=None,
        metavar="CORES",
        help="repeat a timed call during which other processes used more CPU cores than this (up to 5x --iters)",
    )
    parser.add_argument(
        "--limits",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="measure the matmul peak here and report each model's arithmetic limit (default: on)",
    )
    parser.add_argument("--json", type=Path, default=None, metavar="PATH", help="write the results as JSON")
    parser.add_argument("--quiet", action="store_true", help="no table on stdout")
    return parser


def parse_args(argv=None):
    parser = build_parser()
    args = parser.parse_args(argv)
    for spec in args.models:
        try:
            check_model_spec(spec)
        except ValueError as error:
            parser.error(str(error))
    if args.inter_threads is not None and args.threads is None:
        parser.error("--inter-threads needs --threads")
    if args.json is not None and args.json.is_dir():
        parser.error(f"--json {args.json} is a directory; give a file path")
    return args


# ----------------------------------------------------------------------------- environment


def cpu_model():
    """The CPU's model name (``lscpu``'s "Model name")."""
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, timeout=10, check=False).stdout
        for line in out.splitlines():
            if line.startswith("Model name:"):
                return line.split(":", 1)[1].strip()
    except (OSError, subprocess.SubprocessError):
        pass
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine_info():
    """Host facts for a benchmark record (no TensorFlow import)."""
    return {
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "hostname": platform.node(),
        "cpu": cpu_model(),
        "cpu_cores": os.cpu_count(),
        "memory_gib": round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "load_average": [round(v, 2) for v in os.getloadavg()],
    }


def set_threads(intra, inter=None):
    """Set TF's thread pools; returns the values in force (setting fails once TF has started)."""
    import tensorflow as tf

    inter = intra if inter is None else inter
    notes = []
    if intra is not None:
        for setter, value, what in (
            (tf.config.threading.set_intra_op_parallelism_threads, intra, "intra"),
            (tf.config.threading.set_inter_op_parallelism_threads, inter, "inter"),
        ):
            try:
                setter(value)
            except RuntimeError as error:
                notes.append(f"{what}-op threads not set ({error})")
    for note in notes:
        print(f"warning: {note}", file=sys.stderr)
    return {
        "intra_op": tf.config.threading.get_intra_op_parallelism_threads(),
        "inter_op": tf.config.threading.get_inter_op_parallelism_threads(),
    }


def tf_info():
    import keras
    import tensorflow as tf

    info = {"tensorflow": tf.__version__, "keras": keras.__version__}
    try:
        from tensorflow.python.util import _pywrap_util_port

        info["onednn"] = bool(_pywrap_util_port.IsMklEnabled()) and os.environ.get("TF_ENABLE_ONEDNN_OPTS") != "0"
    except (ImportError, AttributeError):
        info["onednn"] = None
    gpus = tf.config.list_physical_devices("GPU")
    if gpus:
        details = tf.config.experimental.get_device_details(gpus[0])
        info["device"] = f"GPU: {details.get('device_name', gpus[0].name)} x{len(gpus)}"
    else:
        info["device"] = f"CPU: {cpu_model()} ({os.cpu_count()} cores)"
    return info


# ----------------------------------------------------------------------------- measurement


class CpuMonitor:
    """CPU time other processes used while this one ran: ``foreign_cores`` is their average core count.

    Host busy time (``/proc/stat``, all CPUs) minus this process's own CPU time
    (``os.times``, children included) over the wall time. Near 0 means the
    timing ran on a quiet machine; None where ``/proc/stat`` is missing.
    """

    def __enter__(self):
        self._start = (_host_busy_s(), _own_cpu_s(), time.perf_counter())
        return self

    def __exit__(self, *exc):
        busy, own, wall = self._start
        end_busy, end_own, end_wall = _host_busy_s(), _own_cpu_s(), time.perf_counter()
        self.wall_s = end_wall - wall
        self.own_cores = (end_own - own) / max(self.wall_s, 1e-9)
        if busy is None or end_busy is None:
            self.foreign_cores = None
        else:
            self.foreign_cores = max(0.0, (end_busy - busy) - (end_own - own)) / max(self.wall_s, 1e-9)
        return False


def _host_busy_s():
    try:
        with open("/proc/stat") as f:
            ticks = [int(v) for v in f.readline().split()[1:]]
    except (OSError, ValueError):
        return None
    return (sum(ticks[:8]) - ticks[3] - ticks[4]) / os.sysconf("SC_CLK_TCK")


def _own_cpu_s():
    t = os.times()
    return t.user + t.system + t.children_user + t.children_system


def _maxrss_mib():
    # Linux reports kilobytes, macOS bytes.
    scale = 1 if sys.platform == "darwin" else 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * scale / 2**20


def build_model(spec, output_stride=8):
    import kseg.models
    from kseg.presets import SEMANTIC, get_preset

    if ":" in spec:
        method, backbone, classes = spec.split(":")
        return kseg.models.build(method, backbone, int(classes), output_stride=output_stride)
    if get_preset(spec).task != SEMANTIC:  # Mask R-CNN has no output stride to choose
        return kseg.models.get(spec, weights=None)
    return kseg.models.get(spec, weights=None, output_stride=output_stride)


def make_forward(model, xla=False, fetch="sum"):
    """A ``tf.function`` of ``model(x, training=False)`` returning what ``fetch`` names."""
    import tensorflow as tf

    def forward(images):
        logits = model(images, training=False)
        if isinstance(logits, dict) and "logits" not in logits:  # detections: every score and mask is needed
            return tf.add_n([tf.reduce_sum(tf.cast(logits[key], tf.float32)) for key in ("scores", "masks")])
        if isinstance(logits, dict):
            logits = logits["logits"]
        if fetch == "sum":
            return tf.reduce_sum(tf.cast(logits, tf.float32))
        if fetch == "argmax":
            return tf.argmax(logits, axis=-1, output_type=tf.int32)
        return logits

    return tf.function(forward, jit_compile=bool(xla), reduce_retracing=True)


def time_calls(call, warmup, iters, max_foreign=None, max_attempts=None):
    """Time ``iters`` calls after the first call and ``warmup`` untimed ones.

    With ``max_foreign`` (cores), a call during which other processes took more
    CPU than that is discarded and repeated, up to ``max_attempts`` timed calls
    in all (default ``5 * iters``); after that every call counts. Returns
    ``(first call s, [s per kept call], cpu_use)``; ``cpu_use`` holds this
    process's and the others' average cores over the kept calls, the worst
    call's foreign load and the number of discarded calls.
    """
    start = time.perf_counter()
    call()
    first = time.perf_counter() - start
    for _ in range(warmup):
        call()
    max_attempts = max(iters, max_attempts or 5 * iters)
    times, own_s, foreign_s, discarded = [], 0.0, [], 0
    while len(times) < iters:
        with CpuMonitor() as monitor:
            start = time.perf_counter()
            call()
            elapsed = time.perf_counter() - start
        busy = monitor.foreign_cores  # None without /proc/stat
        attempts_left = max_attempts - len(times) - discarded - 1
        if max_foreign is not None and busy is not None and busy > max_foreign and attempts_left > 0:
            discarded += 1
            continue
        times.append(elapsed)
        own_s += monitor.own_cores * monitor.wall_s
        if busy is not None:
            foreign_s.append(busy * monitor.wall_s)
    wall = sum(times)
    measured = len(foreign_s) == len(times)
    worst = max(f / t for f, t in zip(foreign_s, times, strict=True)) if measured else None
    cpu_use = {
        "own_cores": round(own_s / wall, 3),
        "foreign_cores": round(sum(foreign_s) / wall, 3) if measured else None,
        "foreign_cores_worst_call": None if worst is None else round(worst, 3),
        "discarded_calls": discarded,
        "max_foreign_cores": max_foreign,
    }
    return first, times, cpu_use


def summarize(times, batch_size, cpu_use=None):
    times = np.asarray(times, dtype=np.float64)
    return {
        "images_per_s": float(batch_size * len(times) / times.sum()),
        "latency_ms": {
            "p50": float(np.percentile(times, 50) * 1e3),
            "p90": float(np.percentile(times, 90) * 1e3),
            "mean": float(times.mean() * 1e3),
            "min": float(times.min() * 1e3),
            "max": float(times.max() * 1e3),
        },
        "cpu_use": cpu_use or {},
    }


def benchmark_model(
    model,
    batch_sizes=(1,),
    size=DEFAULT_SIZE,
    xla=False,
    warmup=3,
    iters=10,
    fetch="sum",
    seed=0,
    rss_before_mib=None,
    inputs=None,
    max_foreign=None,
):
    """Time ``model`` on random ``(batch, *size, 3)`` inputs; one record per batch size.

    ``inputs``, an NHWC float32 array, replaces the random batches (and sets batch and size).
    ``max_foreign``: see :func:`time_calls`.
    """
    import tensorflow as tf

    gpus = tf.config.list_physical_devices("GPU")
    forward = make_forward(model, xla=xla, fetch=fetch)
    rng = np.random.default_rng(seed)
    rss_before = _maxrss_mib() if rss_before_mib is None else rss_before_mib
    if inputs is not None:
        inputs = np.asarray(inputs, dtype=np.float32)
        batch_sizes, size = (inputs.shape[0],), inputs.shape[1:3]
    records = []
    for batch in batch_sizes:
        if inputs is None:
            images = tf.constant(rng.standard_normal((batch, *size, 3), dtype=np.float32))
        else:
            images = tf.constant(inputs)
        if gpus:
            with tf.device("GPU:0"):
                images = tf.identity(images)  # the input waits on the device: no copy in the timing
            tf.config.experimental.reset_memory_stats("GPU:0")

        def call(images=images):
            return forward(images).numpy()

        first, times, cpu_use = time_calls(call, warmup, iters, max_foreign=max_foreign)
        record = {
            "batch_size": int(batch),
            "height": int(size[0]),
            "width": int(size[1]),
            **summarize(times, batch, cpu_use),
        }
        record["first_call_s"] = float(first)
        record["times_s"] = [float(t) for t in times]
        if gpus:
            peak = tf.config.experimental.get_memory_info("GPU:0")["peak"]
            record["peak_memory_mib"] = peak / 2**20
            record["memory_kind"] = "gpu_allocator_peak"
        else:
            peak = _maxrss_mib()
            record["peak_memory_mib"] = max(0.0, peak - rss_before)
            record["process_peak_rss_mib"] = peak
            record["memory_kind"] = "cpu_maxrss_delta"
        records.append(record)
    return records


def benchmark(
    models,
    batch_sizes=(1,),
    size=DEFAULT_SIZE,
    precision="float32",
    xla=False,
    warmup=3,
    iters=10,
    fetch="sum",
    output_stride=8,
    seed=0,
    max_foreign=None,
    limits=True,
):
    """Benchmark each model spec; returns a list of result records (one per model and batch size).

    ``models`` holds zoo names, ``method:backbone:classes`` specs, or built
    Keras models (timed under the policy they were built with). With
    ``limits``, each record also holds the model's multiply-accumulates, the
    matrix-multiply peak measured here in its compute dtype and the arithmetic
    limits (see :func:`add_limits`).
    """
    import keras

    previous_policy = keras.mixed_precision.global_policy()
    results = []
    peaks = {}
    try:
        keras.mixed_precision.set_global_policy(precision)
        for spec in models:
            rss_before = _maxrss_mib()
            keras.utils.set_random_seed(seed)
            if isinstance(spec, str):
                start = time.perf_counter()
                model = build_model(spec, output_stride)
                build_s = time.perf_counter() - start
                name = spec
            else:
                model, name, build_s = spec, spec.name, None
            policy = model.dtype_policy.name
            records = benchmark_model(
                model,
                batch_sizes,
                size,
                xla,
                warmup,
                iters,
                fetch,
                seed,
                rss_before_mib=rss_before,
                max_foreign=max_foreign,
            )
            for record in records:
                if limits:
                    add_limits(record, model, peaks)
                results.append(
                    {
                        "model": name,
                        "parameters": int(model.count_params()),
                        "precision": policy,
                        "xla": bool(xla),
                        "fetch": fetch,
                        "warmup": int(warmup),
                        "iters": int(iters),
                        "build_s": build_s,
                        **record,
                    }
                )
            del model
    finally:
        keras.mixed_precision.set_global_policy(previous_policy)
    return results


def add_limits(record, model, peaks):
    """Add ``gmac``, ``peak_gflops`` (this process's matmul peak in the model's compute dtype, measured once per
    dtype into ``peaks``), ``limit_ms`` (direct and Winograd, per batch) and ``of_winograd_limit`` to ``record``."""
    from kseg.arithmetic import arithmetic_limits, count_macs, matmul_peak

    dtype = model.dtype_policy.compute_dtype
    if dtype not in peaks:
        peaks[dtype] = matmul_peak(dtype)
    macs = count_macs(model, (record["height"], record["width"]), record["batch_size"])
    limits = arithmetic_limits(macs, peaks[dtype])
    record["gmac"] = macs.total / 1e9
    record["gmac_winograd_eligible"] = macs.winograd_eligible / 1e9
    record["peak_gflops"] = {"dtype": dtype, "value": peaks[dtype]}
    record["limit_ms"] = {"direct": limits["direct_s"] * 1e3, "winograd": limits["winograd_s"] * 1e3}
    record["of_winograd_limit"] = record["limit_ms"]["winograd"] / record["latency_ms"]["p50"]
    return record


# ----------------------------------------------------------------------------- output


def format_table(results):
    header = ("model", "batch", "size", "precision", "xla", "img/s", "p50 ms", "p90 ms", "peak MiB", "other load",
              "GMAC", "limit ms (direct/Winograd)", "of limit")  # fmt: skip
    rows = [
        (
            r["model"],
            str(r["batch_size"]),
            f"{r['height']}x{r['width']}",
            r["precision"],
            "on" if r["xla"] else "off",
            f"{r['images_per_s']:.2f}",
            f"{r['latency_ms']['p50']:.1f}",
            f"{r['latency_ms']['p90']:.1f}",
            f"{r['peak_memory_mib']:.0f}",
            _load_text(r.get("cpu_use", {}).get("foreign_cores")),
            *_limit_cells(r),
        )
        for r in results
    ]
    widths = [max(len(h), *(len(row[i]) for row in rows)) if rows else len(h) for i, h in enumerate(header)]

    def line(cells):
        padded = (c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(cells, widths, strict=True)))
        return "  ".join(padded)

    return "\n".join([line(header), "  ".join("-" * w for w in widths), *(line(row) for row in rows)])


def _limit_cells(record):
    if "limit_ms" not in record:
        return ("n/a", "n/a", "n/a")
    limit = record["limit_ms"]
    return (f"{record['gmac']:.1f}", f"{limit['direct']:.0f}/{limit['winograd']:.0f}",
            f"{record['of_winograd_limit']:.0%}")  # fmt: skip


def _load_text(cores):
    return "n/a" if cores is None else f"{cores:.2f} cores"


def write_json(path, payload):
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(payload, indent=2) + "\n")
    os.replace(tmp, path)


def run(args):
    """Run a parsed command line; returns the JSON payload."""
    environment = machine_info()
    environment["threads"] = set_threads(args.threads, args.inter_threads)
    environment.update(tf_info())
    results = benchmark(
        args.models,
        batch_sizes=args.batch_sizes,
        size=args.size,
        precision=args.precision,
        xla=args.xla,
        warmup=args.warmup,
        iters=args.iters,
        fetch=args.fetch,
        output_stride=args.output_stride,
        seed=args.seed,
        max_foreign=args.max_foreign_load,
        limits=args.limits,
    )
    for record in results:
        record["threads"] = environment["threads"]
    return {"framework": "kseg", "environment": environment, "results": results}


def main(argv=None):
    args = parse_args(argv)
    cap_malloc_arenas()  # as `kseg bench` does: peak memory is part of what is measured
    payload = run(args)
    if not args.quiet:
        env = payload["environment"]
        threads = env["threads"]
        print(
            f"{env['device']}; TF {env['tensorflow']}, oneDNN {'on' if env['onednn'] else 'off'}, "
            f"threads intra={threads['intra_op']} inter={threads['inter_op']} (0 = TF's default); "
            f"warm-up {args.warmup}, {args.iters} timed calls"
        )
        print(format_table(payload["results"]))
        peaks = {r["peak_gflops"]["dtype"]: r["peak_gflops"]["value"] for r in payload["results"] if "peak_gflops" in r}
        if peaks:
            measured = ", ".join(f"{dtype} {value:.0f} GFLOP/s" for dtype, value in peaks.items())
            print(f"limits at this process's matmul peak ({measured}): the least time the counted multiply-"
                  "accumulates take, done directly / with Winograd F(2x2,3x3) on 3x3 stride-1 convolutions; "
                  "'of limit' = Winograd limit / p50")  # fmt: skip
    if args.json is not None:
        write_json(args.json, payload)
        if not args.quiet:
            print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
