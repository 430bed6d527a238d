"""``train(config)``: one training loop for every task, on Keras ``fit`` and tf.distribute.

A run lives in its run folder (``config.run_dir``, default ``runs/NAME``):
the effective configuration (``flags.txt``, itself a flagfile for
``recipes/train.py``), a step checkpoint that a restarted run resumes from
(killed at any moment, a seeded ``deterministic`` run ends with the weights an
uninterrupted run would have), TensorBoard and CSV logs, the final weights
and ``metrics.json``. The task's parts (:class:`kseg.training.task.TrainingTask`)
say what is trained on what.
"""

from __future__ import annotations

import dataclasses
import os
import time
from collections.abc import Callable
from pathlib import Path

from kseg.ops.runtime import resolve_jit
from kseg.training import distribute, record
from kseg.training.config import TrainConfig
from kseg.utils.quiet import fit_verbosity


@dataclasses.dataclass
class TrainReport:
    """What a run did: how far it got, where its files are, how well it scores.

    Example:
        >>> report = train(TrainConfig(model_zoo="fcn_resnet50_ade", dry_run=True))  # builds, reads no data
        >>> report.dry_run, report.finished, report.parameters
        (True, False, 33201494)
    """

    model: str
    run_dir: Path | None
    steps: int = 0
    total_steps: int = 0
    finished: bool = False
    interrupted: bool = False
    dry_run: bool = False
    parameters: int = 0
    weights: Path | None = None
    metrics: dict | None = None
    saved_model: Path | None = None
    predictions: list = dataclasses.field(default_factory=list)


def training_task(config: TrainConfig, log=print):
    """The task's parts for ``config``: Mask R-CNN for an instance zoo entry, else semantic segmentation."""
    from kseg.presets import INSTANCE, PRESETS

    preset = PRESETS.get(config.model_zoo) if config.model_zoo else None
    if preset is not None and preset.task == INSTANCE:
        from kseg.training.instance import InstanceTraining

        return InstanceTraining(config, log)
    from kseg.training.semantic import SemanticTraining

    return SemanticTraining(config, log)


def config_flags(config: TrainConfig) -> str:
    """``config`` as ``recipes/train.py`` flags, one per line (a flagfile); fields left at None are left out.

    Example:
        >>> config_flags(TrainConfig(model_zoo="fcn_resnet50_ade", epochs=2)).splitlines()[:4]
        ['--model-zoo=fcn_resnet50_ade', '--backbone=resnet101', '--output-stride=8', '--noaux']
    """
    lines = []
    for field in dataclasses.fields(config):
        value = getattr(config, field.name)
        flag = field.name.replace("_", "-")
        if field.name == "jit_compile":
            lines.append(f"--{flag}={'auto' if value is None else str(value).lower()}")
        elif value is None:
            continue
        elif isinstance(value, bool):
            lines.append(f"--{flag}" if value else f"--no{flag}")
        elif isinstance(value, tuple):
            if value:
                lines.append(f"--{flag}={','.join(value)}")
        else:
            lines.append(f"--{flag}={value}")
    return "\n".join(lines) + "\n"


def _compile(model, task, config, steps_per_epoch, total_steps, jit):
    from kseg.training import GluonSGD

    optimizer = GluonSGD(
        learning_rate=task.schedule(steps_per_epoch, total_steps),
        momentum=config.momentum,
        l2_decay=config.weight_decay,
        lr_multipliers=task.lr_multipliers(model),
        l2_multipliers=task.l2_multipliers(model),
        **task.optimizer_options(),
    )
    model.compile(optimizer=optimizer, jit_compile=jit, **task.compile_arguments(model))


def train(config: TrainConfig, log: Callable[[str], None] = print) -> TrainReport:
    """Train as ``config`` says; returns a :class:`TrainReport`. Rerun the same config to resume.

    ``log`` receives the run's progress lines (Keras' own progress bar aside).

    Example:
        >>> from kseg.training import TrainConfig, train
        >>> report = train(TrainConfig(model_zoo="fcn_resnet50_ade", dataset_dir="/data", epochs=1, batch_size=2))
        >>> report.finished, report.metrics["mIoU"], report.weights
    """
    import keras

    if not isinstance(config, TrainConfig):
        raise TypeError(f"train takes a kseg.training.TrainConfig, got {type(config).__name__}")
    from tensorflow.python.framework import config as tf_config

    policy = keras.config.dtype_policy()
    deterministic = tf_config.is_op_determinism_enabled()
    try:
        return _train(config, log)
    finally:
        # Precision and --deterministic are process-wide while the run lasts; neither may outlive it (Keras
        # silently turns XLA off for every later model while op determinism is on).
        keras.config.set_dtype_policy(policy)
        if not deterministic:
            tf_config.disable_op_determinism()


def _train(config, log):
    import keras
    import tensorflow as tf

    from kseg.training.callbacks import (
        CHECKPOINT_NAME,
        StepCheckpoint,
        StopAfterSteps,
        StopOnInterrupt,
        StopOnNaN,
        restore_checkpoint,
    )
    from kseg.training.data import steps_per_epoch as count_steps

    distribute.split_cpu(config.cpu_devices)
    task = training_task(config, log)
    run_dir = Path(config.run_dir or os.path.join("runs", task.name))
    if run_dir.exists() and not run_dir.is_dir():
        raise NotADirectoryError(f"--run-dir {run_dir} is a file, not a folder")
    changes = [] if config.dry_run else record.changed_fields(run_dir, config)
    if changes and not config.allow_changes:
        raise ValueError(
            f"{run_dir} holds a run started with other training flags: {', '.join(changes)}. Rerun with its flags "
            f"(its flags.txt) to resume it, choose another --run-dir, or pass --allow-changes to go on with these"
        )
    keras.utils.set_random_seed(config.seed)
    if config.deterministic:
        tf.config.experimental.enable_op_determinism()

    strategy = distribute.make_strategy(config.strategy)
    chief = distribute.is_chief(strategy)
    precision = distribute.resolve_precision(config.precision)
    distribute.set_precision(precision)
    jit = resolve_jit(config.jit_compile) and not config.deterministic  # Keras would turn it off unsaid
    replicas = strategy.num_replicas_in_sync
    if config.batch_size % replicas:
        raise ValueError(f"--batch-size {config.batch_size} does not split over {replicas} replicas")
    if config.dry_run:
        train_set = val_set = None
        steps = 100  # nominal: the data set is not read
    else:
        train_set, val_set = task.datasets()  # writes the procedural data set first, where asked
        task.check_paths()
        steps = count_steps(len(train_set), config.batch_size)
    total_steps = config.epochs * steps

    with strategy.scope():
        model = task.build_model()
        if not model.built:
            model.build((None, None, None, 3))
        _compile(model, task, config, steps, total_steps, jit)
        report = TrainReport(task.name, run_dir, total_steps=total_steps, parameters=model.count_params())
        if config.dry_run:
            log(
                f"{task.name}: {model.count_params():,} parameters, {len(task.metadata.classes)} classes, aux "
                f"{config.aux}, syncbn {config.syncbn}; lr {config.lr} x {config.gradient_scale}, {config.epochs} "
                f"epochs of batch {config.batch_size}, {task.describe()} (dry run: no data read, nothing written)"
            )
            report.dry_run = True
            return report
        task.initialize(model)
        start_step = restore_checkpoint(model, run_dir)

    if chief:
        run_dir.mkdir(parents=True, exist_ok=True)
        record.write_record(run_dir, config, config_flags(config))
        if changes:
            log(f"Going on with changed flags (--allow-changes): {', '.join(changes)}")
    strategy_name = type(strategy).__name__.lstrip("_")
    log(
        f"{task.name}: {len(train_set)} {task.dataset_name}/{config.train_split} images, {config.epochs} epochs x "
        f"{steps} steps of {config.batch_size} ({replicas} replica(s), {strategy_name}), {precision}, "
        f"XLA {'on' if jit else 'off'}, {task.describe()}; run dir {run_dir}"
    )
    if start_step >= total_steps:
        log(f"Training already finished at step {start_step}; evaluating.")
    elif start_step:
        log(f"Resuming at step {start_step} (epoch {start_step // steps + 1}, batch {start_step % steps + 1})")

    val_data = task.validation_data(val_set, config.val_batch_size or config.batch_size)
    nan_guard = StopOnNaN()
    checkpoint = StepCheckpoint(run_dir, config.checkpoint_steps, is_chief=chief, nan_guard=nan_guard)
    callbacks = [nan_guard, checkpoint]
    if chief:
        callbacks += [
            keras.callbacks.CSVLogger(str(run_dir / "log.csv"), append=True),
            keras.callbacks.TensorBoard(str(run_dir / "tensorboard"), update_freq=max(1, min(50, steps))),
        ]
    callbacks += task.callbacks(model, run_dir) if chief else []
    callbacks.append(StopAfterSteps(config.stop_after_steps))
    interrupt = StopOnInterrupt(checkpoint)
    callbacks.append(interrupt)

    started = time.time()
    step = start_step
    while step < total_steps and not model.stop_training:
        # A resumed run first finishes its interrupted epoch, then runs whole epochs.
        epoch = step // steps
        in_epoch = steps - step % steps
        last_epoch = config.epochs if step % steps == 0 else epoch + 1
        model.fit(
            task.training_data(train_set, config.batch_size, config.epochs, step),
            initial_epoch=epoch,
            epochs=last_epoch,
            steps_per_epoch=in_epoch if step % steps else steps,
            validation_data=val_data if config.val_every > 0 else None,
            validation_freq=config.val_every if config.val_every > 0 else 1,
            callbacks=callbacks,
            shuffle=False,  # the stream is shuffled, seeded and resumable; Keras cannot shuffle a tf.data.Dataset
            verbose=fit_verbosity() if chief else 0,
        )
        step = int(model.optimizer.iterations.numpy())
    report.steps = step
    if nan_guard.failed_step is not None:
        good = checkpoint.last_saved or start_step
        where = (
            f"The last good checkpoint, of step {good}, is {run_dir / CHECKPOINT_NAME}"
            if good
            else f"No checkpoint was written before it (the first was due at step {config.checkpoint_steps})"
        )
        raise FloatingPointError(
            f"The loss became {nan_guard.failed_loss} at step {nan_guard.failed_step}; training stopped. {where}. "
            f"Lower --lr, check the labels (ignore -1, classes < {len(task.metadata.classes)}) or use "
            f"--precision=float32."
        )
    if interrupt.interrupted:
        report.interrupted = True
        log(f"Interrupted at step {step} of {total_steps}, checkpoint written: run the same command again to resume.")
        return report
    if step < total_steps:
        log(f"Stopped at step {step} of {total_steps}; run the same command again to resume.")
        return report

    log(f"Trained {total_steps - start_step} steps in {time.time() - started:.0f} s")
    report.finished = True
    if chief:
        _finish(task, model, val_set, run_dir, precision, report, log)
    return report


def _finish(task, model, val_set, run_dir, precision, report, log):
    """Final weights, the task's evaluation and metrics.json, then the export and the predictions asked for."""
    import kseg
    from kseg.evaluation import predict_files, write_metrics
    from kseg.utils.io import atomic_path

    config = task.config
    report.weights = run_dir / f"{task.name}.weights.h5"
    inference = task.inference_model(model)
    with atomic_path(report.weights, suffix=".weights.h5") as tmp:
        inference.save_weights(tmp)
    metrics = task.evaluate(inference, val_set)
    report.metrics = {
        "model": task.name,
        "steps": report.steps,
        "precision": precision,
        "weights": str(report.weights),
        **metrics,
        "gluoncv_reported": task.published_metrics,
        "kseg_version": kseg.__version__,
        "finished": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    write_metrics(run_dir / "metrics.json", report.metrics)
    log(f"Weights: {report.weights}; metrics: {run_dir / 'metrics.json'}")
    if config.export:
        from kseg.export import export_saved_model

        report.saved_model = export_saved_model(inference, run_dir / "export", overwrite=True)
        log(f"SavedModel: {report.saved_model}")
    if config.predict:
        report.predictions = predict_files(inference, config.predict, run_dir / "predictions")
