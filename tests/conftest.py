"""Shared fixtures: quiet TensorFlow, the GluonCV side environment, the shapes set; tests in their own process;
a per-test memory log."""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
# TensorFlow's oneDNN allocator keeps every byte it ever held; the system allocator hands freed tensors back, so a
# worker (and each recipe it starts) returns to its size between tests: a tiny Mask R-CNN training run left a
# process at 1.1 GiB instead of 5.1. About 10% slower on this CPU (paired), and tests only: kseg sets nothing.
os.environ.setdefault("TF_ONEDNN_USE_SYSTEM_ALLOCATOR", "1")
# glibc then maps every block above its threshold (at most 32 MiB) afresh and unmaps it on free: each large tensor
# pays its page faults again. Here blocks up to 1 GiB come from the heap, and ``malloc_trim`` after every test
# (below) hands back what it freed: seven preset round trips in one worker took 63 s instead of 88 and ended at
# the same 2.0 GiB (4.1 GiB without the trim). Read at start-up, so these reach the xdist workers and every
# process a test starts, not this one.
os.environ.setdefault("MALLOC_MMAP_THRESHOLD_", str(2**30))
os.environ.setdefault("MALLOC_TRIM_THRESHOLD_", str(2**28))

import ctypes  # noqa: E402
import ctypes.util  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import pytest  # noqa: E402
from gluoncv_env import gluoncv_python  # noqa: E402


def _rss_mib():
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


# Tests marked ``isolated`` run in a fresh process of their own. TensorFlow keeps the high-water mark of what a
# process once held (its oneDNN allocator hands little back), so an xdist worker grows by the peak of every heavy
# test it ran: Mask R-CNN training steps and C4 inference (1000 RoIs through stage 4) took one worker past 15 GiB,
# and the machine's 24 GiB then killed it.
_ISOLATED = "KSEG_ISOLATED_TEST"


def pytest_pyfunc_call(pyfuncitem):
    if pyfuncitem.get_closest_marker("isolated") is None or os.environ.get(_ISOLATED) == pyfuncitem.nodeid:
        return None
    root = Path(str(pyfuncitem.config.rootpath))
    # ``-m ""``: the parent has selected the test already (setup.cfg's default leaves out training runs).
    command = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-rs", "-m", "", pyfuncitem.nodeid]
    result = subprocess.run(command, cwd=root, env={**os.environ, _ISOLATED: pyfuncitem.nodeid},
                            capture_output=True, text=True, timeout=3600)  # fmt: skip
    summary = result.stdout.strip().splitlines()[-1] if result.stdout.strip() else ""
    if result.returncode == 0 and " passed" in summary:
        return True
    if result.returncode == 0 and " skipped" in summary:
        reasons = [line for line in result.stdout.splitlines() if line.startswith("SKIPPED")]
        pytest.skip(f"(in its own process) {reasons[-1] if reasons else summary}")
    pytest.fail(f"in its own process (exit {result.returncode}):\n{result.stdout[-6000:]}\n{result.stderr[-3000:]}",
                pytrace=False)


_LIBC = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")


@pytest.fixture(autouse=True)
def _memory_log(request):
    """After each test the freed heap goes back to the system; ``KSEG_TEST_MEMORY_LOG=FILE`` appends each test's
    worker, resident size before and after (MiB), seconds and id: which tests hold most."""
    log = os.environ.get("KSEG_TEST_MEMORY_LOG")
    before, started = _rss_mib(), time.time()
    yield
    _LIBC.malloc_trim(0)  # what the test freed goes back to the system (every arena, not only the heap's top)
    if not log:
        return
    with open(log, "a") as out:
        worker = os.environ.get("PYTEST_XDIST_WORKER", "main")
        out.write(f"{worker}\t{before:.0f}\t{_rss_mib():.0f}\t{time.time() - started:.1f}\t{request.node.nodeid}\n")


@pytest.fixture(scope="module")
def shapes(tmp_path_factory):
    """A tiny procedural COCO-format instance set (4 train, 2 val images of 64x80, three categories)."""
    from kseg.data.synthetic import write_instance_dataset

    return write_instance_dataset(tmp_path_factory.mktemp("shapes"), num_train=4, num_val=2, size=(64, 80), seed=3)


@pytest.fixture(scope="session")
def side_python():
    """The side venv's python (MXNet + GluonCV), or skip."""
    python = gluoncv_python()
    if python is None:
        pytest.skip("GluonCV side venv not found (set KSEG_GLUONCV_PYTHON or build .venv-gluoncv as .ci/run does)")
    return python


# The longest single tests (about 5 minutes of the quickstart's training): started first, while the other worker
# takes the parity tests, so that neither worker ends alone on them.
LONGEST = {"test_quickstart_learns_exports_and_predicts", "test_mask_rcnn_quickstart_learns_its_own_categories"}


def pytest_collection_modifyitems(items):
    """The slowest tests first (GluonCV parity, then the full-size models): two xdist workers then share the
    long tail of quick tests instead of one of them finishing a long test alone at the end."""

    def weight(item):
        if item.originalname in LONGEST:
            return -1
        if item.get_closest_marker("parity"):
            return 0
        return 1 if item.get_closest_marker("large") else 2

    items.sort(key=weight)  # stable: within a weight, the collection order
