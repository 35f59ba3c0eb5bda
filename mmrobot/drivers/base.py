"""The ``Driver`` and ``Actuator`` interfaces. Their pydantic configuration models are in
:mod:`mmrobot.drivers.config_models`, health and counters in :mod:`mmrobot.drivers.health`,
the kind registry in :mod:`mmrobot.drivers.registry`; all are importable from here too.

A :class:`Driver` reads one device. :meth:`Driver.open` connects (and fails with a clear
error when the device is absent), then a background reader thread decodes the device's bytes
and pushes timestamped values into one :class:`~mmrobot.sync.StreamBuffer` per stream.
When the device goes away mid-stream the thread reports it (``health == "disconnected"``),
stops pushing (so the synchronizer marks the stream invalid once its ``max_age`` passes) and
reconnects with exponential backoff when the device returns. No exception escapes the reader
thread: every failure is counted in :attr:`Driver.stats` and kept in ``stats.last_error``.

An :class:`Actuator` sends commands to a device with the same open/close lifecycle.

Both are built from rig-file entries (:mod:`mmrobot.drivers.rig`) through one explicit
registry: :func:`register_driver` / :func:`register_actuator` map a ``kind`` string to a class,
and each class names its validated pydantic config model in ``Config``.
"""

from __future__ import annotations

import contextlib
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

from mmrobot.core.clock import Clock, MonotonicClock
from mmrobot.core.errors import ConfigError, LifecycleError
from mmrobot.core.types import StreamSpec
from mmrobot.drivers.config_models import (
    ActuatorConfig,
    DriverConfig,
    Extrinsics,
    StreamConfig,
)
from mmrobot.drivers.health import DriverCounters, DriverStats, Health, is_port_failure
from mmrobot.drivers.registry import (
    actuator_kinds,
    driver_kinds,
    get_actuator_class,
    get_driver_class,
    register_actuator,
    register_driver,
)

if TYPE_CHECKING:
    from mmrobot.sync import StreamBuffer

__all__ = [
    "Actuator",
    "ActuatorConfig",
    "Driver",
    "DriverConfig",
    "DriverStats",
    "Extrinsics",
    "Health",
    "StreamConfig",
    "actuator_kinds",
    "driver_kinds",
    "get_actuator_class",
    "get_driver_class",
    "register_actuator",
    "register_driver",
]


# --------------------------------------------------------------------------- Driver


class Driver(ABC):
    """A device that produces one or more streams.

    Subclasses set ``Config`` (a :class:`DriverConfig` subclass), implement
    :meth:`_stream_defaults` (the kind's default spec fields), :meth:`_connect`,
    :meth:`_disconnect` and :meth:`_poll` (one blocking read-and-decode step that calls
    :meth:`_push`). The base class owns the reader thread, reconnection, stats and health.

    Args:
        config: the validated rig-file entry.
        clock: host clock for receive stamps (default :class:`MonotonicClock`).
        source: the rig file the entry came from, used in error hints.
        capacity: ring capacity of each stream buffer.
        buffer_factory: makes each stream's buffer, ``(spec, capacity) -> StreamBuffer``
            (default :class:`~mmrobot.sync.StreamBuffer`); e.g. a
            :class:`~mmrobot.sync.SharedStreamBuffer` writer when the driver runs in a process
            of its own (:mod:`mmrobot.drivers.host`).
    """

    kind: ClassVar[str] = ""
    Config: ClassVar[type[DriverConfig]] = DriverConfig

    def __init__(
        self,
        config: DriverConfig,
        *,
        clock: Clock | None = None,
        source: str | None = None,
        capacity: int = 1024,
        buffer_factory: Callable[[StreamSpec, int], StreamBuffer] | None = None,
    ) -> None:
        if not isinstance(config, self.Config):
            raise ConfigError(
                f"{type(self).__name__} needs a {self.Config.__name__}, got {type(config).__name__}"
            )
        self.config = config
        self.clock: Clock = clock if clock is not None else MonotonicClock()
        self.source = source or "your rig file"
        self._specs = self._build_specs()
        from mmrobot.sync import StreamBuffer  # sync imports numpy only; kept local for layering

        make = buffer_factory or StreamBuffer
        self._buffers: dict[str, StreamBuffer] = {s.name: make(s, capacity) for s in self._specs}
        self._c = DriverCounters()
        self._health = Health.CLOSED
        self._opened = False
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    # -- specs ------------------------------------------------------------------------

    @abstractmethod
    def _stream_defaults(self) -> list[dict[str, Any]]:
        """Default spec fields of each stream (``StreamSpec`` keys, ``max_age_ns`` in ns)."""

    def _build_specs(self) -> tuple[StreamSpec, ...]:
        defaults = self._stream_defaults()
        sc = self.config.stream
        specs = []
        for i, d in enumerate(defaults):
            d = dict(d)
            if i == 0:  # the rig's `stream` table overrides the first (main) stream
                for key in ("name", "shape", "rate_hz", "policy", "history", "optional"):
                    value = getattr(sc, key)
                    if value is not None:
                        d[key] = tuple(value) if key == "shape" else value
                if sc.max_age_ms is not None:
                    d["max_age_ns"] = round(sc.max_age_ms * 1e6)
                d["latency_ns"] = round(sc.latency_ms * 1e6)
            try:
                specs.append(StreamSpec(**d))
            except ConfigError as e:
                raise ConfigError(f"{self.source}: driver {self.config.name!r}: {e}") from e
        return tuple(specs)

    @property
    def name(self) -> str:
        return self.config.name

    @property
    def specs(self) -> tuple[StreamSpec, ...]:
        """The StreamSpecs of this driver's streams."""
        return self._specs

    @property
    def buffers(self) -> Mapping[str, StreamBuffer]:
        """Stream name -> StreamBuffer this driver pushes into."""
        return self._buffers

    # -- lifecycle ----------------------------------------------------------------------

    @property
    def is_open(self) -> bool:
        return self._opened

    def open(self) -> Driver:
        """Connect and start the reader thread.

        Raises:
            DeviceNotConnectedError: the device is absent or cannot be opened (names the
                port or device and the fix).
            LifecycleError: already open.
        """
        if self._opened:
            raise LifecycleError(f"driver {self.name!r} is already open")
        self._health = Health.CONNECTING
        try:
            self._connect()
        except BaseException:
            self._health = Health.CLOSED
            raise
        self._stop.clear()
        self._opened = True
        self._health = Health.OK
        self._thread = threading.Thread(
            target=self._run, name=f"mmrobot-{self.kind}-{self.name}", daemon=True
        )
        self._thread.start()
        return self

    def close(self) -> None:
        """Stop the reader thread and release the device. Closing twice is a no-op."""
        if not self._opened:
            return
        self._stop.set()
        self._on_stop()
        if self._thread is not None:
            self._thread.join(timeout=5.0)
            self._thread = None
        try:
            self._disconnect()
        finally:
            self._opened = False
            self._health = Health.CLOSED

    def __enter__(self) -> Driver:
        return self.open()

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _require_open(self, what: str) -> None:
        if not self._opened:
            raise LifecycleError(
                f"driver {self.name!r}: {what} before open(); use `with driver:` or call open()"
            )

    # -- reading ------------------------------------------------------------------------

    def latest(self, stream: str | None = None) -> tuple[int, np.ndarray] | None:
        """The newest ``(t_ns, value)`` of ``stream`` (default: the first), None before one.

        Raises:
            LifecycleError: the driver is not open.
        """
        self._require_open("latest()")
        name = stream if stream is not None else self._specs[0].name
        return self._buffers[name].latest()

    def wait_for_samples(self, n: int = 1, timeout_s: float = 5.0) -> bool:
        """Block until at least ``n`` samples were accepted in total; False on timeout."""
        self._require_open("wait_for_samples()")
        end = time.monotonic() + timeout_s
        while self._c.samples < n:
            if time.monotonic() > end:
                return False
            self._stop.wait(0.002)
        return True

    @property
    def stats(self) -> DriverStats:
        c = self._c
        age = None if c.last_sample_ns is None else self.clock.now_ns() - c.last_sample_ns
        return DriverStats(
            samples=c.samples,
            rejected=c.rejected,
            bytes=c.bytes,
            frames=c.frames,
            checksum_errors=c.checksum_errors,
            resyncs=c.resyncs,
            timeouts=c.timeouts,
            reconnects=c.reconnects,
            errors=c.errors,
            last_sample_age_ns=age,
            last_error=c.last_error,
        )

    @property
    def health(self) -> Health:
        """``ok`` / ``stale`` (no sample within 2x the first stream's max_age) / ``disconnected`` / ..."""
        h = self._health
        if h is Health.OK:
            last = self._c.last_sample_ns
            limit = 2 * self._specs[0].max_age_ns
            if last is None or self.clock.now_ns() - last > limit:
                return Health.STALE
        return h

    def _push(
        self, stream: int | str, t_ns: int, value: np.ndarray, *, host_receive_ns: int | None = None
    ) -> bool:
        """Push one value into stream ``stream`` (index into :attr:`specs`, or name); counts it."""
        name = self._specs[stream].name if isinstance(stream, int) else stream
        ok = self._buffers[name].push(int(t_ns), value)
        if ok:
            self._c.samples += 1
            prev = self._c.last_sample_ns
            if prev is None or t_ns > prev:
                self._c.last_sample_ns = int(t_ns)
        else:
            self._c.rejected += 1
        return ok

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self._poll()
            except Exception as e:  # a device fault or a bug: never escapes the thread
                if self._stop.is_set():
                    break
                if self._is_disconnect(e):
                    self._reconnect(e)
                else:
                    self._c.errors += 1
                    self._c.last_error = f"{type(e).__name__}: {e}"
                    self._stop.wait(0.01)

    def _reconnect(self, cause: BaseException) -> None:
        self._health = Health.DISCONNECTED
        self._c.last_error = f"disconnected: {type(cause).__name__}: {cause}"
        with contextlib.suppress(Exception):
            self._disconnect()
        delay = self.config.reconnect_min_s
        while not self._stop.is_set():
            if self._stop.wait(delay):
                return
            try:
                self._connect()
            except Exception as e:
                self._c.last_error = f"reconnecting: {type(e).__name__}: {e}"
                delay = min(delay * 2.0, self.config.reconnect_max_s)
                continue
            self._c.reconnects += 1
            self._health = Health.OK
            return

    def _is_disconnect(self, e: BaseException) -> bool:
        """Whether ``e`` means the device went away (reconnect) rather than a decode fault."""
        return is_port_failure(e)

    # -- subclass hooks -----------------------------------------------------------------

    @abstractmethod
    def _connect(self) -> None:
        """Open the device (and start its stream). Raise DeviceNotConnectedError with a fix."""

    @abstractmethod
    def _disconnect(self) -> None:
        """Release the device; must not raise when it is already gone."""

    @abstractmethod
    def _poll(self) -> None:
        """One blocking read-and-decode step (return within ~0.1 s so close() is prompt)."""

    def _on_stop(self) -> None:  # noqa: B027 - optional hook, no-op by default
        """Hook run when close() starts, before the thread is joined (e.g. cancel a read)."""

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r}, health={self.health.value!r})"


# --------------------------------------------------------------------------- Actuator


class Actuator(ABC):
    """A device that takes commands. Subclasses implement ``_connect``, ``_disconnect``, ``_send``.

    Args:
        config: the validated rig-file entry.
        clock: host clock.
        source: the rig file the entry came from, used in error hints.
    """

    kind: ClassVar[str] = ""
    Config: ClassVar[type[ActuatorConfig]] = ActuatorConfig

    def __init__(
        self, config: ActuatorConfig, *, clock: Clock | None = None, source: str | None = None
    ) -> None:
        if not isinstance(config, self.Config):
            raise ConfigError(
                f"{type(self).__name__} needs a {self.Config.__name__}, got {type(config).__name__}"
            )
        self.config = config
        self.clock: Clock = clock if clock is not None else MonotonicClock()
        self.source = source or "your rig file"
        self._opened = False
        self.commands_sent = 0

    @property
    def name(self) -> str:
        return self.config.name

    @property
    def is_open(self) -> bool:
        return self._opened

    def open(self) -> Actuator:
        if self._opened:
            raise LifecycleError(f"actuator {self.name!r} is already open")
        self._connect()
        self._opened = True
        return self

    def close(self) -> None:
        if not self._opened:
            return
        try:
            self._disconnect()
        finally:
            self._opened = False

    def __enter__(self) -> Actuator:
        return self.open()

    def __exit__(self, *exc: object) -> None:
        self.close()

    def send(self, command: Any) -> None:
        """Send one command (its form is the actuator kind's; see the subclass).

        Raises:
            LifecycleError: the actuator is not open.
        """
        if not self._opened:
            raise LifecycleError(
                f"actuator {self.name!r}: send() before open(); use `with actuator:`"
            )
        self._send(command)
        self.commands_sent += 1

    @abstractmethod
    def _connect(self) -> None: ...

    @abstractmethod
    def _disconnect(self) -> None: ...

    @abstractmethod
    def _send(self, command: Any) -> None: ...
