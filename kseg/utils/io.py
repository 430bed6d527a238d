"""Atomic file writes: a reader never sees a half-written file.

The data go to a temporary file in the destination's folder (same file
system), which is renamed over the destination only when complete.
"""

import contextlib
import os
import tempfile
from pathlib import Path


@contextlib.contextmanager
def atomic_path(path, suffix=".tmp"):
    """Yield a temporary path to write; on success it replaces ``path``, on error it is removed.

    ``suffix`` lets writers that choose a format by extension (Keras, PIL) see the right one.
    """
    path = Path(os.fspath(path))
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=suffix)
    os.close(fd)
    try:
        yield tmp
        if os.path.exists(tmp):
            os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; give the file the usual permissions
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def _umask():
    mask = os.umask(0)
    os.umask(mask)
    return mask


def write_atomic(path, data):
    """Write ``bytes`` or ``str`` to ``path`` atomically, synced to disk."""
    mode = "wb" if isinstance(data, (bytes, bytearray, memoryview)) else "w"
    with atomic_path(path) as tmp, open(tmp, mode) as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
