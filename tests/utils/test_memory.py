"""kseg's commands cap glibc's malloc arenas unless the user chose a number."""

import platform
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from kseg.utils.memory import cap_malloc_arenas

pytestmark = pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="glibc's malloc only")


def test_caps_the_arenas_on_glibc(monkeypatch):
    monkeypatch.delenv("MALLOC_ARENA_MAX", raising=False)
    assert cap_malloc_arenas() is True


def test_leaves_a_users_choice_alone(monkeypatch):
    monkeypatch.setenv("MALLOC_ARENA_MAX", "4")
    assert cap_malloc_arenas() is False


def test_threads_share_the_capped_arenas():
    """Eight threads allocating at once: glibc's malloc_stats counts the arenas on stderr."""
    script = textwrap.dedent(
        """
        import ctypes, threading
        from kseg.utils.memory import cap_malloc_arenas
        cap_malloc_arenas(2)
        libc = ctypes.CDLL(None)
        libc.malloc.restype = ctypes.c_void_p
        barrier = threading.Barrier(8)
        def work():
            barrier.wait()
            blocks = [libc.malloc(4096) for _ in range(1000)]
            barrier.wait()
        threads = [threading.Thread(target=work) for _ in range(8)]
        [t.start() for t in threads]; [t.join() for t in threads]
        libc.malloc_stats()
        """
    )
    env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, check=True)
    arenas = result.stderr.count("Arena ")
    assert 1 <= arenas <= 2, result.stderr  # uncapped: 9 here
