"""Timing helpers shared by the framework scripts run in other venvs (numpy only; no kseg, no TensorFlow).

They mirror ``kseg.benchmark``: the first call and the warm-up are not timed,
every timed call ends with a value fetched to the host, and ``CpuMonitor``
records how much CPU other processes took meanwhile.
"""

import argparse
import os
import time

import numpy as np


def parse_size(text):
    parts = str(text).lower().split("x")
    try:
        size = [int(p) for p in parts]
    except ValueError:
        size = []
    if len(size) == 1:
        size *= 2
    if len(size) != 2 or min(size) < 1:
        raise argparse.ArgumentTypeError(f"invalid size {text!r}: expected HEIGHTxWIDTH, e.g. 480x480")
    return tuple(size)


def common_arguments(parser):
    parser.add_argument("models", nargs="+")
    parser.add_argument("--batch-size", type=int, default=1)
    parser.add_argument("--size", type=parse_size, default=(480, 480), help="HEIGHTxWIDTH")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--iters", type=int, default=10)
    parser.add_argument("--input", default=None, help=".npy NHWC float32 batch (default: seeded normal)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", default=None)
    parser.add_argument("--max-foreign-load", type=float, default=None, help="see kseg.benchmark --max-foreign-load")


def load_images(args):
    if args.input:
        return np.load(args.input).astype(np.float32)
    height, width = args.size
    return np.random.default_rng(args.seed).standard_normal((args.batch_size, height, width, 3), np.float32)


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


class CpuMonitor:
    """Average cores this process (``own_cores``) and all others (``foreign_cores``) used meanwhile."""

    def __enter__(self):
        self._start = (_host_busy_s(), _own_cpu_s(), time.perf_counter())
        return self

    def __exit__(self, *exc):
        busy, own, wall = self._start
        end_busy, end_own = _host_busy_s(), _own_cpu_s()
        self.wall_s = max(time.perf_counter() - wall, 1e-9)
        self.own_cores = (end_own - own) / self.wall_s
        self.foreign_cores = None
        if busy is not None and end_busy is not None:
            self.foreign_cores = max(0.0, (end_busy - busy) - (end_own - own)) / self.wall_s
        return False


def time_model(call, batch, warmup, iters, max_foreign=None):
    """The record fields for ``call`` (one forward + fetch): throughput, latency percentiles, CPU use.

    As ``kseg.benchmark.time_calls``: with ``max_foreign`` (cores) a timed call
    during which other processes took more CPU is discarded and repeated, up to
    ``5 * iters`` timed calls in all.
    """
    start = time.perf_counter()
    call()
    first = time.perf_counter() - start
    for _ in range(warmup):
        call()
    max_attempts = 5 * iters
    times, own_s, foreign_s, discarded = [], 0.0, [], 0
    while len(times) < iters:
        with CpuMonitor() as monitor:
            start = time.perf_counter()
            call()
            elapsed = time.perf_counter() - start
        busy = monitor.foreign_cores
        attempts_left = max_attempts - len(times) - discarded - 1
        if max_foreign is not None and busy is not None and busy > max_foreign and attempts_left > 0:
            discarded += 1
            continue
        times.append(elapsed)
        own_s += monitor.own_cores * monitor.wall_s
        if busy is not None:
            foreign_s.append(busy * monitor.wall_s)
    t = np.asarray(times)
    measured = len(foreign_s) == len(times)
    worst = max(f / e for f, e in zip(foreign_s, times, strict=True)) if measured else None
    return {
        "batch_size": int(batch),
        "images_per_s": float(batch * len(t) / t.sum()),
        "latency_ms": {
            "p50": float(np.percentile(t, 50) * 1e3),
            "p90": float(np.percentile(t, 90) * 1e3),
            "mean": float(t.mean() * 1e3),
            "min": float(t.min() * 1e3),
            "max": float(t.max() * 1e3),
        },
        "cpu_use": {
            "own_cores": round(own_s / t.sum(), 3),
            "foreign_cores": round(sum(foreign_s) / t.sum(), 3) if measured else None,
            "foreign_cores_worst_call": None if worst is None else round(worst, 3),
            "discarded_calls": discarded,
            "max_foreign_cores": max_foreign,
        },
        "first_call_s": float(first),
        "times_s": [float(v) for v in times],
    }
