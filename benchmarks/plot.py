"""Throughput against mIoU, as GluonCV's model zoo page draws it, with Pillow only.

    .venv/bin/python benchmarks/plot.py                                  # latest run of benchmarks/RESULTS.json
    .venv/bin/python benchmarks/plot.py --json bench.json --out chart.png  # a tools/benchmark.py JSON

Throughput (images/s, log scale) comes from the benchmark JSON: the last run
of ``side_by_side.py``'s ``RESULTS.json`` (one series per framework; torchvision
is left out, its weights have other mIoUs) or the records of a
``tools/benchmark.py --json`` file. mIoU is the zoo entry's (``kseg.presets``,
GluonCV's published score of those weights). GluonCV's published V100 numbers
(480x480, batch 32) are drawn as a separate series.
"""

import argparse
import json
import math
import sys
from pathlib import Path

from PIL import Image, ImageDraw, ImageFont

REPO = Path(__file__).resolve().parents[1]
HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(REPO))

# GluonCV's model zoo page: inference throughput on one V100, 480x480, batch 32 (the VOC models).
GLUONCV_V100 = {
    "fcn_resnet101_voc": 32.5,
    "psp_resnet101_voc": 26.6,
    "deeplab_resnet101_voc": 25.8,
    "deeplab_resnet152_voc": 20.4,
}
V100_LABEL = "GluonCV published, V100, batch 32"

COLORS = [(31, 119, 180), (255, 127, 14), (44, 160, 44), (214, 39, 40), (148, 103, 189), (140, 86, 75)]
MARKERS = ["circle", "square", "diamond", "triangle"]


def zoo_miou(name):
    from kseg.presets import PRESETS

    preset = PRESETS.get(name)
    return None if preset is None else preset.metrics.get("mIoU")


def series_from_json(data, run=-1):
    """``[(label, [(model, img/s, mIoU), ...]), ...]`` from a RESULTS.json or a tools/benchmark.py JSON."""
    series = []
    if "runs" in data:
        if not data["runs"]:
            raise ValueError("the JSON holds no runs")
        chosen = data["runs"][run]
        settings = chosen["settings"]
        where = f"{settings['device']} {settings['threads']} threads, batch {settings['batch_size']}"
        names = {"kseg": f"kseg {settings['precision']}", "gluoncv": "GluonCV (MXNet) float32"}
        for framework in settings["frameworks"]:
            if framework not in names:
                continue  # torchvision's own weights: no zoo mIoU
            points = []
            for row in chosen["rows"]:
                record = row.get(framework)
                if record:
                    points.append((record["name"], record["images_per_s"], zoo_miou(record["name"])))
            series.append((f"{names[framework]}, {where}", points))
    elif "results" in data:
        by_label = {}
        for record in data["results"]:
            label = f"{data.get('framework', 'kseg')} {record.get('precision', '')}, batch {record['batch_size']}"
            by_label.setdefault(label.replace(" ,", ","), []).append(
                (record["model"], record["images_per_s"], zoo_miou(record["model"]))
            )
        series.extend(by_label.items())
    else:
        raise ValueError("not a benchmark JSON: expected 'runs' (side_by_side.py) or 'results' (tools/benchmark.py)")
    series = [(label, [p for p in points if p[2] is not None and p[1] > 0]) for label, points in series]
    return [(label, points) for label, points in series if points]


def v100_series():
    return [(V100_LABEL, [(name, ips, zoo_miou(name)) for name, ips in GLUONCV_V100.items()])]


def _font(size):
    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow < 10.1 has one bitmap size
        return ImageFont.load_default()


def _log_ticks(low, high):
    ticks = []
    decade = 10 ** math.floor(math.log10(low))
    while decade <= high * 10:
        for m in (1, 2, 5):
            value = m * decade
            if low <= value <= high:
                ticks.append(value)
        decade *= 10
    return ticks


def _marker(draw, kind, x, y, r, color):
    if kind == "circle":
        draw.ellipse([x - r, y - r, x + r, y + r], fill=color, outline=(0, 0, 0))
    elif kind == "square":
        draw.rectangle([x - r, y - r, x + r, y + r], fill=color, outline=(0, 0, 0))
    elif kind == "diamond":
        draw.polygon([(x, y - r - 1), (x + r + 1, y), (x, y + r + 1), (x - r - 1, y)], fill=color, outline=(0, 0, 0))
    else:
        draw.polygon([(x, y - r - 1), (x + r + 1, y + r), (x - r - 1, y + r)], fill=color, outline=(0, 0, 0))


def render(series, path, title="Throughput vs mIoU", size=(1000, 640)):
    """Draw ``series`` (see :func:`series_from_json`) as a scatter chart PNG at ``path``."""
    points = [p for _, pts in series for p in pts]
    if not points:
        raise ValueError("nothing to plot: no model with both a throughput and a zoo mIoU")
    width, height = size
    left, right, top, bottom = 90, 30, 60, 150
    image = Image.new("RGB", size, "white")
    draw = ImageDraw.Draw(image)
    font, small, big = _font(15), _font(12), _font(18)

    xs = [p[1] for p in points]
    ys = [p[2] for p in points]
    x_low, x_high = min(xs) / 1.6, max(xs) * 1.6
    y_low, y_high = math.floor(min(ys) - 1), math.ceil(max(ys) + 1)

    def px(value):
        return left + (math.log10(value) - math.log10(x_low)) / (math.log10(x_high) - math.log10(x_low)) * (
            width - left - right
        )

    def py(value):
        return top + (y_high - value) / (y_high - y_low) * (height - top - bottom)

    draw.text((width / 2, 20), title, fill="black", font=big, anchor="mt")
    plot_bottom = height - bottom
    draw.rectangle([left, top, width - right, plot_bottom], outline="black")
    for tick in _log_ticks(x_low, x_high):
        x = px(tick)
        draw.line([x, top, x, plot_bottom], fill=(225, 225, 225))
        draw.line([x, plot_bottom, x, plot_bottom + 5], fill="black")
        draw.text((x, plot_bottom + 8), f"{tick:g}", fill="black", font=font, anchor="mt")
    y_step = 1 if y_high - y_low <= 10 else 2 if y_high - y_low <= 20 else 5
    for tick in range(int(y_low), int(y_high) + 1, y_step):
        y = py(tick)
        draw.line([left, y, width - right, y], fill=(225, 225, 225))
        draw.line([left - 5, y, left, y], fill="black")
        draw.text((left - 8, y), f"{tick}", fill="black", font=font, anchor="rm")
    draw.rectangle([left, top, width - right, plot_bottom], outline="black")
    draw.text(
        ((left + width - right) / 2, plot_bottom + 32),
        "throughput (images/s, log scale)",
        fill="black",
        font=font,
        anchor="mt",
    )
    label_y = Image.new("RGBA", (260, 24), (255, 255, 255, 0))
    ImageDraw.Draw(label_y).text((130, 12), "mIoU (%, GluonCV's published)", fill="black", font=font, anchor="mm")
    label_y = label_y.rotate(90, expand=True)
    image.paste(label_y, (14, int((top + plot_bottom) / 2 - 130)), label_y)

    for index, (label, pts) in enumerate(series):
        color = COLORS[index % len(COLORS)]
        kind = MARKERS[index % len(MARKERS)]
        for name, ips, miou in pts:
            x, y = px(ips), py(miou)
            _marker(draw, kind, x, y, 6, color)
            # Alternate series label above / below their points, and left of points near the right edge,
            # so that two frameworks' labels at the same mIoU do not overlap.
            above = index % 2 == 0
            flip = x > width - right - 230
            anchor = ("r" if flip else "l") + ("b" if above else "t")
            text_x = x - 8 if flip else x + 8
            draw.text((text_x, y - 5 if above else y + 5), f"{name}: {ips:.3g}", fill=color, font=small, anchor=anchor)
        legend_y = plot_bottom + 60 + 22 * index
        _marker(draw, kind, left + 8, legend_y, 6, color)
        draw.text((left + 22, legend_y), label, fill="black", font=font, anchor="lm")
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    image.save(path)
    return path


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--json", type=Path, default=HERE / "RESULTS.json", help="benchmark JSON")
    parser.add_argument("--run", type=int, default=-1, help="which run of a RESULTS.json (default: the last)")
    parser.add_argument("--out", type=Path, default=HERE / "throughput_vs_miou.png")
    parser.add_argument("--no-v100", action="store_true", help="leave GluonCV's published V100 series out")
    args = parser.parse_args(argv)
    if not args.json.is_file():
        parser.error(f"--json {args.json} not found (run benchmarks/side_by_side.py or tools/benchmark.py --json)")
    try:
        series = series_from_json(json.loads(args.json.read_text()), args.run)
    except (ValueError, KeyError, IndexError) as error:
        parser.error(f"--json {args.json}: {error}")
    if not args.no_v100:
        series += v100_series()
    render(series, args.out, title="Semantic segmentation: throughput vs mIoU (480x480)")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
