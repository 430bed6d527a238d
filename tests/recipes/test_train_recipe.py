"""``recipes/train.py`` as users run it: one device, MirroredStrategy, two workers, kill and resume."""

import csv
import json
import os
import signal
import socket
import subprocess
import sys
import time

import h5py
import numpy as np
import pytest
from recipe_runner import REALDATA, REPO, output_of, run_recipe

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


def weights_of(path):
    """Every array of a .weights.h5 file by its HDF5 path."""
    arrays = {}
    with h5py.File(path, "r") as f:
        f.visititems(lambda name, item: arrays.__setitem__(name, item[()]) if isinstance(item, h5py.Dataset) else None)
    return arrays


def assert_same_weights(a, b):
    first, second = weights_of(a), weights_of(b)
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


def test_killed_run_resumes_to_the_uninterrupted_weights(data_root, tmp_path):
    common = [*TINY, f"--dataset-dir={data_root}", "--epochs=3", "--checkpoint-steps=1", "--deterministic",
              "--val-every=0"]
    straight = tmp_path / "straight"
    result = train(*common, f"--run-dir={straight}")
    assert result.returncode == 0, output_of(result)

    killed = tmp_path / "killed"
    process = subprocess.Popen(
        [sys.executable, str(REPO / "recipes" / "train.py"), *common, f"--run-dir={killed}"],
        cwd=REPO, env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2"), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    state = killed / "checkpoint.json"
    deadline = time.time() + 300
    while time.time() < deadline and process.poll() is None:
        if state.is_file() and json.loads(state.read_text())["step"] >= 4:  # mid-epoch 2 (3 steps an epoch)
            break
        time.sleep(0.05)
    assert process.poll() is None, "the run ended before it could be killed"
    process.send_signal(signal.SIGKILL)
    process.wait()
    killed_at = json.loads(state.read_text())["step"]
    assert killed_at < 9
    assert not [p.name for p in killed.iterdir() if p.name.startswith(".")], "half-written files left behind"

    resumed = train(*common, f"--run-dir={killed}")
    assert resumed.returncode == 0, output_of(resumed)
    assert f"Resuming at step {killed_at}" in resumed.stdout
    assert_same_weights(straight / "fcn_resnet18_v1b_ade.weights.h5", killed / "fcn_resnet18_v1b_ade.weights.h5")


def test_stop_and_resume_mid_epoch_is_exact(data_root, tmp_path):
    common = [*TINY, f"--dataset-dir={data_root}", "--epochs=2", "--deterministic", "--val-every=0", "--aux"]
    straight, split = tmp_path / "straight", tmp_path / "split"
    assert train(*common, f"--run-dir={straight}").returncode == 0
    first = train(*common, f"--run-dir={split}", "--stop-after-steps=2")
    assert first.returncode == 0 and "Stopped at step 2 of 6" in first.stdout, output_of(first)
    second = train(*common, f"--run-dir={split}")
    assert second.returncode == 0, output_of(second)
    assert_same_weights(straight / "checkpoint.weights.h5", split / "checkpoint.weights.h5")


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


def test_a_diverging_run_stops_with_a_clear_message(data_root, tmp_path):
    result = train(*TINY, f"--dataset-dir={data_root}", f"--run-dir={tmp_path / 'run'}", "--epochs=3", "--lr=1e12",
                   "--val-every=0")
    assert result.returncode != 0
    assert "The loss became" in result.stderr and "last good checkpoint" in result.stderr, output_of(result)


def test_init_from_a_file_without_the_aux_head(data_root, tmp_path):
    """--init-from FILE: a model saved without the aux head starts an --aux run; only the aux head is new."""
    import keras

    import kseg

    keras.utils.set_random_seed(123)  # not train.py's seed: ignoring the file would show
    source = kseg.models.build("fcn", "resnet18_v1b", 150, output_stride=16, name="fcn_resnet18_v1b_ade")
    source.build((None, None, None, 3))
    init = tmp_path / "init.weights.h5"
    source.save_weights(init)
    run = tmp_path / "run"
    # lr 0 and no weight decay: the trainable weights stay what --init-from loaded.
    result = train(*TINY, f"--dataset-dir={data_root}", f"--run-dir={run}", "--epochs=1", "--aux", "--lr=0",
                   "--weight-decay=0", "--val-every=0", f"--init-from={init}", "--seed=5")
    assert result.returncode == 0, output_of(result)
    assert "afresh: aux_conv, aux_bn, aux_classifier" in result.stdout
    trained = kseg.models.build("fcn", "resnet18_v1b", 150, output_stride=16, name="fcn_resnet18_v1b_ade")
    trained.build((None, None, None, 3))
    trained.load_weights(run / "fcn_resnet18_v1b_ade.weights.h5")
    assert len(trained.trainable_weights) == len(source.trainable_weights) > 50
    for ours, theirs in zip(trained.trainable_weights, source.trainable_weights, strict=True):
        np.testing.assert_array_equal(ours.numpy(), theirs.numpy(), err_msg=ours.path)

    # The VOC recipes' second stage: --init-from the first stage's checkpoint keeps its aux head, but not its
    # optimizer state (the step count starts again at 0, as GluonCV's --resume did).
    second = tmp_path / "second"
    result = train(*TINY, f"--dataset-dir={data_root}", f"--run-dir={second}", "--epochs=2", "--aux", "--lr=0",
                   "--weight-decay=0", "--val-every=0", f"--init-from={run / 'checkpoint.weights.h5'}")
    assert result.returncode == 0, output_of(result)
    assert "afresh" not in result.stdout and "Trained 6 steps" in result.stdout, output_of(result)

    def aux_head(path):
        model = kseg.models.build("fcn", "resnet18_v1b", 150, aux=True, output_stride=16, name="fcn_resnet18_v1b_ade")
        model.build((None, None, None, 3))
        model.load_weights(path)  # a checkpoint: Keras skips its optimizer state with a warning
        return {v.path: v.numpy() for v in model.trainable_weights if v.path.startswith("aux_")}

    # The first run's aux head started from --seed=5, a fresh one here would start from seed 0.
    first_aux, second_aux = aux_head(run / "checkpoint.weights.h5"), aux_head(second / "checkpoint.weights.h5")
    assert len(first_aux) == 5 and first_aux.keys() == second_aux.keys()
    for key, array in first_aux.items():
        np.testing.assert_array_equal(second_aux[key], array, err_msg=key)


def test_procedural_data_set_is_written_whole_or_not_at_all(tmp_path, monkeypatch):
    """--synthetic-data: a run killed while writing leaves nothing the next run would take for the whole set."""
    import kseg.data.synthetic as synthetic
    from kseg.cli.train_main import _write_synthetic
    from kseg.data import get_dataset

    root = tmp_path / "data"
    real_save, real_write = synthetic._save_image, synthetic.write_dataset
    saved = []

    def save_then_die(path, array, **kwargs):
        if len(saved) == 20:  # 8 training pairs written, then 2 of the 4 validation pairs
            raise KeyboardInterrupt
        saved.append(path)
        real_save(path, array, **kwargs)

    monkeypatch.setattr(synthetic, "_save_image", save_then_die)
    with pytest.raises(KeyboardInterrupt):
        _write_synthetic("citys", root, 32, 8)
    assert len(saved) == 20 and list(root.iterdir()) == []  # no partial data set, no staging folder
    with pytest.raises((FileNotFoundError, ValueError)):
        get_dataset("citys", split="val", root=root)

    # Two workers writing at once: the other one renames its copy first; this one keeps it and cleans up.
    def another_worker_first(name, staging, **kwargs):
        real_write(name, root, **kwargs)
        return real_write(name, staging, **kwargs)

    monkeypatch.setattr(synthetic, "_save_image", real_save)
    monkeypatch.setattr(synthetic, "write_dataset", another_worker_first)
    _write_synthetic("citys", root, 32, 8)
    assert [p.name for p in root.iterdir()] == ["cityscapes"]
    assert len(get_dataset("citys", split="train", root=root)) == 8
    assert len(get_dataset("citys", split="val", root=root)) == 4


def test_missing_data_folder_names_the_layout(tmp_path):
    result = train(*TINY, f"--dataset-dir={tmp_path / 'nothing'}", f"--run-dir={tmp_path / 'run'}")
    assert result.returncode != 0
    assert "ADEChallengeData2016" in result.stderr, output_of(result)


def test_loss_falls_when_overfitting_real_ade20k_samples(tmp_path):
    if not (REALDATA / "ADEChallengeData2016").is_dir():
        pytest.skip(f"real ADE20K samples not found in {REALDATA}")
    run = tmp_path / "run"
    result = train(
        "--model=fcn", "--backbone=resnet18_v1b", "--dataset=ade20k", f"--dataset-dir={REALDATA}", "--train-split=val",
        "--output-stride=16", "--base-size=160", "--crop-size=128", "--batch-size=3", "--epochs=12", "--lr=0.01",
        "--val-every=0", "--max-val-images=1", f"--run-dir={run}",
    )
    assert result.returncode == 0, output_of(result)
    with open(run / "log.csv") as f:
        losses = [float(row["loss"]) for row in csv.DictReader(f)]
    assert losses[-1] < 0.6 * losses[0], losses


@pytest.mark.parametrize("precision", ["mixed_bfloat16", "mixed_float16"])
def test_xla_training_under_mixed_precision(data_root, tmp_path, precision):
    # TF's own bilinear-resize gradient fails here; kseg's align-corners resize does not.
    run = tmp_path / "run"
    result = train(*[a for a in TINY if not a.startswith("--precision")], f"--precision={precision}",
                   "--jit-compile=true", "--aux", f"--dataset-dir={data_root}", f"--run-dir={run}", "--epochs=1")
    assert result.returncode == 0, output_of(result)
    assert f"{precision}, XLA on" in result.stdout
    with open(run / "log.csv") as f:
        loss = float(next(csv.DictReader(f))["loss"])
    assert np.isfinite(loss)
