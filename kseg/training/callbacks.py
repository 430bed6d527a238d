"""Callbacks that make a training run safe to kill: step checkpoints and a NaN guard.

The checkpoint holds the model's and the optimizer's variables (the step
count included) in one ``.weights.h5`` file that is replaced atomically, so
a run killed at any moment resumes from the last complete checkpoint.
"""

import json
import math
import signal
import sys
import threading
import time
from pathlib import Path

import keras
import numpy as np

from kseg.utils.io import atomic_path, write_atomic

CHECKPOINT_NAME = "checkpoint.weights.h5"
STATE_NAME = "checkpoint.json"


def _build_optimizer(model):
    if not model.optimizer.built:
        model.optimizer.build(model.trainable_variables)


def _seed_generators(model):
    """``{key: SeedGenerator}`` of the model's random layers (dropout): their state is not in the weights file."""
    found = {}
    for position, layer in enumerate(model._flatten_layers(include_self=False)):
        for i, generator in enumerate(getattr(layer, "_seed_generators", [])):
            found[f"{position}:{layer.name}/{i}"] = generator  # layer.path is None inside functional models
    return found


def restore_checkpoint(model, directory):
    """Load the checkpoint in ``directory`` into the compiled ``model``; return its step (0 when none)."""
    import warnings

    path = Path(directory) / CHECKPOINT_NAME
    if not path.is_file():
        return 0
    _build_optimizer(model)
    try:
        model.load_weights(path)
    except Exception as error:  # a checkpoint from another model or configuration
        raise ValueError(
            f"Cannot resume from {path}: {error}. It was written by a different model or precision; "
            f"use another --run-dir or delete the checkpoint to start afresh."
        ) from error
    step = int(model.optimizer.iterations.numpy())
    state_path = Path(directory) / STATE_NAME
    state = json.loads(state_path.read_text()) if state_path.is_file() else {}
    if state.get("step") == step:
        for key, generator in _seed_generators(model).items():
            if key in state.get("seed_states", {}):
                generator.state.assign(np.asarray(state["seed_states"][key], generator.state.dtype))
    else:  # killed between the two writes: the weights are whole, dropout draws will differ
        message = f"{state_path} does not match the checkpoint (step {step}); dropout masks will differ"
        warnings.warn(message, stacklevel=2)
    return step


class StepCheckpoint(keras.callbacks.Callback):
    """Save model + optimizer every ``every_steps`` steps and at each epoch's end, atomically.

    Only the chief writes (``is_chief``); under a multi-worker strategy every
    worker must still call :func:`restore_checkpoint` on the shared folder.
    Nothing is saved once ``nan_guard`` (a :class:`StopOnNaN`) has fired.
    """

    def __init__(self, directory, every_steps=100, is_chief=True, nan_guard=None):
        super().__init__()
        self.directory = Path(directory)
        self.every_steps = int(every_steps)
        self.is_chief = is_chief
        self.nan_guard = nan_guard
        self.last_saved = None

    def _step(self):
        return int(self.model.optimizer.iterations.numpy())

    def save(self, epoch=None):
        step = self._step()
        diverged = self.nan_guard is not None and self.nan_guard.failed_step is not None
        if not self.is_chief or step == self.last_saved or diverged:
            return
        with atomic_path(self.directory / CHECKPOINT_NAME, suffix=".weights.h5") as tmp:
            self.model.save_weights(tmp)
        seeds = {key: generator.state.numpy().tolist() for key, generator in _seed_generators(self.model).items()}
        state = {"step": step, "epoch": epoch, "saved": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "seed_states": seeds}
        write_atomic(self.directory / STATE_NAME, json.dumps(state, indent=2) + "\n")
        self.last_saved = step

    def on_train_batch_end(self, batch, logs=None):
        if self.every_steps > 0 and self._step() % self.every_steps == 0:
            self.save()

    def on_epoch_end(self, epoch, logs=None):
        self.save(epoch + 1)


class StopOnNaN(keras.callbacks.Callback):
    """Stop at the first non-finite loss and remember where, so the run can fail with a clear message.

    Put it before :class:`StepCheckpoint` and give it to it: a diverged model is not checkpointed.
    """

    def __init__(self):
        super().__init__()
        self.failed_step = None
        self.failed_loss = None

    def on_train_batch_end(self, batch, logs=None):
        loss = (logs or {}).get("loss")
        if loss is not None and not math.isfinite(float(loss)):
            self.failed_step = int(self.model.optimizer.iterations.numpy())
            self.failed_loss = float(loss)
            self.model.stop_training = True


class StopAfterSteps(keras.callbacks.Callback):
    """Stop ``fit`` once the optimizer has taken ``limit`` steps in total (None: never)."""

    def __init__(self, limit=None):
        super().__init__()
        self.limit = limit

    def on_train_batch_end(self, batch, logs=None):
        if self.limit is not None and int(self.model.optimizer.iterations.numpy()) >= self.limit:
            self.model.stop_training = True


class StopOnInterrupt(keras.callbacks.Callback):
    """The first Ctrl-C (SIGINT) ends training after the running step, with a checkpoint; a second one at once.

    Installed only in the main thread (Python delivers signals there); the
    previous handler is put back when training ends.
    """

    def __init__(self, checkpoint):
        super().__init__()
        self.checkpoint = checkpoint
        self.interrupted = False
        self._previous = None

    def _handle(self, signum, frame):
        if self.interrupted:
            raise KeyboardInterrupt
        self.interrupted = True
        print("\nInterrupted: stopping after this step, with a checkpoint (Ctrl-C again: at once)", file=sys.stderr,
              flush=True)

    def on_train_begin(self, logs=None):
        if threading.current_thread() is threading.main_thread():
            self._previous = signal.signal(signal.SIGINT, self._handle)

    def on_train_batch_end(self, batch, logs=None):
        if self.interrupted:
            self.model.stop_training = True
            self.checkpoint.save()

    def on_train_end(self, logs=None):
        if self._previous is not None:
            signal.signal(signal.SIGINT, self._previous)
            self._previous = None
