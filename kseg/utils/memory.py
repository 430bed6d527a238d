"""glibc's malloc arenas, capped in kseg's commands (plain Python: no TensorFlow needed)."""

import ctypes
import os
import platform

_M_ARENA_MAX = -8  # mallopt's parameter number in glibc's malloc.h
COMMAND_ARENAS = 2


def cap_malloc_arenas(count=COMMAND_ARENAS):
    """Let glibc's malloc keep at most ``count`` arenas in this process, as ``MALLOC_ARENA_MAX`` would.

    TensorFlow runs ops on several threads and glibc gives threads arenas of their own (up to 8 per core);
    a block freed in one thread's arena is not reused by another's, so the process comes to hold a working
    set per arena. deeplab_resnet101_voc at Cityscapes' 1024x2048 (2 threads, this project's 2-core Xeon)
    peaked at 2170 MiB in its first call and 2445 MiB from the second on; capped at 2 arenas, 2091 and 2166.
    Arenas made before the call stay, so kseg's commands call it before TensorFlow runs an op.
    ``MALLOC_ARENA_MAX`` set by the user wins; other C libraries are left alone. Returns whether it capped.

    Example (first thing in a program, before it runs a TensorFlow op):

    >>> from kseg.utils.memory import cap_malloc_arenas
    >>> capped = cap_malloc_arenas()
    """
    if os.environ.get("MALLOC_ARENA_MAX") or platform.libc_ver()[0] != "glibc":
        return False
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return False
    return bool(mallopt(_M_ARENA_MAX, int(count)))
