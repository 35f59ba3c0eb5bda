"""The Driver base class: lifecycle, registry, fault containment and reconnection."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest

from mmrobot.core.errors import ConfigError, DeviceNotConnectedError, LifecycleError
from mmrobot.drivers import Driver, DriverConfig, Health, get_driver_class, register_driver
from mmrobot.drivers.registry import _DRIVERS


class _Device:
    """A stand-in device: 'present' or not, and a value to report."""

    def __init__(self) -> None:
        self.present = True
        self.fail_decode = False
        self.connects = 0


class _Counter(Driver):
    """Pushes an increasing count every 2 ms; raises like a serial port when the device is gone."""

    device: _Device

    def _stream_defaults(self):
        return [
            dict(
                name="count",
                modality="other",
                shape=(1,),
                dtype="float32",
                rate_hz=500.0,
                max_age_ns=20_000_000,
            )
        ]

    def _connect(self):
        if not self.device.present:
            raise DeviceNotConnectedError("device absent")
        self.device.connects += 1

    def _disconnect(self):
        pass

    def _poll(self):
        time.sleep(0.002)
        if not self.device.present:
            raise OSError(5, "Input/output error")
        if self.device.fail_decode:
            raise ValueError("a decoder bug")
        self._push(0, self.clock.now_ns(), np.array([self._c.samples], np.float32))


@pytest.fixture()
def counter():
    cls = register_driver("test_counter")(_Counter)
    try:
        drv = cls(
            DriverConfig(kind="test_counter", name="c", reconnect_min_s=0.01, reconnect_max_s=0.05)
        )
        drv.device = _Device()
        yield drv
        drv.close()
    finally:
        _DRIVERS.pop("test_counter", None)


def test_lifecycle_order_is_enforced(counter):
    with pytest.raises(LifecycleError, match="before open"):
        counter.latest()
    with pytest.raises(LifecycleError):
        counter.wait_for_samples(1)
    assert counter.health is Health.CLOSED
    with counter:
        with pytest.raises(LifecycleError, match="already open"):
            counter.open()
        assert counter.wait_for_samples(3)
    assert counter.health is Health.CLOSED
    assert not any(t.name == "mmrobot-test_counter-c" for t in threading.enumerate())


def test_a_failing_connect_leaves_the_driver_closed(counter):
    counter.device.present = False
    with pytest.raises(DeviceNotConnectedError):
        counter.open()
    assert not counter.is_open and counter.health is Health.CLOSED


def test_exceptions_never_escape_the_reader_thread(counter):
    with counter:
        assert counter.wait_for_samples(3)
        counter.device.fail_decode = True
        time.sleep(0.1)
        st = counter.stats
        assert st.errors > 0 and "a decoder bug" in st.last_error
        counter.device.fail_decode = False
        n = counter.stats.samples
        assert counter.wait_for_samples(n + 3)  # the thread is still alive and reading


def test_disconnect_then_reconnect_with_backoff(counter):
    with counter:
        assert counter.wait_for_samples(3)
        counter.device.present = False
        end = time.monotonic() + 2
        while counter.health is not Health.DISCONNECTED and time.monotonic() < end:
            time.sleep(0.005)
        assert counter.health is Health.DISCONNECTED
        time.sleep(0.2)
        assert "reconnecting" in counter.stats.last_error
        assert counter.stats.reconnects == 0
        counter.device.present = True
        end = time.monotonic() + 2
        while counter.stats.reconnects == 0 and time.monotonic() < end:
            time.sleep(0.005)
        assert counter.stats.reconnects == 1 and counter.device.connects == 2
        n = counter.stats.samples
        assert counter.wait_for_samples(n + 3)
        assert counter.health is Health.OK


def test_registry_refuses_a_second_class_for_a_kind_and_lists_kinds():
    with pytest.raises(ConfigError, match="already registered"):
        register_driver("ft300")(_Counter)
    with pytest.raises(
        ConfigError, match=r"unknown driver kind 'nope'; known kinds: \[.*'dynamixel'"
    ):
        get_driver_class("nope")
