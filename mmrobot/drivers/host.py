"""DriverHost: a rig's sensor drivers in a process of their own, their streams in shared memory.

The drivers' reader threads (serial decoding, JPEG decoding, scan binning) then run on the
child's interpreter and GIL, not on the control loop's: the loop's process only reads the
samples, from :class:`~mmrobot.sync.SharedStreamBuffer` rings that the child writes without a
lock between the two (see :mod:`mmrobot.sync.shared_buffer`).

The parent builds the drivers without opening them (their specs and configs, each stream's
buffer a new shared segment the parent owns), then :meth:`DriverHost.start` spawns the child
(``spawn``: a fresh interpreter, no copied threads or locks), which builds the same rig entries
with writers on those segments and opens them. A driver that cannot open fails ``start`` with
the driver's own error (``DeviceNotConnectedError`` naming the port and the fix), raised here.

The child stamps samples with its own :class:`~mmrobot.core.MonotonicClock`; ``CLOCK_MONOTONIC``
is one clock for every process of the machine, so the stamps are the parent's time base too.
It ignores Ctrl-C (stopping is the parent's to decide: the sensors keep streaming through the
loop's controlled stop), answers health requests, and closes its drivers and exits when asked,
or when the parent goes away (its end of the pipe closes). The parent owns the segments and
unlinks them on :meth:`DriverHost.close`, whether the child stopped, crashed or was killed; if
the parent itself is killed, the multiprocessing resource tracker unlinks them.

Which drivers can move: see :func:`hostable_drivers`.
"""

from __future__ import annotations

import contextlib
import inspect
import math
import multiprocessing as mp
import os
import pickle
import signal
import threading
from collections.abc import Mapping, Sequence
from multiprocessing.connection import wait
from typing import Any

from mmrobot.core.clock import MonotonicClock
from mmrobot.core.errors import ConfigError, DeviceNotConnectedError, LifecycleError
from mmrobot.core.types import StreamSpec
from mmrobot.drivers.base import Driver, DriverConfig, get_driver_class
from mmrobot.drivers.health import DriverStats, Health
from mmrobot.drivers.rig import Rig

__all__ = ["DriverHost", "HostedDriver", "hostable_drivers", "shared_capacity"]

#: Seconds of each stream a shared ring holds (the synchronizer's histories need far less).
RING_SECONDS = 2.0
_MIN_SLOTS, _MAX_SLOTS = 64, 1024


def shared_capacity(spec: StreamSpec) -> int:
    """Slots of a stream's shared ring: ``RING_SECONDS`` of it, at least 64 and four times
    its history, at most 1024 (a camera's ring at 1024 slots would be 28 MB of shared memory)."""
    n = max(_MIN_SLOTS, 4 * spec.history, math.ceil(RING_SECONDS * spec.rate_hz))
    return min(n, max(_MAX_SLOTS, 4 * spec.history))


def hostable_drivers(rig: Rig) -> tuple[list[str], dict[str, str]]:
    """Which of the rig's enabled drivers may run in a driver process, and why the others stay.

    A driver stays in the loop's process when it shares its port with one of the rig's
    actuators (the Dynamixel joint reader: one serial port, one bus lock, and the goal writes
    that the tick posts to the reader's transaction, so the two cannot be split across
    processes), when it compensates gravity (an F/T ``payload``: its orientation comes from
    the joint readings, which are in the loop's process), or when its kind does not take a
    buffer factory.

    Returns:
        The names that may move, in rig order, and ``{name: reason}`` for those that stay.
    """
    actuator_ports = {getattr(a, "port", None) for a in rig.actuators} - {None}
    hosted, stay = [], {}
    for entry in (d for d in rig.drivers if d.enabled):
        if getattr(entry, "port", None) in actuator_ports:
            stay[entry.name] = "on the actuator's bus"
        elif getattr(entry, "payload", None) is not None:
            stay[entry.name] = "gravity compensation needs the joint readings"
        elif not _takes_buffer_factory(get_driver_class(entry.kind)):
            stay[entry.name] = f"kind {entry.kind!r} cannot write shared buffers"
        else:
            hosted.append(entry.name)
    return hosted, stay


def _takes_buffer_factory(cls: type) -> bool:
    params = inspect.signature(cls.__init__).parameters
    return "buffer_factory" in params or any(
        p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()
    )


class HostedDriver:
    """The loop process's view of a driver that runs in the :class:`DriverHost`: its name,
    config, specs and (shared, read-only here) buffers; health and stats come from the child."""

    def __init__(self, driver: Driver, host: DriverHost) -> None:
        self._driver = driver
        self._host = host

    @property
    def name(self) -> str:
        return self._driver.name

    @property
    def kind(self) -> str:
        return self._driver.kind

    @property
    def config(self) -> DriverConfig:
        return self._driver.config

    @property
    def specs(self) -> tuple[StreamSpec, ...]:
        return self._driver.specs

    @property
    def buffers(self) -> Mapping[str, Any]:
        return self._driver.buffers

    @property
    def health(self) -> Health:
        return self._host.health().get(self.name, (Health.CLOSED, None))[0]

    @property
    def stats(self) -> DriverStats | None:
        return self._host.health().get(self.name, (Health.CLOSED, None))[1]

    def __repr__(self) -> str:
        return f"HostedDriver(name={self.name!r}, pid={self._host.pid})"


class DriverHost:
    """Some of a rig's drivers, run in a spawned process of their own.

    Args:
        rig: the validated rig.
        names: the driver entries to run there (see :func:`hostable_drivers`).
        start_timeout_s: how long :meth:`start` waits for every driver to open.
        cpu_affinity: CPUs the child (and every reader thread it starts) is pinned to, e.g.
            the policy worker's core so the loop's core stays free; empty: any. CPUs this
            machine does not allow fail :meth:`start` with a :class:`ConfigError`.

    Use ``with DriverHost(rig, names) as host:`` or :meth:`start` / :meth:`close`.
    :attr:`drivers` are :class:`HostedDriver` views, in ``names`` order.
    """

    def __init__(
        self,
        rig: Rig,
        names: Sequence[str],
        start_timeout_s: float = 60.0,
        cpu_affinity: Sequence[int] = (),
    ) -> None:
        from mmrobot.sync import SharedStreamBuffer

        self.rig = rig
        self.names = list(names)
        self.start_timeout_s = start_timeout_s
        self.cpu_affinity = tuple(cpu_affinity)
        self._buffers: list[Any] = []

        def shared(spec: StreamSpec, capacity: int) -> Any:
            buf = SharedStreamBuffer.create(spec, shared_capacity(spec))
            self._buffers.append(buf)
            return buf

        try:
            built = rig.build_drivers(names=self.names, buffer_factory=shared)
        except BaseException:
            self._close_buffers()
            raise
        self.drivers = [HostedDriver(d, self) for d in built]
        self._handles = {b.spec.name: b.handle() for b in self._buffers}
        self._process: Any = None
        self._exitcode: int | None = None
        self.restarts = 0  # children started again by restart_if_dead
        self._conn: Any = None
        self._lock = threading.Lock()
        self._last_health: dict[str, tuple[Health, DriverStats | None]] = {}

    @property
    def pid(self) -> int | None:
        return None if self._process is None else self._process.pid

    @property
    def alive(self) -> bool:
        return self._process is not None and self._process.is_alive()

    @property
    def exitcode(self) -> int | None:
        """The child's exit code once it ended (negative: killed by that signal)."""
        return self._exitcode if self._process is None else self._process.exitcode

    def start(self) -> DriverHost:
        """Spawn the child and wait until every driver is open.

        Raises:
            DeviceNotConnectedError, ConfigError, ...: a driver's own error from ``open``,
                raised here (with a note that it came from the driver process).
            DeviceTimeoutError: the drivers did not open within ``start_timeout_s``.
            LifecycleError: already started, or the child died while starting.
        """
        if self._process is not None:
            raise LifecycleError("the driver process is already started")
        if self._buffers and self._buffers[0].closed:
            raise LifecycleError("the driver host is closed; make a new DriverHost")
        return self._spawn(keep_buffers=False)

    def restart_if_dead(self) -> bool:
        """Start a new child when the running one died (killed, out of memory); the streams
        keep their segments and their readers, and the new writers start a new epoch.

        Returns:
            True when a new child was started, False when the child was running.

        Raises:
            The new child's start errors, as :meth:`start`; the segments then stay (a
            session's synchronizer still reads them, as invalid streams).
        """
        if self._process is None:
            raise LifecycleError("the driver process was never started (or is closed)")
        if self._process.is_alive():
            return False
        self._stop_child()
        self.restarts += 1
        self._spawn(keep_buffers=True)
        return True

    def _spawn(self, keep_buffers: bool) -> DriverHost:
        ctx = mp.get_context("spawn")
        self._conn, child_conn = ctx.Pipe()
        self._process = ctx.Process(
            target=_serve,
            args=(child_conn, self.rig, self.names, self._handles, self.cpu_affinity),
            name="mmrobot-drivers",
            daemon=True,
        )
        self._process.start()
        child_conn.close()  # the child holds its end; ours would hide the child's exit
        try:
            msg = self._receive(self.start_timeout_s, "to open its drivers")
        except BaseException:
            self._abort_start(keep_buffers)
            raise
        if msg[0] == "error":
            _, name, raised = msg
            self._abort_start(keep_buffers)
            error = _unpickle_error(raised)
            error.add_note(
                f"(raised by driver {name!r} in the driver process of {self.rig.source})"
            )
            raise error
        return self

    def _abort_start(self, keep_buffers: bool) -> None:
        if keep_buffers:
            self._stop_child()
        else:
            self.close()

    def _receive(self, timeout_s: float, what: str) -> Any:
        ready = wait([self._conn, self._process.sentinel], timeout_s)
        if self._conn in ready:
            with contextlib.suppress(EOFError, OSError):
                return self._conn.recv()
        if ready:
            self._process.join(1.0)
            raise LifecycleError(
                f"the driver process of {self.rig.source} exited (code "
                f"{self._process.exitcode}) {what}; run `mmrobot rig {self.rig.source} --run 5` "
                "to see the drivers' errors in this process"
            )
        from mmrobot.core.errors import DeviceTimeoutError

        raise DeviceTimeoutError(
            f"the driver process of {self.rig.source} did not answer within {timeout_s:g} s "
            f"{what}; check the devices with `mmrobot rig {self.rig.source} --run 5`"
        )

    def health(self, timeout_s: float = 2.0) -> dict[str, tuple[Health, DriverStats | None]]:
        """``{driver name: (health, stats)}`` asked from the child; a child that is gone reports
        every driver ``disconnected``, with the reason as ``last_error``. Never call it from
        the control loop's tick: it is a round trip to the child."""
        with self._lock:
            why = "driver process not running (not started, or closed)"
            if self.alive:
                try:
                    self._conn.send(("health",))
                    msg = self._receive(timeout_s, "to a health request")
                    self._last_health = {n: (Health(h), s) for n, (h, s) in msg[1].items()}
                    return dict(self._last_health)
                except Exception as e:  # no answer: the reason is the drivers' last error
                    why = str(e)
            elif self._process is not None:
                why = f"driver process exited (code {self._process.exitcode})"
            out = {}
            for d in self.drivers:
                stats = self._last_health.get(d.name, (None, None))[1]
                if stats is not None:
                    stats = DriverStats(**{**_fields(stats), "last_error": why})
                out[d.name] = (Health.DISCONNECTED if self._process else Health.CLOSED, stats)
            return out

    def close(self, timeout_s: float = 5.0) -> None:
        """Stop the child (its drivers close), then unlink every shared segment."""
        try:
            self._stop_child(timeout_s)
        finally:
            self._close_buffers()

    def _stop_child(self, timeout_s: float = 5.0) -> None:
        proc, self._process = self._process, None
        if proc is not None:
            with contextlib.suppress(Exception):
                self._conn.send(("stop",))
            proc.join(timeout_s)
            if proc.is_alive():
                proc.terminate()
                proc.join(2.0)
            if proc.is_alive():
                proc.kill()
                proc.join(2.0)
            self._exitcode = proc.exitcode
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def _close_buffers(self) -> None:
        for b in self._buffers:
            with contextlib.suppress(Exception):
                b.close()

    def __enter__(self) -> DriverHost:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"DriverHost({self.names}, pid={self.pid})"


def _fields(stats: DriverStats) -> dict[str, Any]:
    return {k: getattr(stats, k) for k in DriverStats.__dataclass_fields__}


def _portable_error(e: BaseException) -> bytes:
    """The exception pickled, or a DeviceNotConnectedError with its text when it does not
    pickle (or would not unpickle: a custom ``__init__``)."""
    with contextlib.suppress(Exception):
        data = pickle.dumps(e)
        pickle.loads(data)
        return data
    return pickle.dumps(DeviceNotConnectedError(f"{type(e).__name__}: {e}"))


def _unpickle_error(data: bytes) -> BaseException:
    try:
        error = pickle.loads(data)
    except Exception as e:  # a class the parent cannot import
        return DeviceNotConnectedError(f"a driver failed to open (its error did not unpickle: {e})")
    return error if isinstance(error, BaseException) else DeviceNotConnectedError(str(error))


def _pin_process(cpus: Sequence[int]) -> None:
    """Pin every thread of this process to ``cpus`` (Linux affinity is per thread: those
    started by imports already, and this one, whose later threads inherit it)."""
    if not cpus:
        return
    allowed = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else []
    tasks = "/proc/self/task"
    tids = [int(t) for t in os.listdir(tasks)] if os.path.isdir(tasks) else [0]
    try:
        for tid in tids:  # this thread (0, or its own id) among them
            with contextlib.suppress(ProcessLookupError):  # a thread that ended meanwhile
                os.sched_setaffinity(tid, set(cpus))
    except (AttributeError, OSError, ValueError) as e:
        raise ConfigError(
            f"driver_cpu_affinity {list(cpus)}: cannot pin the driver process ({e}); this "
            f"machine allows CPUs {allowed or 'none (no sched_setaffinity here)'}: choose "
            "among them, or leave it empty"
        ) from None


def _serve(
    conn: Any,
    rig: Rig,
    names: list[str],
    handles: Mapping[str, Any],
    cpu_affinity: Sequence[int] = (),
) -> None:
    """The child's main loop. Out: ``("ready", pid)`` or ``("error", name, pickled error)``
    once; then ``("health", {name: (health, stats)})`` per ``("health",)`` in. ``("stop",)``
    in, or the parent's end closing, closes the drivers and exits."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the loop's to handle (a stop)
    writers: list[Any] = []
    opened: list[Driver] = []

    def writer(spec: StreamSpec, capacity: int) -> Any:
        buf = handles[spec.name].open_writer()
        writers.append(buf)
        return buf

    current = "(building)"
    try:
        try:
            current = "(pinning the process)"
            _pin_process(cpu_affinity)
            current = "(building)"
            drivers = rig.build_drivers(clock=MonotonicClock(), names=names, buffer_factory=writer)
            for d in drivers:
                current = d.name
                d.open()
                opened.append(d)
        except BaseException as e:
            conn.send(("error", current, _portable_error(e)))
            return
        conn.send(("ready", os.getpid()))
        while True:
            try:
                msg = conn.recv()
            except (EOFError, OSError):  # the loop's process is gone
                return
            if msg[0] == "health":
                conn.send(("health", {d.name: (d.health.value, d.stats) for d in opened}))
            elif msg[0] == "stop":
                return
    finally:
        for d in reversed(opened):
            with contextlib.suppress(Exception):
                d.close()
        for b in writers:
            with contextlib.suppress(Exception):
                b.close()
        with contextlib.suppress(Exception):
            conn.close()
