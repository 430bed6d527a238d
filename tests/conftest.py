"""Shared fixtures: quiet TensorFlow, and the GluonCV side environment."""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import pytest  # noqa: E402
from gluoncv_env import gluoncv_python  # noqa: E402


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
