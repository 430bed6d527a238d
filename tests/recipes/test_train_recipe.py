"""``recipes/train.py`` as users run it, in a process of its own: the flags, one device, MirroredStrategy on
logical CPUs (set before TensorFlow starts), two workers, kill and exact resume (op determinism is for the
whole process). The rest of training is tested in-process, in tests/training/test_train.py."""

import csv
import json
import os
import signal
import socket
import subprocess
import sys
import time

import numpy as np
import pytest
from recipe_runner import REPO, output_of, run_recipe
from test_case import weights_in_file

from kseg.data.synthetic import write_dataset

TINY = ["--model=fcn", "--backbone=resnet18_v1b", "--dataset=ade20k", "--output-stride=16"]
TINY += ["--base-size=64", "--crop-size=48", "--batch-size=2", "--max-val-images=2", "--precision=float32"]


@pytest.fixture(scope="module")
def data_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("data")
    write_dataset("ade20k", root, num_train=6, num_val=2, size=(40, 56), seed=4)
    return root


def train(*args, env=None, timeout=600):
    return run_recipe("train.py", *args, env=env, timeout=timeout)


def assert_same_weights(a, b):
    first, second = weights_in_file(a), weights_in_file(b)
    assert first.keys() == second.keys()
    for key in first:
        np.testing.assert_array_equal(first[key], second[key], err_msg=key)


def test_one_device_run_writes_everything(data_root, tmp_path):
    run = tmp_path / "run"
    result = train(*TINY, f"--dataset-dir={data_root}", f"--run-dir={run}", "--epochs=2", "--aux")
    assert result.returncode == 0, output_of(result)
    for name in ("flags.txt", "log.csv", "metrics.json", "checkpoint.weights.h5", "fcn_resnet18_v1b_ade.weights.h5"):
        assert (run / name).is_file(), name
    assert list((run / "tensorboard").rglob("events.out.tfevents.*"))
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["steps"] == 6 and metrics["images"] == 2 and 0 <= metrics["mIoU"] <= 1
    assert len(metrics["IoU"]) == 150
    with open(run / "log.csv") as f:
        rows = list(csv.DictReader(f))
    assert [row["epoch"] for row in rows] == ["0", "1"] and "val_logits_mIoU" in rows[0]
    # The written flags are themselves a flagfile that reproduces the run.
    assert "--run-dir=" in (run / "flags.txt").read_text() and "--aux" in (run / "flags.txt").read_text()
    rerun = train(f"--flagfile={run / 'flags.txt'}")
    assert rerun.returncode == 0, output_of(rerun)
    assert "already finished" in rerun.stdout


def test_mirrored_strategy_on_two_logical_cpus(data_root, tmp_path):
    run = tmp_path / "run"
    result = train(*TINY, f"--dataset-dir={data_root}", f"--run-dir={run}", "--epochs=1", "--strategy=mirrored",
                   "--cpu-devices=2", "--syncbn", "--aux")
    assert result.returncode == 0, output_of(result)
    assert "2 replica(s), MirroredStrategy" in result.stdout
    assert json.loads((run / "metrics.json").read_text())["steps"] == 3


@pytest.fixture(scope="module")
def exact_runs(data_root, tmp_path_factory):
    """The arguments of the exact-resume tests and an uninterrupted run of them (seeded, deterministic)."""
    common = [*TINY, f"--dataset-dir={data_root}", "--epochs=3", "--checkpoint-steps=1", "--deterministic",
              "--val-every=0", "--aux"]
    straight = tmp_path_factory.mktemp("straight")
    result = train(*common, f"--run-dir={straight}")
    assert result.returncode == 0, output_of(result)
    return common, straight


def start_run(common, run_dir, output=subprocess.DEVNULL):
    return subprocess.Popen(
        [sys.executable, str(REPO / "recipes" / "train.py"), *common, f"--run-dir={run_dir}"],
        cwd=REPO, env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2"), stdout=output, stderr=output, text=True,
    )  # fmt: skip


def wait_for_step(process, run_dir, step):
    """Wait until the run has checkpointed ``step``; the run must still be going."""
    state = run_dir / "checkpoint.json"
    deadline = time.time() + 300
    while time.time() < deadline and process.poll() is None:
        if state.is_file() and json.loads(state.read_text())["step"] >= step:
            break
        time.sleep(0.05)
    assert process.poll() is None, f"the run ended before step {step}, where it was to be interrupted"


def checkpointed_step(run_dir):
    return json.loads((run_dir / "checkpoint.json").read_text())["step"]


def test_interrupted_three_ways_the_run_resumes_to_the_uninterrupted_weights(exact_runs, tmp_path):
    """Ctrl-C, then a planned stop mid-epoch (--stop-after-steps), then SIGKILL: each rerun resumes where the
    last one left off, and the end is bit for bit the uninterrupted run's. One chain of four processes."""
    common, straight = exact_runs
    run = tmp_path / "run"

    # Ctrl-C: a clean stop at a step, exit 130, a word on how to resume, no traceback.
    process = start_run(common, run, output=subprocess.PIPE)
    wait_for_step(process, run, 2)
    process.send_signal(signal.SIGINT)
    out, err = process.communicate(timeout=300)
    assert process.returncode == 130, err[-3000:]
    assert "Interrupted: stopping after this step" in err and "run the same command again to resume" in out
    assert "Traceback" not in err
    stopped_at = checkpointed_step(run)

    # A planned stop mid-epoch 2 (3 steps an epoch).
    planned = train(*common, f"--run-dir={run}", "--stop-after-steps=5")
    assert planned.returncode == 0 and f"Resuming at step {stopped_at}" in planned.stdout, output_of(planned)
    assert "Stopped at step 5 of 9" in planned.stdout, output_of(planned)

    # SIGKILL mid-epoch 3: no half-written file is left behind.
    process = start_run(common, run)
    wait_for_step(process, run, 7)
    process.send_signal(signal.SIGKILL)
    process.wait()
    killed_at = checkpointed_step(run)
    assert 5 < killed_at < 9
    assert not [p.name for p in run.iterdir() if p.name.startswith(".")], "half-written files left behind"

    resumed = train(*common, f"--run-dir={run}")
    assert resumed.returncode == 0 and f"Resuming at step {killed_at}" in resumed.stdout, output_of(resumed)
    assert_same_weights(straight / "checkpoint.weights.h5", run / "checkpoint.weights.h5")
    assert_same_weights(straight / "fcn_resnet18_v1b_ade.weights.h5", run / "fcn_resnet18_v1b_ade.weights.h5")


def free_port():
    with socket.socket() as s:
        s.bind(("localhost", 0))
        return s.getsockname()[1]


def test_two_workers_on_localhost(data_root, tmp_path):
    ports = [free_port(), free_port()]
    cluster = {"worker": [f"localhost:{port}" for port in ports]}
    run = tmp_path / "run"
    args = [*TINY, f"--dataset-dir={data_root}", f"--run-dir={run}", "--epochs=1", "--strategy=multi_worker"]
    processes = []
    for index in range(2):
        tf_config = json.dumps({"cluster": cluster, "task": {"type": "worker", "index": index}})
        env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", TF_CONFIG=tf_config)
        processes.append(subprocess.Popen(
            [sys.executable, str(REPO / "recipes" / "train.py"), *args], cwd=REPO, env=env,
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        ))
    outputs = [p.communicate(timeout=600)[0] for p in processes]
    for process, output in zip(processes, outputs, strict=True):
        assert process.returncode == 0, output[-4000:]
    assert "2 replica(s), MultiWorkerMirroredStrategy" in outputs[0]
    assert json.loads((run / "metrics.json").read_text())["steps"] == 3  # the chief's report


def test_missing_data_folder_names_the_layout(tmp_path):
    result = train(*TINY, f"--dataset-dir={tmp_path / 'nothing'}", f"--run-dir={tmp_path / 'run'}")
    assert result.returncode != 0
    assert "ADEChallengeData2016" in result.stderr, output_of(result)
