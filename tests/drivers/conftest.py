"""Shared fixtures of the driver tests."""

from __future__ import annotations

import threading

import pytest


@pytest.fixture(autouse=True)
def _no_leaked_threads():
    """Every driver and emulator a test starts must be stopped by its end."""
    before = set(threading.enumerate())
    yield
    leaked = [
        t
        for t in threading.enumerate()
        if t not in before and t.is_alive() and t.name.startswith(("mmrobot-", "emulator-"))
    ]
    assert not leaked, f"threads left running: {[t.name for t in leaked]}"
