"""kseg.benchmark / tools/benchmark.py and benchmarks/plot.py (no timing assertions, no GluonCV, no torch)."""

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from kseg import benchmark

REPO = Path(__file__).resolve().parents[2]
TINY = "fcn:resnet18_v1b:5"
TINY_ARGS = [TINY, "--size", "64x64", "--iters", "2", "--warmup", "1"]


def load_script(path, name):
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def check_record(record, batch):
    assert record["model"] == TINY
    assert record["batch_size"] == batch
    assert (record["height"], record["width"]) == (64, 64)
    assert record["precision"] == "float32"
    assert record["images_per_s"] > 0
    latency = record["latency_ms"]
    assert 0 < latency["min"] <= latency["p50"] <= latency["p90"] <= latency["max"]
    assert len(record["times_s"]) == 2
    assert record["peak_memory_mib"] >= 0
    assert record["memory_kind"] in ("cpu_maxrss_delta", "gpu_allocator_peak")
    assert record["parameters"] > 0
    assert "foreign_cores" in record["cpu_use"]
    assert record["gmac"] > record["gmac_winograd_eligible"] > 0 and record["peak_gflops"]["value"] > 0
    assert record["limit_ms"]["direct"] > record["limit_ms"]["winograd"] > 0 and record["of_winograd_limit"] > 0


def test_main_prints_table_and_writes_json(tmp_path, capsys):
    path = tmp_path / "out" / "bench.json"
    assert benchmark.main([*TINY_ARGS, "--batch-sizes", "1,2", "--json", str(path)]) == 0
    out = capsys.readouterr().out
    for column in ("model", "batch", "img/s", "p50 ms", "p90 ms", "peak MiB"):
        assert column in out
    assert out.count(TINY) == 2
    payload = json.loads(path.read_text())
    assert payload["framework"] == "kseg"
    env = payload["environment"]
    for key in ("tensorflow", "keras", "device", "cpu", "cpu_cores", "threads", "date"):
        assert key in env
    assert [r["batch_size"] for r in payload["results"]] == [1, 2]
    for record, batch in zip(payload["results"], (1, 2), strict=True):
        check_record(record, batch)


def test_library_call_and_fetch_modes():
    (record,) = benchmark.benchmark([TINY], size=(64, 48), iters=2, warmup=0, fetch="argmax")
    assert (record["height"], record["width"]) == (64, 48)
    assert record["fetch"] == "argmax"
    inputs = np.zeros((3, 32, 40, 3), np.float32)
    model = benchmark.build_model(TINY)
    (record,) = benchmark.benchmark_model(model, iters=1, warmup=0, fetch="logits", inputs=inputs)
    assert (record["batch_size"], record["height"], record["width"]) == (3, 32, 40)


def test_tool_script_calls_main(tmp_path, capsys):
    tool = load_script(REPO / "tools" / "benchmark.py", "benchmark_tool")
    assert tool.main is benchmark.main
    path = tmp_path / "b.json"
    assert tool.main([*TINY_ARGS, "--quiet", "--json", str(path)]) == 0
    assert capsys.readouterr().out == ""
    check_record(json.loads(path.read_text())["results"][0], 1)


def test_format_table_columns():
    record = {
        "model": "m",
        "batch_size": 1,
        "height": 8,
        "width": 8,
        "precision": "float32",
        "xla": True,
        "images_per_s": 1.5,
        "latency_ms": {"p50": 600.0, "p90": 700.0},
        "peak_memory_mib": 12.0,
        "cpu_use": {"foreign_cores": None},
    }
    lines = benchmark.format_table([record]).splitlines()
    assert len(lines) == 3
    assert lines[2].split() == ["m", "1", "8x8", "float32", "on", "1.50", "600.0", "700.0", "12", "n/a"] + ["n/a"] * 3
    record.update(gmac=196.0, limit_ms={"direct": 1921.6, "winograd": 1276.2}, of_winograd_limit=0.851)
    assert benchmark.format_table([record]).splitlines()[2].split()[-3:] == ["196.0", "1922/1276", "85%"]


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        ([TINY, "--size", "480by480"], "invalid size '480by480'"),
        ([TINY, "--size", "0x64"], "invalid size '0x64'"),
        ([TINY, "--batch-sizes", "1,0"], "invalid batch sizes '1,0'"),
        ([TINY, "--batch-sizes", "a"], "invalid batch sizes 'a'"),
        ([TINY, "--iters", "0"], "invalid value '0'"),
        ([TINY, "--warmup", "-1"], "invalid value '-1'"),
        ([TINY, "--threads", "two"], "invalid value 'two'"),
        ([TINY, "--precision", "float16"], "invalid choice: 'float16'"),
        (["fcn_resnet101_vco"], "did you mean fcn_resnet101_voc"),
        (["mask_rcnn_fpn_resnet50_v1b_cocoo"], "did you mean mask_rcnn_fpn_resnet50_v1b_coco"),
        (["nonsense"], "unknown model 'nonsense'"),
        (["fcn:resnet18_v1b"], "METHOD:BACKBONE:CLASSES"),
        (["unet:resnet18_v1b:5"], "unknown method 'unet'"),
        (["fcn:resnet18_v1b:0"], "classes must be a positive integer"),
        ([TINY, "--inter-threads", "1"], "--inter-threads needs --threads"),
        ([], "the following arguments are required: MODEL"),
    ],
)
def test_bad_arguments(argv, message, capsys):
    with pytest.raises(SystemExit) as exit_info:
        benchmark.parse_args(argv)
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err


def test_json_path_must_not_be_a_directory(tmp_path, capsys):
    with pytest.raises(SystemExit):
        benchmark.parse_args([TINY, "--json", str(tmp_path)])
    assert "is a directory" in capsys.readouterr().err


def test_parsers():
    assert benchmark.parse_size("480x320") == (480, 320)
    assert benchmark.parse_size("256") == (256, 256)
    assert benchmark.parse_batch_sizes("1,2,8") == (1, 2, 8)
    args = benchmark.parse_args(["deeplab_resnet101_voc", "fcn:resnet50_v1s:21"])
    assert args.size == (480, 480) and args.batch_sizes == (1,) and args.precision == "float32"
    assert args.xla is False and benchmark.parse_args([TINY, "--xla"]).xla is True


def test_cpu_monitor_reports_cores():
    with benchmark.CpuMonitor() as monitor:
        sum(i * i for i in range(200_000))
    assert monitor.own_cores >= 0
    assert monitor.foreign_cores is None or monitor.foreign_cores >= 0


# ----------------------------------------------------------------------------- benchmarks/plot.py


@pytest.fixture(scope="module")
def plot():
    return load_script(REPO / "benchmarks" / "plot.py", "benchmark_plot")


def side_by_side_json():
    def record(name, ips):
        return {"name": name, "images_per_s": ips, "latency_ms": {"p50": 1000 / ips}}

    return {
        "runs": [
            {
                "settings": {
                    "device": "CPU",
                    "threads": 2,
                    "batch_size": 1,
                    "precision": "float32",
                    "frameworks": ["kseg", "gluoncv", "torchvision"],
                },
                "rows": [
                    {
                        "model": "fcn_resnet101",
                        "kseg": record("fcn_resnet101_voc", 1.1),
                        "gluoncv": record("fcn_resnet101_voc", 1.0),
                        "torchvision": record("fcn_resnet101", 1.0),
                    },
                    {
                        "model": "psp_resnet101",
                        "kseg": record("psp_resnet101_voc", 0.9),
                        "gluoncv": record("psp_resnet101_voc", 0.8),
                        "torchvision": None,
                    },
                ],
            }
        ]
    }


def test_plot_renders_png_from_side_by_side_json(plot, tmp_path):
    path = tmp_path / "results.json"
    path.write_text(json.dumps(side_by_side_json()))
    out = tmp_path / "chart.png"
    assert plot.main(["--json", str(path), "--out", str(out)]) == 0
    with Image.open(out) as image:
        assert image.format == "PNG" and image.size == (1000, 640)
        assert len(image.getcolors(1_000_000)) > 10  # not blank
    series = plot.series_from_json(side_by_side_json())
    assert [label.split(",")[0] for label, _ in series] == ["kseg float32", "GluonCV (MXNet) float32"]
    assert series[0][1] == [("fcn_resnet101_voc", 1.1, 83.6), ("psp_resnet101_voc", 0.9, 85.1)]
    names = [name for name, _, _ in plot.v100_series()[0][1]]
    assert names == ["fcn_resnet101_voc", "psp_resnet101_voc", "deeplab_resnet101_voc", "deeplab_resnet152_voc"]


def test_plot_reads_tool_json_and_skips_models_without_miou(plot, tmp_path):
    data = {
        "framework": "kseg",
        "results": [
            {"model": "deeplab_resnet101_ade", "batch_size": 1, "precision": "float32", "images_per_s": 1.0},
            {"model": TINY, "batch_size": 1, "precision": "float32", "images_per_s": 50.0},
        ],
    }
    series = plot.series_from_json(data)
    assert series == [("kseg float32, batch 1", [("deeplab_resnet101_ade", 1.0, 44.1)])]
    out = tmp_path / "chart.png"
    plot.render(series, out)
    assert out.stat().st_size > 0


def test_plot_bad_json(plot, tmp_path, capsys):
    path = tmp_path / "x.json"
    path.write_text(json.dumps({"something": 1}))
    with pytest.raises(SystemExit):
        plot.main(["--json", str(path), "--out", str(tmp_path / "c.png")])
    assert "not a benchmark JSON" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        plot.main(["--json", str(tmp_path / "missing.json")])
    assert "not found" in capsys.readouterr().err


# ----------------------------------------------------------------------------- benchmarks/side_by_side.py


@pytest.fixture(scope="module")
def side_by_side():
    return load_script(REPO / "benchmarks" / "side_by_side.py", "side_by_side")


def test_side_by_side_arguments(side_by_side, capsys):
    args = side_by_side.parse_args(["--no-gluoncv"])
    assert args.models == ["fcn_resnet101", "deeplab_resnet101", "psp_resnet101"]
    assert (args.batch_size, args.size, args.threads, args.precision) == (1, (480, 480), 2, "float32")
    for argv, message in [
        (["--no-gluoncv", "--models", "fcn_resnet101,unet"], "unknown model(s) unet"),
        (["--no-gluoncv", "--threads", "0"], "invalid value '0'"),
        (["--no-gluoncv", "--torch-python", "/nonexistent/python"], "--torch-python /nonexistent/python not found"),
        (["--gluoncv-python", "/nonexistent/python"], "not found (or pass --no-gluoncv)"),
    ]:
        with pytest.raises(SystemExit):
            side_by_side.parse_args(argv)
        assert message in capsys.readouterr().err


def test_side_by_side_markdown_and_files(side_by_side, tmp_path):
    def record(name, ips, foreign=0.01):
        return {
            "name": name,
            "images_per_s": ips,
            "latency_ms": {"p50": 1000 / ips},
            "cpu_use": {"foreign_cores": foreign},
        }

    run = {
        "date": "2026-01-01 00:00 UTC",
        "machine": {"cpu": "Some CPU", "cpu_cores": 2, "memory_gib": 8, "platform": "Linux"},
        "software": {
            "kseg": {"tensorflow": "2.21.0", "keras": "3.15.1", "onednn": True, "threads": {"intra_op": 2}},
            "gluoncv": {"gluoncv": "0.10.5", "mxnet": "1.9.1", "mkldnn": True},
            "torchvision": {"torch": "2.14.1", "torchvision": "0.29.1"},
        },
        "settings": {
            "precision": "float32",
            "batch_size": 1,
            "size": [480, 480],
            "threads": 2,
            "xla": False,
            "warmup": 3,
            "iters": 10,
            "rounds": 1,
            "frameworks": ["kseg", "gluoncv", "torchvision"],
        },
        "rows": [
            {
                "model": "fcn_resnet101",
                "kseg": record("fcn_resnet101_voc", 2.0),
                "gluoncv": record("fcn_resnet101_voc", 1.0, 0.2),
                "torchvision": record("fcn_resnet101", 1.6),
            },
            {"model": "psp_resnet101", "kseg": record("psp_resnet101_voc", 1.0), "gluoncv": None, "torchvision": None},
        ],
    }
    text = side_by_side.markdown(run)
    assert "| fcn_resnet101 | 2.000 | 500 | 1.000 | 1000 | 1.600 | 625 | 2.00 | 1.25 |" in text
    assert "| psp_resnet101 | 1.000 | 1000 | – | – | – | – | – | – |" in text
    assert "Some CPU" in text and "at most 0.20 of 2 cores" in text and "GPU: not measured" in text
    md, js = tmp_path / "RESULTS.md", tmp_path / "RESULTS.json"
    side_by_side.append_results(run, md, js)
    side_by_side.append_results(run, md, js)
    assert md.read_text().count("## 2026-01-01") == 2
    assert len(json.loads(js.read_text())["runs"]) == 2
