"""Fixtures several test modules share (plain helpers are in helpers.py)."""

from __future__ import annotations

import os

import pytest
import torch

from painterly.weights import RANDOM_OK_ENV, WEIGHTS_ENV

# Under pytest-xdist (scripts/test.sh runs one worker per core) every worker computes with one thread,
# and so does every process a test starts (they inherit the environment): two OpenMP threads per worker
# on shared cores spin waiting for each other and made the suite slower, not faster.
if os.environ.get("PYTEST_XDIST_WORKER"):
    for _name in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ.setdefault(_name, "1")
    torch.set_num_threads(int(os.environ["OMP_NUM_THREADS"]))


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """The `slow` tests first (in their own order), so that no worker is left with one at the end while
    the other has finished."""
    items.sort(key=lambda item: item.get_closest_marker("slow") is None)


@pytest.fixture
def unchosen_random_weights(monkeypatch):
    """Random VGG weights that no setting of the run chose (`vgg_weights=None`): they warn, once.
    (`vgg_weights="random"` given explicitly is the user's consent, and silences the warning.)"""
    monkeypatch.setenv(WEIGHTS_ENV, "random")
    monkeypatch.delenv(RANDOM_OK_ENV, raising=False)


@pytest.fixture
def one_thread():
    """One torch thread for the test: tiny work gains nothing from two, and on 2 shared cores OpenMP's
    spinning threads make two far slower than one."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
