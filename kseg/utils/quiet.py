"""Quiet command lines: TensorFlow's C++ start-up lines, and progress that suits a terminal or a log file.

TensorFlow writes a few lines straight to the process's stderr when it loads
(a CUDA probe that fails on every CPU-only machine, absl's notice), before any
log level applies. The commands import it through :func:`import_tensorflow_quietly`,
which keeps those lines out and lets anything else through.
"""

from __future__ import annotations

import contextlib
import os
import sys
import tempfile

# Lines TensorFlow prints at start-up that say nothing to a user of kseg.
NOISE = (
    "All log messages before absl::InitializeLog() is called",
    "cudart_stub.cc",
    "Could not find cuda drivers",
    "cuda_platform.cc",
    "failed call to cuInit",
    "cuda_dnn.cc",
    "cuda_blas.cc",
    "cuda_fft.cc",
    "computation_placer.cc",
    "oneDNN custom operations are on",
    "This TensorFlow binary is optimized to use available CPU instructions",
    "To enable the following instructions",
)


@contextlib.contextmanager
def _stderr_filtered():
    """Run the block with file descriptor 2 captured; afterwards write back every line that is not noise."""
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile(mode="w+b") as captured:
        os.dup2(captured.fileno(), 2)
        try:
            yield
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            captured.seek(0)
            for line in captured.read().decode(errors="replace").splitlines(keepends=True):
                if not any(marker in line for marker in NOISE):
                    sys.stderr.write(line)
            sys.stderr.flush()


def import_tensorflow_quietly():
    """Import TensorFlow (and Keras) without their start-up noise; C++ info and warning logs stay off.

    ``TF_CPP_MIN_LOG_LEVEL`` set by the user is respected.
    """
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    if "tensorflow" in sys.modules:
        return
    with _stderr_filtered():
        import keras  # noqa: F401 - Keras loads TensorFlow
        import tensorflow  # noqa: F401 - the devices are not touched: --cpu-devices must come first


def writes_to_terminal(stream=None) -> bool:
    """Whether progress may redraw its line (``\\r``, escape codes): only on a terminal."""
    stream = stream or sys.stdout
    return hasattr(stream, "isatty") and stream.isatty()


def progress_bar(total, **options):
    """A ``keras.utils.Progbar`` that redraws its line on a terminal and, in a log file, writes one plain line
    at the end (Keras' bar otherwise writes its colour codes there)."""
    import keras

    options.setdefault("verbose", 1)
    if options["verbose"] and not writes_to_terminal():
        options["verbose"] = 2
    return keras.utils.Progbar(total, **options)


def fit_verbosity() -> int:
    """``model.fit``'s ``verbose``: a live bar on a terminal, a line an epoch in a log file."""
    return 1 if writes_to_terminal() else 2
