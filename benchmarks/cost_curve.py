"""How cost grows with batch and image size: images/s and peak memory, kseg and GluonCV side by side.

    .venv/bin/python benchmarks/cost_curve.py                       # fcn, psp, deeplab resnet101; both frameworks
    .venv/bin/python benchmarks/cost_curve.py --models fcn --iters 3 --no-gluoncv

For one model of each family and each configuration (batch 1, 4 and 16 at
480x480; batch 1 at 240x240 to 1024x2048, Cityscapes' full frame) every
measurement runs in a fresh process: ``tools/benchmark.py`` for kseg (float32,
its default CPU path) and ``benchmarks/gluoncv_bench.py`` in the side venv for
GluonCV, both with ``--threads`` threads, random weights, the first call
untimed. Peak memory is the process's peak resident set (``getrusage``), the
framework's own footprint included, so the two columns are what each takes to
do the job. Writes ``benchmarks/cost_curve.json``, ``benchmarks/cost_curve.png``
(Pillow only) and appends a table to ``benchmarks/RESULTS.md``.
"""

import argparse
import json
import math
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from PIL import Image, ImageDraw, ImageFont

REPO = Path(__file__).resolve().parents[1]
HERE = Path(__file__).resolve().parent
FAMILIES = {"fcn": "fcn_resnet101_voc", "psp": "psp_resnet101_ade", "deeplab": "deeplab_resnet101_voc"}
CONFIGS = [(1, 240, 240), (1, 480, 480), (4, 480, 480), (16, 480, 480), (1, 720, 720), (1, 1024, 1024),
           (1, 1024, 2048)]  # fmt: skip


def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", default=",".join(FAMILIES), help=f"families among {', '.join(FAMILIES)}")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--iters", type=int, default=2, help="timed calls per measurement (after the first)")
    parser.add_argument("--no-gluoncv", action="store_true")
    parser.add_argument(
        "--gluoncv-python", default=os.environ.get("KSEG_GLUONCV_PYTHON") or str(REPO / ".venv-gluoncv/bin/python")
    )
    parser.add_argument("--json", type=Path, default=HERE / "cost_curve.json")
    parser.add_argument("--plot", type=Path, default=HERE / "cost_curve.png")
    parser.add_argument("--results", type=Path, default=HERE / "RESULTS.md")
    parser.add_argument("--no-write", action="store_true", help="print the table only")
    args = parser.parse_args(argv)
    unknown = set(args.models.split(",")) - set(FAMILIES)
    if unknown:
        parser.error(f"unknown families {', '.join(sorted(unknown))}; choose among {', '.join(FAMILIES)}")
    return args


def run_json(command):
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "out.json"
        env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
        proc = subprocess.run([*command, "--json", str(out)], capture_output=True, text=True, env=env, check=False)
        if proc.returncode != 0 or not out.is_file():
            tail = "\n".join(proc.stderr.strip().splitlines()[-10:])
            raise RuntimeError(f"{' '.join(command[:3])} failed (exit {proc.returncode}):\n{tail}")
        (record,) = json.loads(out.read_text())["results"]
        return record


def measure(framework, name, batch, height, width, args):
    common = ["--threads", str(args.threads), "--warmup", "0", "--iters", str(args.iters)]
    if framework == "kseg":
        command = [sys.executable, str(REPO / "tools" / "benchmark.py"), name, "--batch-sizes", str(batch),
                   "--size", f"{height}x{width}", "--no-limits", "--quiet", *common]  # fmt: skip
    else:
        command = [args.gluoncv_python, str(HERE / "gluoncv_bench.py"), name, "--batch-size", str(batch),
                   "--size", f"{height}x{width}", *common]  # fmt: skip
    record = run_json(command)
    return {"images_per_s": record["images_per_s"], "peak_rss_mib": record["process_peak_rss_mib"],
            "p50_ms": record["latency_ms"]["p50"]}  # fmt: skip


def draw(rows, path):
    """Two log-log panels against pixels per call at batch 1: images/s and peak memory."""
    width, height, margin = 1100, 460, 70
    image = Image.new("RGB", (width, height), "white")
    pen = ImageDraw.Draw(image)
    font = ImageFont.load_default()
    colours = {"fcn": (31, 119, 180), "psp": (214, 39, 40), "deeplab": (44, 160, 44)}
    panels = [("images/s (batch 1)", "images_per_s"), ("peak memory, MiB (batch 1)", "peak_rss_mib")]
    single = [r for r in rows if r["batch"] == 1]
    pixels = [r["height"] * r["width"] for r in single]
    for index, (title, key) in enumerate(panels):
        left = margin + index * (width // 2)
        right, top, bottom = left + width // 2 - 2 * margin, 40, height - 60
        values = [r[f][key] for r in single for f in ("kseg", "gluoncv") if r.get(f)]
        low, high = math.log10(min(values)) - 0.1, math.log10(max(values)) + 0.1
        px_low, px_high = math.log10(min(pixels)), math.log10(max(pixels))

        def point(p, v, left=left, right=right, top=top, bottom=bottom, low=low, high=high, px_low=px_low,
                  px_high=px_high):  # fmt: skip
            x = left + (math.log10(p) - px_low) / (px_high - px_low) * (right - left)
            y = bottom - (math.log10(v) - low) / (high - low) * (bottom - top)
            return x, y

        pen.rectangle([left, top, right, bottom], outline="black")
        pen.text((left, 15), title, fill="black", font=font)
        for r in single:
            x, _ = point(r["height"] * r["width"], 10**low)
            pen.text((x - 25, bottom + 8), f"{r['height']}x{r['width']}", fill="black", font=font)
        for exponent in range(math.floor(low), math.ceil(high) + 1):
            for mantissa in (1, 2, 5):
                value = mantissa * 10**exponent
                if low <= math.log10(value) <= high:
                    _, y = point(10 ** px_low, value)
                    pen.line([left - 4, y, left, y], fill="black")
                    pen.text((left - 45, y - 6), f"{value:g}", fill="black", font=font)
        for family, colour in colours.items():
            for framework, dash in (("kseg", False), ("gluoncv", True)):
                points = [point(r["height"] * r["width"], r[framework][key]) for r in single
                          if r["family"] == family and r.get(framework)]  # fmt: skip
                for a, b in zip(points, points[1:], strict=False):
                    if dash:
                        for t in range(0, 10, 2):
                            pen.line([a[0] + (b[0] - a[0]) * t / 10, a[1] + (b[1] - a[1]) * t / 10,
                                      a[0] + (b[0] - a[0]) * (t + 1) / 10, a[1] + (b[1] - a[1]) * (t + 1) / 10],
                                     fill=colour, width=2)  # fmt: skip
                    else:
                        pen.line([a, b], fill=colour, width=3)
                for x, y in points:
                    pen.ellipse([x - 3, y - 3, x + 3, y + 3], fill=colour)
    x = margin
    for family, colour in colours.items():  # a swatch, then its name
        pen.rectangle([x, height - 24, x + 10, height - 14], fill=colour)
        pen.text((x + 14, height - 25), f"{family}_resnet101", fill="black", font=font)
        x += 140
    pen.text((x, height - 25), "solid: kseg (TensorFlow)   dashed: GluonCV (MXNet)", fill="black", font=font)
    path.parent.mkdir(parents=True, exist_ok=True)
    image.save(path)


def table(rows, threads):
    when = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    lines = [
        f"## How cost grows: batch and image size, kseg and GluonCV ({when})",
        "",
        f"`benchmarks/cost_curve.py`: float32, {threads} threads, random weights, each measurement in a fresh "
        "process; peak memory is the process's peak resident set (the framework's own footprint included).",
        "",
        "| model | batch | size | kseg img/s | GluonCV img/s | kseg/GluonCV | kseg peak MiB | GluonCV peak MiB |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        k, g = r["kseg"], r.get("gluoncv")
        ratio = f"{k['images_per_s'] / g['images_per_s']:.2f}" if g else "–"
        lines.append(
            f"| {r['model']} | {r['batch']} | {r['height']}x{r['width']} | {k['images_per_s']:.3f} | "
            f"{g['images_per_s']:.3f} | {ratio} | {k['peak_rss_mib']:.0f} | {g['peak_rss_mib']:.0f} |"
            if g
            else f"| {r['model']} | {r['batch']} | {r['height']}x{r['width']} | {k['images_per_s']:.3f} | – | – | "
            f"{k['peak_rss_mib']:.0f} | – |"
        )
    return "\n".join(lines) + "\n"


def main(argv=None):
    args = parse_args(sys.argv[1:] if argv is None else argv)
    rows = []
    for family in args.models.split(","):
        name = FAMILIES[family]
        for batch, height, width in CONFIGS:
            row = {"family": family, "model": name, "batch": batch, "height": height, "width": width}
            for framework in ("kseg",) if args.no_gluoncv else ("kseg", "gluoncv"):
                row[framework] = measure(framework, name, batch, height, width, args)
                print(f"{framework:8s} {name} batch {batch} {height}x{width}: {row[framework]}", file=sys.stderr)
            rows.append(row)
    text = table(rows, args.threads)
    print(text)
    if not args.no_write:
        args.json.write_text(json.dumps({"threads": args.threads, "iters": args.iters, "rows": rows}, indent=2) + "\n")
        draw(rows, args.plot)
        with open(args.results, "a") as f:
            f.write("\n" + text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
