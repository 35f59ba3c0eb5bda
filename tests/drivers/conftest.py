"""Shared fixtures of the driver tests."""

from __future__ import annotations

import threading

import pytest

# Modules of tests/drivers/ owned by the recording/replay work keep their own conventions.
_NOT_CHECKED = ("test_recording", "test_replay")


@pytest.fixture(autouse=True)
def _no_leaked_threads(request):
    """Every driver and emulator a test starts must be stopped by its end."""
    if request.module.__name__.rsplit(".", 1)[-1] in _NOT_CHECKED:
        yield
        return
    before = set(threading.enumerate())
    yield
    leaked = [
        t
        for t in threading.enumerate()
        if t not in before and t.is_alive() and t.name.startswith(("mmrobot-", "emulator-"))
    ]
    assert not leaked, f"threads left running: {[t.name for t in leaked]}"
