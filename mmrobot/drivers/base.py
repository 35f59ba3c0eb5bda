"""The ``Driver`` and ``Actuator`` interfaces, their health and stats, and the kind registry
(their pydantic configuration models are in :mod:`mmrobot.drivers.config_models`).

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
import enum
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar, TypeVar

import numpy as np

from mmrobot.core.clock import Clock, MonotonicClock
from mmrobot.core.errors import ConfigError, DeviceNotConnectedError, LifecycleError
from mmrobot.core.types import StreamSpec
from mmrobot.drivers.config_models import (
    ActuatorConfig,
    DriverConfig,
    Extrinsics,
    StreamConfig,
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


# --------------------------------------------------------------------------- stats, health


class Health(str, enum.Enum):
    """Where a driver stands. ``ok``: samples flow; ``stale``: connected but nothing decoded
    recently; ``disconnected``: device gone, reconnecting; ``closed``: not open."""

    CLOSED = "closed"
    CONNECTING = "connecting"
    OK = "ok"
    STALE = "stale"
    DISCONNECTED = "disconnected"


@dataclass(frozen=True, slots=True)
class DriverStats:
    """A snapshot of a driver's counters.

    Attributes:
        samples: values pushed and accepted by the buffers.
        rejected: values the buffers refused (out of order, duplicate time, non-finite).
        bytes: bytes read from the device.
        frames: frames decoded with a valid checksum.
        checksum_errors: frames whose checksum did not match (dropped, never emitted).
        resyncs: times the decoder skipped bytes to find the next frame start.
        timeouts: requests the device did not answer in time.
        reconnects: successful reconnections after the device went away.
        errors: unexpected exceptions caught in the reader thread.
        last_sample_age_ns: now minus the stamp of the last accepted sample, None before one.
        last_error: the most recent error message, None when none.
    """

    samples: int
    rejected: int
    bytes: int
    frames: int
    checksum_errors: int
    resyncs: int
    timeouts: int
    reconnects: int
    errors: int
    last_sample_age_ns: int | None
    last_error: str | None


class _Counters:
    """Mutable counters written by the reader thread (int increments are atomic under the GIL)."""

    __slots__ = (
        "samples",
        "rejected",
        "bytes",
        "frames",
        "checksum_errors",
        "resyncs",
        "timeouts",
        "reconnects",
        "errors",
        "last_sample_ns",
        "last_error",
    )

    def __init__(self) -> None:
        self.samples = self.rejected = self.bytes = self.frames = 0
        self.checksum_errors = self.resyncs = self.timeouts = self.reconnects = self.errors = 0
        self.last_sample_ns: int | None = None
        self.last_error: str | None = None


def is_port_failure(e: BaseException) -> bool:
    """Whether ``e`` means the port itself failed (unplugged): OSError, pyserial's
    SerialException, or termios.error (tcflush/tcsetattr on a vanished tty)."""
    if isinstance(e, (OSError, DeviceNotConnectedError)):
        return True
    return (
        type(e).__name__ in ("SerialException", "PortNotOpenError")
        or type(e).__module__ == "termios"
    )


# --------------------------------------------------------------------------- registry

_DRIVERS: dict[str, type[Driver]] = {}
_ACTUATORS: dict[str, type[Actuator]] = {}
# Kinds whose module is imported on first use (it pulls in a heavier dependency); a fixed map
# in code, never an import path from a config file.
_LAZY_DRIVER_MODULES = {"replay": "mmrobot.drivers.replay"}
_T = TypeVar("_T")


def _registrar(registry: dict[str, Any], what: str, kind: str) -> Callable[[type[_T]], type[_T]]:
    def deco(cls: type[_T]) -> type[_T]:
        if kind in registry and registry[kind] is not cls:
            raise ConfigError(
                f"{what} kind {kind!r} is already registered to {registry[kind].__name__}"
            )
        registry[kind] = cls
        cls.kind = kind  # type: ignore[attr-defined]
        return cls

    return deco


def register_driver(kind: str) -> Callable[[type[_T]], type[_T]]:
    """Class decorator: map ``kind`` (the rig file's ``kind = "..."``) to a Driver class."""
    return _registrar(_DRIVERS, "driver", kind)


def register_actuator(kind: str) -> Callable[[type[_T]], type[_T]]:
    """Class decorator: map ``kind`` to an Actuator class."""
    return _registrar(_ACTUATORS, "actuator", kind)


def driver_kinds() -> tuple[str, ...]:
    """Registered driver kinds (and those registered on first use), sorted."""
    return tuple(sorted(set(_DRIVERS) | set(_LAZY_DRIVER_MODULES)))


def actuator_kinds() -> tuple[str, ...]:
    """Registered actuator kinds, sorted."""
    return tuple(sorted(_ACTUATORS))


def get_driver_class(kind: str) -> type[Driver]:
    """The Driver class for ``kind``; ConfigError listing the known kinds otherwise."""
    if kind not in _DRIVERS and kind in _LAZY_DRIVER_MODULES:
        import importlib

        importlib.import_module(_LAZY_DRIVER_MODULES[kind])
    try:
        return _DRIVERS[kind]
    except KeyError:
        raise ConfigError(
            f"unknown driver kind {kind!r}; known kinds: {list(driver_kinds())}"
        ) from None


def get_actuator_class(kind: str) -> type[Actuator]:
    """The Actuator class for ``kind``; ConfigError listing the known kinds otherwise."""
    try:
        return _ACTUATORS[kind]
    except KeyError:
        raise ConfigError(
            f"unknown actuator kind {kind!r}; known kinds: {list(actuator_kinds())}"
        ) from None


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

        self._buffers: dict[str, StreamBuffer] = {
            s.name: StreamBuffer(s, capacity=capacity) for s in self._specs
        }
        self._c = _Counters()
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
