"""Fixtures several test modules share (plain helpers are in helpers.py)."""

from __future__ import annotations

import pytest

from painterly.weights import RANDOM_OK_ENV, WEIGHTS_ENV


@pytest.fixture
def unchosen_random_weights(monkeypatch):
    """Random VGG weights that no setting of the run chose (`vgg_weights=None`): they warn, once.
    (`vgg_weights="random"` given explicitly is the user's consent, and silences the warning.)"""
    monkeypatch.setenv(WEIGHTS_ENV, "random")
    monkeypatch.delenv(RANDOM_OK_ENV, raising=False)
