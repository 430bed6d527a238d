"""``recipes/train.py``: GluonCV's ``scripts/segmentation/train.py`` on Keras ``fit`` and tf.distribute.

One run lives in ``--run-dir``: the effective flags (``flags.txt``, itself a
flagfile), a step checkpoint that a restarted command resumes from (killed
at any moment, a seeded run ends with the weights an uninterrupted run
would have), TensorBoard and CSV logs, the final weights and ``metrics.json``.
"""

import os
import time
from pathlib import Path

from absl import flags

from kseg.cli.flags import dataset_root, value
from kseg.training import distribute

FLAGS = flags.FLAGS


def define_train_flags():
    flags.DEFINE_string("train-split", "train", "Split to train on (GluonCV: train; VOC's second stage: trainval).")
    flags.DEFINE_float("lr", 0.01, "Base learning rate (backbone); the heads get --head-lr-mult times it.")
    flags.DEFINE_float("momentum", 0.9, "SGD momentum.")
    flags.DEFINE_float("weight-decay", 1e-4, "L2 weight decay, added to the gradient as MXNet's SGD does.")
    flags.DEFINE_float("head-lr-mult", 10.0, "Learning-rate multiplier of the head and auxiliary head.")
    flags.DEFINE_float("power", 0.9, "Power of the poly schedule (per iteration).")
    flags.DEFINE_float("warmup-epochs", 0.0, "Linear warm-up from lr/3 over this many epochs.")
    flags.DEFINE_integer("epochs", 50, "Epochs.")
    flags.DEFINE_boolean("aux", False, "Train with the auxiliary FCN head on c4.")
    flags.DEFINE_float("aux-weight", 0.5, "Weight of the auxiliary loss.")
    flags.DEFINE_float(
        "gradient-scale",
        1.0,
        "Multiplies the loss gradient but not the weight decay. GluonCV's SoftmaxOutput summed the per-GPU mean "
        "losses and divided by the batch, so its gradient was ngpus/16 of the mean loss's: the flagfiles set it.",
    )
    flags.DEFINE_boolean("syncbn", False, "Synchronized BatchNormalization across replicas.")
    flags.DEFINE_enum("strategy", "auto", distribute.STRATEGIES, "tf.distribute strategy (TF_CONFIG for multi_worker).")
    flags.DEFINE_enum("precision", "auto", distribute.PRECISIONS, "auto: bf16 on GPUs >= sm80 and TPUs, else f32.")
    flags.DEFINE_string("run-dir", None, "Folder of this run: checkpoints, logs, weights, metrics.json.")
    flags.DEFINE_string("init-from", None, "Start from a zoo entry's published weights (a name) or a weights file.")
    flags.DEFINE_string("pretrained-backbone", None, "A GluonCV ImageNet .params of the backbone (e.g. resnet101_v1s).")
    flags.DEFINE_integer("seed", 0, "Seed of the data order, augmentation and initialisation.")
    flags.DEFINE_boolean("deterministic", False, "Deterministic TF ops (slower; exact resumes).")
    flags.DEFINE_integer("val-every", 1, "Validate every N epochs during training (0: only at the end).")
    flags.DEFINE_integer("val-batch-size", None, "Validation batch (default: --batch-size).")
    flags.DEFINE_integer("max-val-images", None, "Validate on the first N images only.")
    flags.DEFINE_integer("checkpoint-steps", 100, "Checkpoint every N steps (and at every epoch's end).")
    flags.DEFINE_integer("cpu-devices", 0, "Split the CPU into N logical devices (tries MirroredStrategy on a CPU).")
    flags.DEFINE_boolean("synthetic-data", False, "Write kseg's procedural data set to --dataset-dir if absent.")
    flags.DEFINE_integer("synthetic-size", 96, "Image side of the procedural data set.")
    flags.DEFINE_integer("synthetic-train", 64, "Training images of the procedural data set.")
    flags.DEFINE_boolean("export", False, "Write a SavedModel to RUN_DIR/export/1 at the end.")
    flags.DEFINE_list("predict", [], "Images to predict at the end: mask and overlay PNGs in RUN_DIR/predictions.")
    flags.DEFINE_boolean("dry-run", False, "Resolve the flags and build and compile the model, then stop.")
    flags.DEFINE_integer("stop-after-steps", None, "Stop this process after N steps in total (tests; resume later).")
    FLAGS.set_default("batch-size", 16)


def _log(message):
    print(message, flush=True)


def _prepare_data(dataset_key):
    from kseg.data import get_dataset

    root = dataset_root()
    if value("synthetic-data"):
        if root is None:
            raise ValueError("--synthetic-data needs --dataset-dir (where to write the procedural data set)")
        _write_synthetic(dataset_key, Path(root), value("synthetic-size"), value("synthetic-train"))
    train = get_dataset(dataset_key, split=value("train-split"), root=root)
    val = get_dataset(dataset_key, split="val", root=root)
    return train, val


def _write_synthetic(dataset_key, root, size, num_train):
    """Write kseg's procedural data set under ``root`` unless it is there: whole, or not at all.

    It is written into a hidden staging folder in ``root`` and renamed into
    place, so a run killed while writing leaves no partial data set that the
    next run would take for the whole one. Workers of a multi-worker run that
    write it at the same time each stage their own copy; the first rename wins.
    """
    import shutil
    import tempfile

    from kseg.data.datasets import get_dataset
    from kseg.data.synthetic import write_dataset

    try:
        get_dataset(dataset_key, split="val", root=root)
        return
    except (FileNotFoundError, ValueError):
        pass
    num_val = max(4, num_train // 4)
    _log(f"Writing a procedural {dataset_key} data set ({num_train} + {num_val} images) to {root}")
    root.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=root, prefix=".synthetic-"))
    try:
        folder = Path(write_dataset(dataset_key, staging, num_train=num_train, num_val=num_val, size=(size, size),
                                    seed=1))
        top = folder.relative_to(staging).parts[0]  # VOCdevkit/VOC2012 moves as VOCdevkit
        target = root / top
        try:
            os.rename(staging / top, target)
        except OSError:
            if not target.is_dir():
                raise
            # Another process renamed its copy first; a folder that is not a whole data set is left for the
            # reader to reject with the layout it expects.
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _backbone_params(name_or_path):
    """``--pretrained-backbone``: a file, or a GluonCV ImageNet name (cached in $KSEG_HOME, else downloaded)."""
    from kseg.models.zoo import IMAGENET_BACKBONES, imagenet_backbone
    from kseg.weights.download import fetch_params

    path = Path(name_or_path)
    if path.is_file():
        return path
    if name_or_path not in IMAGENET_BACKBONES:
        raise FileNotFoundError(
            f"--pretrained-backbone: no file {path}, nor a GluonCV ImageNet backbone ({', '.join(IMAGENET_BACKBONES)})"
        )
    return fetch_params(imagenet_backbone(name_or_path))


def _load_into(model, path, variants):
    """Load ``path`` into ``model``, or into the first model of ``variants`` that fits and transfer from it."""
    from kseg.models.registry import load_weights
    from kseg.weights.transfer import transfer_weights

    errors = []
    for build in [lambda: model, *variants]:
        candidate = build()
        try:
            load_weights(candidate, path)
        except ValueError as error:
            errors.append(str(error))
            continue
        skipped = transfer_weights(candidate, model) if candidate is not model else []
        return skipped
    raise ValueError(f"{path} fits none of the model's variants: " + " | ".join(dict.fromkeys(errors)))


def _init_weights(model, choice):
    """``--pretrained-backbone`` then ``--init-from`` (a zoo name's published weights, or a file)."""
    import kseg
    from kseg.cli.models import build_model
    from kseg.models.registry import _cached_weights
    from kseg.weights.gluoncv import load_gluoncv_params

    if value("pretrained-backbone"):
        path = _backbone_params(value("pretrained-backbone"))
        load_gluoncv_params(model, path, backbone_only=True)
        _log(f"Backbone initialised from {path}")
    init_from = value("init-from") or value("weights")
    if init_from:
        source = choice
        if init_from in kseg.models.list_models("semantic"):
            from kseg.cli.models import choose_model

            source = choose_model(model_zoo=init_from)
            path = _cached_weights(source.entry)
        else:
            path = Path(init_from)
            if not path.is_file():
                raise FileNotFoundError(f"--init-from: no zoo model or file named {init_from}")
        classes = source.entry.num_classes if source.entry else model.num_classes
        # The file may have been saved with or without the auxiliary head, or for other classes.
        variants = [
            lambda aux=aux, num=num: build_model(source, None, num, aux=aux, output_stride=value("output-stride"))
            for aux in (model.aux, not model.aux)
            for num in dict.fromkeys((model.num_classes, classes))
        ]
        skipped = _load_into(model, path, variants)
        fresh = f" ({len(skipped)} layer(s) afresh: {', '.join(skipped)})" if skipped else ""
        _log(f"Initialised from {path}{fresh}")
    elif not value("pretrained-backbone") and choice.entry is not None:
        _log(
            "Note: the backbone starts from random weights; GluonCV's recipes start from ImageNet "
            "(--pretrained-backbone resnet101_v1s)."
        )


def _compile(model, steps_per_epoch, total_steps, jit):
    from kseg.losses import SegmentationCrossEntropy
    from kseg.metrics import MeanIoU, PixelAccuracy
    from kseg.training import GluonSGD, PolyLearningRate, head_lr_multipliers

    schedule = PolyLearningRate(
        value("lr"),
        total_steps,
        power=value("power"),
        warmup_steps=int(round(value("warmup-epochs") * steps_per_epoch)),
    )
    optimizer = GluonSGD(
        learning_rate=schedule,
        momentum=value("momentum"),
        l2_decay=value("weight-decay"),
        lr_multipliers=head_lr_multipliers(model, value("head-lr-mult")),
    )
    scale = value("gradient-scale")
    num_classes = model.num_classes
    metrics = [MeanIoU(num_classes), PixelAccuracy(num_classes)]
    if model.aux:
        loss = {"logits": SegmentationCrossEntropy(), "aux_logits": SegmentationCrossEntropy()}
        loss_weights = {"logits": scale, "aux_logits": scale * value("aux-weight")}
        metrics = {"logits": metrics}
    else:
        loss, loss_weights = SegmentationCrossEntropy(), scale
    model.compile(optimizer=optimizer, loss=loss, loss_weights=loss_weights, metrics=metrics, jit_compile=jit)


def _targets(model):
    if not model.aux:
        return lambda images, masks: (images, masks)
    return lambda images, masks: (images, {"logits": masks, "aux_logits": masks})


def run_train(_flags=None):
    """Train from the flags; returns the final metrics dict."""
    distribute.split_cpu(value("cpu-devices"))
    import keras
    import tensorflow as tf

    from kseg.cli.models import build_model, choose_model
    from kseg.training.callbacks import StepCheckpoint, StopAfterSteps, StopOnNaN, restore_checkpoint
    from kseg.training.data import steps_per_epoch as count_steps
    from kseg.training.data import training_dataset, validation_dataset

    choice = choose_model(value("model-zoo"), value("model"), value("backbone"), value("dataset"))
    entry = choice.entry
    run_dir = Path(value("run-dir") or os.path.join("runs", choice.name))
    seed = value("seed")
    keras.utils.set_random_seed(seed)
    if value("deterministic"):
        tf.config.experimental.enable_op_determinism()

    strategy = distribute.make_strategy(value("strategy"))
    chief = distribute.is_chief(strategy)
    precision = distribute.resolve_precision(value("precision"))
    distribute.set_precision(precision)
    jit = distribute.resolve_jit({"auto": None, "true": True, "false": False}[value("jit-compile")])

    from kseg.data.classes import CLASSES_BY_DATASET

    num_classes = len(CLASSES_BY_DATASET[choice.dataset])
    base_size = value("base-size") or (entry.base_size if entry else 520)
    crop_size = value("crop-size") or (entry.crop_size if entry else 480)
    global_batch = value("batch-size")
    replicas = strategy.num_replicas_in_sync
    if global_batch % replicas:
        raise ValueError(f"--batch-size {global_batch} does not split over {replicas} replicas")
    epochs = value("epochs")
    if value("dry-run"):
        train_set = val_set = None
        steps = 100  # nominal: the data set is not read
    else:
        train_set, val_set = _prepare_data(choice.dataset)
        steps = count_steps(len(train_set), global_batch)
    total_steps = epochs * steps

    with strategy.scope():
        model = build_model(
            choice, None, num_classes, aux=value("aux"), output_stride=value("output-stride"), sync_bn=value("syncbn")
        )
        model.build((None, None, None, 3))
        _compile(model, steps, total_steps, jit)
        if value("dry-run"):
            _log(
                f"{choice.name}: {model.count_params():,} parameters, {num_classes} classes, aux {model.aux}, "
                f"syncbn {value('syncbn')}; lr {value('lr')} x {value('gradient-scale')}, {epochs} epochs of batch "
                f"{global_batch}, crop {crop_size} base {base_size} (dry run: no data read, nothing written)"
            )
            return {"model": choice.name, "parameters": model.count_params(), "dry_run": True}
        _init_weights(model, choice)
        start_step = restore_checkpoint(model, run_dir)

    if chief:
        run_dir.mkdir(parents=True, exist_ok=True)
        _write_flags(run_dir)
    strategy_name = type(strategy).__name__.lstrip("_")
    _log(
        f"{choice.name}: {len(train_set)} {choice.dataset}/{value('train-split')} images, {epochs} epochs x "
        f"{steps} steps of {global_batch} ({replicas} replica(s), {strategy_name}), {precision}, "
        f"XLA {'on' if jit else 'off'}, crop {crop_size} base {base_size}; run dir {run_dir}"
    )
    if start_step >= total_steps:
        _log(f"Training already finished at step {start_step}; evaluating.")
    elif start_step:
        _log(f"Resuming at step {start_step} (epoch {start_step // steps + 1}, batch {start_step % steps + 1})")

    val_batch = value("val-batch-size") or global_batch
    val_data = validation_dataset(val_set, val_batch, crop_size, value("max-val-images"))
    val_data = val_data.map(_targets(model))
    nan_guard = StopOnNaN()
    checkpoint = StepCheckpoint(run_dir, value("checkpoint-steps"), is_chief=chief, nan_guard=nan_guard)
    callbacks = [nan_guard, checkpoint]
    if chief:
        callbacks += [
            keras.callbacks.CSVLogger(str(run_dir / "log.csv"), append=True),
            keras.callbacks.TensorBoard(str(run_dir / "tensorboard"), update_freq=max(1, min(50, steps))),
        ]
    callbacks.append(StopAfterSteps(value("stop-after-steps")))

    started = time.time()
    step = start_step
    while step < total_steps and not model.stop_training:
        # A resumed run first finishes its interrupted epoch, then runs whole epochs.
        epoch = step // steps
        in_epoch = steps - step % steps
        last_epoch = epochs if step % steps == 0 else epoch + 1
        data = training_dataset(train_set, global_batch, epochs, base_size, crop_size, seed, start_step=step)
        data = data.map(_targets(model))
        val_every = value("val-every")
        model.fit(
            data,
            initial_epoch=epoch,
            epochs=last_epoch,
            steps_per_epoch=in_epoch if step % steps else steps,
            validation_data=val_data if val_every > 0 else None,
            validation_freq=val_every if val_every > 0 else 1,
            callbacks=callbacks,
            shuffle=False,  # the stream is shuffled, seeded and resumable; Keras cannot shuffle a tf.data.Dataset
            verbose=1 if chief else 0,
        )
        step = int(model.optimizer.iterations.numpy())
    if nan_guard.failed_step is not None:
        raise FloatingPointError(
            f"The loss became {nan_guard.failed_loss} at step {nan_guard.failed_step}; training stopped. "
            f"The last good checkpoint is in {run_dir} (step {checkpoint.last_saved or start_step}). "
            f"Lower --lr, check the labels (ignore -1, classes < {model.num_classes}) or use --precision=float32."
        )
    if step < total_steps:
        _log(f"Stopped at step {step} of {total_steps}; run the same command again to resume.")
        return {"step": step, "finished": False}

    _log(f"Trained {total_steps - start_step} steps in {time.time() - started:.0f} s")
    return _finish(model, choice, val_set, run_dir, crop_size, base_size, chief, step, precision)


def _write_flags(run_dir):
    from kseg.utils.io import write_atomic

    header = f"# recipes/train.py flags of this run ({time.strftime('%Y-%m-%d %H:%M:%S')}); reuse with --flagfile\n"
    write_atomic(run_dir / "flags.txt", header + FLAGS.flags_into_string())


def _finish(model, choice, val_set, run_dir, crop_size, base_size, chief, step, precision):
    """Final weights, the val-mode evaluation (GluonCV's training validation) and metrics.json."""
    import kseg
    from kseg.cli.evaluate import EvalSettings, evaluate, write_metrics
    from kseg.utils.io import atomic_path

    if not chief:
        return {"step": step, "finished": True}
    weights_path = run_dir / f"{choice.name}.weights.h5"
    inference = _inference_copy(model, choice)
    with atomic_path(weights_path, suffix=".weights.h5") as tmp:
        inference.save_weights(tmp)
    settings = EvalSettings(base_size=base_size, crop_size=crop_size, mode="val", multi_scale=False,
                            batch_size=value("val-batch-size") or 1, max_images=value("max-val-images"))
    result = evaluate(inference, val_set, settings, verbose=1)
    present = _present_classes_miou(result)
    report = {
        "model": choice.name,
        "dataset": val_set.name,
        "split": "val",
        "mode": "val",
        "crop_size": crop_size,
        "steps": step,
        "precision": precision,
        "weights": str(weights_path),
        **result,
        **present,
        "gluoncv_reported": choice.entry.metrics if choice.entry else None,
        "kseg_version": kseg.__version__,
        "finished": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    write_metrics(run_dir / "metrics.json", report)
    _log(
        f"Validation ({result['images']} images, val mode): pixAcc {100 * result['pixAcc']:.2f}  "
        f"mIoU {100 * result['mIoU']:.2f} over {len(result['IoU'])} classes "
        f"({100 * present['mIoU_present']:.2f} over the {present['classes_present']} present; "
        f"a constant guess of the commonest class scores mIoU {100 * present['mIoU_constant_guess']:.2f}). "
        f"Weights: {weights_path}; metrics: {run_dir / 'metrics.json'}"
    )
    if value("export"):
        from kseg.export import export_saved_model

        path = export_saved_model(inference, run_dir / "export", overwrite=True)
        _log(f"SavedModel: {path}")
        report["saved_model"] = str(path)
    if value("predict"):
        from kseg.cli.predict_images import predict_images

        predict_images(inference, value("predict"), run_dir / "predictions", val_set.name)
    return report


def _present_classes_miou(result):
    """mIoU over the classes present in the labels, and the mIoU of always guessing the commonest class."""
    import numpy as np

    label_pixels = np.asarray(result["label_pixels"], np.float64)
    present = label_pixels > 0
    iou = np.asarray(list(result["IoU"].values()))
    guess_iou = label_pixels.max() / max(label_pixels.sum(), 1.0)
    return {
        "classes_present": int(present.sum()),
        "mIoU_present": float(iou[present].mean()) if present.any() else 0.0,
        "mIoU_constant_guess": float(guess_iou / len(iou)),
    }


def _inference_copy(model, choice):
    """The trained model without the auxiliary head, in float32 (what test.py and export load)."""
    import keras

    from kseg.cli.models import build_model
    from kseg.weights.transfer import transfer_weights

    policy = keras.mixed_precision.dtype_policy()
    keras.mixed_precision.set_dtype_policy("float32")
    try:
        inference = build_model(choice, None, model.num_classes, aux=False, output_stride=value("output-stride"))
        inference.build((None, None, None, 3))
        transfer_weights(model, inference)
    finally:
        keras.mixed_precision.set_dtype_policy(policy)
    return inference
