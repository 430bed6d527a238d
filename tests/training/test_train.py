"""``kseg.training.train(TrainConfig(...))`` in-process: the library API the recipes are a thin layer over."""

import csv
import dataclasses

import keras
import numpy as np
import pytest

import kseg
from kseg.data.synthetic import ensure_dataset, write_dataset
from kseg.training import TrainConfig, config_flags, train

REALDATA = __import__("pathlib").Path(__file__).resolve().parents[3] / "shared" / "realdata"
TINY = dict(model="fcn", backbone="resnet18_v1b", dataset="ade20k", output_stride=16, base_size=64, crop_size=48,
            batch_size=2, max_val_images=2, precision="float32")  # fmt: skip


@pytest.fixture(scope="module")
def data_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("data")
    write_dataset("ade20k", root, num_train=6, num_val=2, size=(40, 56), seed=4)
    return root


def tiny(data_root, run_dir, **changes):
    return TrainConfig(**{**TINY, "dataset_dir": str(data_root), "run_dir": str(run_dir), **changes})


def test_a_run_returns_its_report_and_carries_its_metadata(data_root, tmp_path):
    lines = []
    report = train(tiny(data_root, tmp_path / "run", epochs=1, val_every=0), log=lines.append)
    assert report.finished and report.steps == report.total_steps == 3 and report.parameters > 1e6
    assert report.metrics["images"] == 2 and len(report.metrics["IoU"]) == 150
    assert report.weights.is_file() and report.model == "fcn_resnet18_v1b_ade"
    assert any("Trained 3 steps" in line for line in lines)
    # What test.py, kseg predict and the export read: the model's own metadata, from its training.
    model = kseg.models.build("fcn", "resnet18_v1b", 150, output_stride=16)
    kseg.models.load_model_weights(model, report.weights)
    metadata = kseg.models.choose_model(method="fcn", backbone="resnet18_v1b", dataset="ade20k").metadata(64, 48)
    assert metadata.classes[0] == "wall" and metadata.preprocessing.resize.crop_size == 48
    assert keras.config.dtype_policy().name == "float32"  # the run's precision does not outlive it


def test_deterministic_ops_do_not_outlive_the_run(data_root, tmp_path):
    from tensorflow.python.framework.config import is_op_determinism_enabled

    lines = []
    train(tiny(data_root, tmp_path / "run", deterministic=True, dry_run=True), log=lines.append)
    assert not is_op_determinism_enabled()  # it would switch XLA off for every later model in the process
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2)])
    model.compile(loss="mse", jit_compile=True)
    model.predict(np.zeros((2, 4), np.float32), verbose=0)
    assert model.jit_compile is True


def test_flags_of_the_config_are_a_flagfile(data_root, tmp_path):
    config = tiny(data_root, tmp_path, aux=True, predict=("a.png", "b.png"), jit_compile=False)
    text = config_flags(config)
    assert "--aux\n" in text and "--predict=a.png,b.png\n" in text and "--jit-compile=false\n" in text
    assert "--noexport\n" in text and "--init-from" not in text  # None fields are left out


@pytest.mark.parametrize(
    "changes, error",
    [
        ({"batch_size": 0}, "batch_size must be at least 1"),
        ({"epochs": 1.5}, "epochs must be int"),
        ({"aux": "no"}, "aux must be bool"),
        ({"lr": -0.1}, "lr must not be negative"),
        ({"lr": float("nan")}, "lr must be finite"),
        ({"strategy": "horovod"}, "strategy must be one of"),
        ({"dataset": "cityscapes"}, "dataset must be one of"),
        ({"output_stride": 12}, "output_stride must be 8, 16 or 32"),
        ({"model": None}, "Name a model"),
        ({"deterministic": True, "jit_compile": True}, "deterministic and jit_compile do not go together"),
    ],
)
def test_bad_configurations_are_refused(data_root, tmp_path, changes, error):
    with pytest.raises((TypeError, ValueError), match=error):
        tiny(data_root, tmp_path, **changes)


def test_missing_inputs_are_refused_before_any_step(data_root, tmp_path):
    with pytest.raises(FileNotFoundError, match="--init-from: no zoo model or file named"):
        train(tiny(data_root, tmp_path / "run", init_from=str(tmp_path / "absent.weights.h5")))
    with pytest.raises(FileNotFoundError, match="--predict: no image at"):
        train(tiny(data_root, tmp_path / "run", predict=(str(tmp_path / "absent.png"),)))
    with pytest.raises(FileNotFoundError, match="ADEChallengeData2016"):
        train(tiny(tmp_path / "nothing", tmp_path / "run"))
    assert not (tmp_path / "run").exists()


def test_a_diverging_run_stops_with_a_clear_message(data_root, tmp_path):
    with pytest.raises(FloatingPointError, match="The loss became .* No checkpoint was written before it"):
        train(tiny(data_root, tmp_path / "run", epochs=3, lr=1e12, val_every=0))
    # With a checkpoint before the divergence, the message names it, and it is there.
    run = tmp_path / "second"
    train(tiny(data_root, run, epochs=1, val_every=0))
    with pytest.raises(FloatingPointError, match="of step 3, is .*checkpoint.weights.h5") as error:
        train(tiny(data_root, run, epochs=3, lr=1e12, val_every=0, allow_changes=True))
    assert (run / "checkpoint.weights.h5").is_file() and str(run) in str(error.value)


def test_a_run_folder_is_never_silently_mixed(data_root, tmp_path):
    run = tmp_path / "run"
    train(tiny(data_root, run, epochs=1, val_every=0))
    first = (run / "flags.txt").read_text()
    with pytest.raises(ValueError, match=r"other training flags: --batch-size=2 \(now 3\), --lr=0.01 \(now 0.02\)"):
        train(tiny(data_root, run, epochs=1, val_every=0, batch_size=3, lr=0.02))
    # Where the data are, how often to validate, what to do at the end: free to change.
    report = train(tiny(data_root, run, epochs=1, val_every=1, max_val_images=1))
    assert report.finished and (run / "flags.txt").read_text() == first
    lines = []
    train(tiny(data_root, run, epochs=2, val_every=0, allow_changes=True), log=lines.append)
    assert any("--epochs=1 (now 2)" in line for line in lines)
    assert (run / "flags.txt").read_text() == first and (run / "flags.changed-1.txt").is_file()
    (tmp_path / "file").write_text("")
    with pytest.raises(NotADirectoryError, match="is a file"):
        train(tiny(data_root, tmp_path / "file"))


def test_init_from_a_file_without_the_aux_head(data_root, tmp_path):
    """init_from FILE: a model saved without the aux head starts an aux run; only the aux head is new."""
    keras.utils.set_random_seed(123)  # not the run's seed: ignoring the file would show
    source = kseg.models.build("fcn", "resnet18_v1b", 150, output_stride=16, name="fcn_resnet18_v1b_ade")
    source.build((None, None, None, 3))
    init = tmp_path / "init.weights.h5"
    source.save_weights(init)
    run = tmp_path / "run"
    lines = []
    # lr 0 and no weight decay: the trainable weights stay what init_from loaded.
    common = dict(aux=True, lr=0.0, weight_decay=0.0, val_every=0)
    train(tiny(data_root, run, epochs=1, init_from=str(init), seed=5, **common), log=lines.append)
    assert any("afresh: aux_conv, aux_bn, aux_classifier" in line for line in lines), lines
    trained = kseg.models.build("fcn", "resnet18_v1b", 150, output_stride=16, name="fcn_resnet18_v1b_ade")
    trained.build((None, None, None, 3))
    trained.load_weights(run / "fcn_resnet18_v1b_ade.weights.h5")
    assert len(trained.trainable_weights) == len(source.trainable_weights) > 50
    for ours, theirs in zip(trained.trainable_weights, source.trainable_weights, strict=True):
        np.testing.assert_array_equal(ours.numpy(), theirs.numpy(), err_msg=ours.path)

    # The VOC recipes' second stage: init_from the first stage's checkpoint keeps its aux head, but not its
    # optimizer state (the step count starts again at 0, as GluonCV's --resume did).
    second = tmp_path / "second"
    lines = []
    report = train(tiny(data_root, second, epochs=2, init_from=str(run / "checkpoint.weights.h5"), **common),
                   log=lines.append)
    assert not any("afresh" in line for line in lines) and report.steps == 6

    def aux_head(path):
        model = kseg.models.build("fcn", "resnet18_v1b", 150, aux=True, output_stride=16, name="fcn_resnet18_v1b_ade")
        model.build((None, None, None, 3))
        model.load_weights(path)  # a checkpoint: Keras skips its optimizer state with a warning
        return {v.path: v.numpy() for v in model.trainable_weights if v.path.startswith("aux_")}

    # The first run's aux head started from seed 5, a fresh one here would start from seed 0.
    first_aux, second_aux = aux_head(run / "checkpoint.weights.h5"), aux_head(second / "checkpoint.weights.h5")
    assert len(first_aux) == 5 and first_aux.keys() == second_aux.keys()
    for key, array in first_aux.items():
        np.testing.assert_array_equal(second_aux[key], array, err_msg=key)


def test_procedural_data_set_is_written_whole_or_not_at_all(tmp_path, monkeypatch):
    """synthetic_data: a run killed while writing leaves nothing the next run would take for the whole set."""
    import kseg.data.synthetic as synthetic
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
        ensure_dataset("citys", root, 32, 8)
    assert len(saved) == 20 and list(root.iterdir()) == []  # no partial data set, no staging folder
    with pytest.raises((FileNotFoundError, ValueError)):
        get_dataset("citys", split="val", root=root)

    # Two workers writing at once: the other one renames its copy first; this one keeps it and cleans up.
    def another_worker_first(name, staging, **kwargs):
        real_write(name, root, **kwargs)
        return real_write(name, staging, **kwargs)

    monkeypatch.setattr(synthetic, "_save_image", real_save)
    monkeypatch.setattr(synthetic, "write_dataset", another_worker_first)
    ensure_dataset("citys", root, 32, 8)
    assert [p.name for p in root.iterdir()] == ["cityscapes"]
    assert len(get_dataset("citys", split="train", root=root)) == 8
    assert len(get_dataset("citys", split="val", root=root)) == 4


def test_loss_falls_when_overfitting_real_ade20k_samples(tmp_path):
    if not (REALDATA / "ADEChallengeData2016").is_dir():
        pytest.skip(f"real ADE20K samples not found in {REALDATA}")
    run = tmp_path / "run"
    config = TrainConfig(
        model="fcn", backbone="resnet18_v1b", dataset="ade20k", dataset_dir=str(REALDATA), train_split="val",
        output_stride=16, base_size=160, crop_size=128, batch_size=3, epochs=12, lr=0.01, val_every=0,
        max_val_images=1, run_dir=str(run), precision="float32",
    )  # fmt: skip
    train(config)
    with open(run / "log.csv") as f:
        losses = [float(row["loss"]) for row in csv.DictReader(f)]
    assert losses[-1] < 0.6 * losses[0], losses


@pytest.mark.parametrize("precision", ["mixed_bfloat16", "mixed_float16"])
def test_xla_training_under_mixed_precision(data_root, tmp_path, precision):
    # TF's own bilinear-resize gradient fails here; kseg's align-corners resize does not.
    run = tmp_path / "run"
    lines = []
    train(tiny(data_root, run, precision=precision, jit_compile=True, aux=True, epochs=1, val_every=0),
          log=lines.append)
    assert any(f"{precision}, XLA on" in line for line in lines)
    with open(run / "log.csv") as f:
        loss = float(next(csv.DictReader(f))["loss"])
    assert np.isfinite(loss)
    assert keras.config.dtype_policy().name == "float32"


def test_the_recipe_defaults_are_gluoncvs():
    defaults = {f.name: f.default for f in dataclasses.fields(TrainConfig)}
    assert defaults["batch_size"] == 16 and defaults["momentum"] == 0.9 and defaults["weight_decay"] == 1e-4
    assert defaults["head_lr_mult"] == 10.0 and defaults["power"] == 0.9 and defaults["aux_weight"] == 0.5
