"""What a :class:`~mmrobot.deploy.loop.ControlLoop` is configured with, sends to and reports:
its :class:`LoopConfig`, the actuator protocols and the per-run :class:`LoopStats`."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

import numpy as np

from mmrobot.core.errors import ConfigError

__all__ = [
    "POLICY_WORKERS",
    "TICK_PARTS",
    "CommandSink",
    "LoopConfig",
    "LoopStats",
    "SendTiming",
    "TorqueControl",
]

POLICY_WORKERS = ("inline", "thread", "process")

# The parts of a tick, in order, timed in LoopStats.tick_parts_ns: the synchronizer's
# observe; the policy request (inline: the policy call itself; a worker: its submit, 0 on
# ticks that request nothing); the worker's poll; the ensembler; to_command (IK; 0 on a
# hold); the safety layer (filter or hold); the actuator's send.
TICK_PARTS = ("observe", "request", "poll", "ensemble", "command", "safety", "send")


@runtime_checkable
class CommandSink(Protocol):
    """What the loop sends commands to (an :class:`~mmrobot.drivers.Actuator`, a sim arm)."""

    def send(self, command: np.ndarray) -> None: ...


@runtime_checkable
class TorqueControl(Protocol):
    """An actuator that can switch its motors off (Dynamixel: torque enable)."""

    def set_torque(self, on: bool) -> None: ...


@runtime_checkable
class SendTiming(Protocol):
    """An actuator that says how its last send spent its time on the bus: (lock wait ns,
    write ns), the write 0 when the command was left with another thread's transaction
    (:attr:`~mmrobot.drivers.dynamixel_bus.DynamixelBus.last_post_ns`); None: not known."""

    @property
    def last_send_ns(self) -> tuple[int, int] | None: ...


@dataclass(frozen=True)
class LoopConfig:
    """Rates and timeouts of a :class:`ControlLoop`.

    Attributes:
        rate_hz: command rate (ticks per second).
        policy_rate_hz: how often a new action chunk is requested; ``rate_hz`` must be a
            whole multiple of it.
        ensemble_decay: ACT's ``m``; 0 averages overlapping chunks equally, larger values
            trust older chunks more; None uses the newest chunk only.
        watchdog_periods: no tick completed within this many periods -> stop.
        spin_s: the last part of each wait is a busy spin, for low jitter.
        stop_hold_s: on a controlled stop, hold position this long before torque off.
        policy_worker: ``"inline"`` (the tick calls the policy and waits: simulation time),
            ``"thread"`` (a :class:`PolicyWorker`; the tick never waits: real time) or
            ``"process"`` (a :class:`PolicyProcess`: the same, without sharing the loop's
            interpreter; the loop needs a ``policy_factory``).
        policy_cpu_affinity: CPUs the policy worker (thread or process) is pinned to;
            empty: any. On two cores: the loop on one, the policy on the other.
        realtime_priority: ``SCHED_FIFO`` priority (1-99) asked for the loop thread in
            :meth:`ControlLoop.run`; 0: do not ask. Refused (no privilege): the run goes on
            at normal priority and :attr:`LoopStats.scheduling` says so.
        cpu_affinity: CPUs the loop thread is pinned to in :meth:`ControlLoop.run`; empty:
            no pinning.
        gc_freeze: in :meth:`ControlLoop.run`, ``gc.freeze()`` after start and automatic
            collection off; young-generation collections run only when a tick leaves at
            least half a period of slack.
        switch_interval_s: with a worker (thread or process), :func:`sys.setswitchinterval`
            during :meth:`ControlLoop.run`: how long another thread of the loop's process
            (the policy thread, the drivers' readers) may hold the GIL while the tick thread
            waits for it (Python's default, 5 ms, is half a 100 Hz period).
    """

    rate_hz: float = 20.0
    policy_rate_hz: float = 20.0
    ensemble_decay: float | None = 0.1
    watchdog_periods: int = 5
    spin_s: float = 0.001
    stop_hold_s: float = 0.2
    policy_worker: str = "inline"
    realtime_priority: int = 0
    cpu_affinity: tuple[int, ...] = ()
    policy_cpu_affinity: tuple[int, ...] = ()
    gc_freeze: bool = True
    switch_interval_s: float = 0.0005

    def __post_init__(self) -> None:
        if self.rate_hz <= 0 or self.policy_rate_hz <= 0:
            raise ConfigError("loop: rate_hz and policy_rate_hz must be > 0")
        ratio = self.rate_hz / self.policy_rate_hz
        if abs(ratio - round(ratio)) > 1e-9 or round(ratio) < 1:
            raise ConfigError(
                f"loop: rate_hz {self.rate_hz} is not a whole multiple of policy_rate_hz "
                f"{self.policy_rate_hz}; e.g. 100 Hz commands with a 20 Hz policy"
            )
        if self.watchdog_periods < 1:
            raise ConfigError("loop: watchdog_periods must be >= 1")
        if self.policy_worker not in POLICY_WORKERS:
            raise ConfigError(
                f"loop: policy_worker {self.policy_worker!r} is not one of {list(POLICY_WORKERS)}"
            )
        if not 0 < self.switch_interval_s <= 0.1:
            raise ConfigError(
                f"loop: switch_interval_s {self.switch_interval_s} is not in (0, 0.1] s"
            )
        if not 0 <= self.realtime_priority <= 99:
            raise ConfigError(
                f"loop: realtime_priority {self.realtime_priority} is not in 0..99 "
                "(SCHED_FIFO priorities are 1-99; 0 asks for none)"
            )

    @property
    def period_ns(self) -> int:
        return round(1e9 / self.rate_hz)

    @property
    def ticks_per_policy(self) -> int:
        return round(self.rate_hz / self.policy_rate_hz)


@dataclass
class LoopStats:
    """Timing and safety figures of one run.

    Per tick, in ns: ``jitter_ns``, ``tick_compute_ns`` (wall) and ``tick_cpu_ns`` (the loop
    thread's CPU time: the rest of the wall time it waited for a core, the GIL, a lock or
    I/O) in :meth:`ControlLoop.run`; ``tick_parts_ns``, every tick's wall time per part in
    :data:`TICK_PARTS` order; ``send_bus_ns``, per send of a :class:`SendTiming` actuator,
    its (lock wait, write).
    """

    ticks: int = 0
    deadline_misses: int = 0
    policy_calls: int = 0
    rejected_chunks: int = 0
    holds: int = 0
    watchdog_trips: int = 0
    stop_reason: str = ""
    skipped_ticks: int = 0
    replaced_requests: int = 0
    policy_restarts: int = 0
    scheduling: str = ""
    jitter_ns: list[int] = field(default_factory=list)
    tick_compute_ns: list[int] = field(default_factory=list)
    tick_cpu_ns: list[int] = field(default_factory=list)
    tick_parts_ns: list[tuple[int, ...]] = field(default_factory=list)
    send_bus_ns: list[tuple[int, int]] = field(default_factory=list)
    policy_latency_ns: list[int] = field(default_factory=list)
    policy_age_ns: list[int] = field(default_factory=list)
    ages_ns: dict[str, list[int]] = field(default_factory=dict)
    hold_reasons: dict[str, int] = field(default_factory=dict)

    def summary(self) -> dict[str, float | int | str]:
        """Percentiles in ms, counts, and the stop reason."""
        out: dict[str, float | int | str] = {
            "ticks": self.ticks,
            "deadline_misses": self.deadline_misses,
            "policy_calls": self.policy_calls,
            "rejected_chunks": self.rejected_chunks,
            "holds": self.holds,
            "watchdog_trips": self.watchdog_trips,
            "stop_reason": self.stop_reason,
            "skipped_ticks": self.skipped_ticks,
            "replaced_requests": self.replaced_requests,
            "policy_restarts": self.policy_restarts,
            "scheduling": self.scheduling,
        }
        out.update(
            _p50_p99(
                {
                    "jitter": self.jitter_ns,
                    "tick_compute": self.tick_compute_ns,
                    "policy_latency": self.policy_latency_ns,
                    "policy_age": self.policy_age_ns,
                }
            )
        )
        out.update(self.breakdown())
        for reason, n in sorted(self.hold_reasons.items()):
            out[f"holds_{reason}"] = n
        for name, ages in self.ages_ns.items():
            out[f"age_{name}_p50_ms"] = _pct_ms(ages, 50)
        return out

    def breakdown(self) -> dict[str, float | int]:
        """Where the ticks' time went, p50/p99 in ms: ``tick_cpu``, ``tick_<part>`` for each of
        :data:`TICK_PARTS`, ``send_lock_wait`` and ``send_write`` (sends written at once);
        ``sends_timed`` and ``sends_deferred`` (left with the joint read) count the sends."""
        out: dict[str, float | int] = {}
        cpu = np.asarray(self.tick_cpu_ns, np.int64)
        parts = np.asarray(self.tick_parts_ns, np.int64).reshape(-1, len(TICK_PARTS))
        bus = np.asarray(self.send_bus_ns, np.int64).reshape(-1, 2)
        written = bus[bus[:, 1] > 0]
        columns = {"tick_cpu": cpu}
        columns.update({f"tick_{name}": parts[:, i] for i, name in enumerate(TICK_PARTS)})
        columns.update(send_lock_wait=bus[:, 0], send_write=written[:, 1])
        out.update(_p50_p99(columns))
        out["sends_timed"] = len(bus)
        out["sends_deferred"] = len(bus) - len(written)
        return out


def _p50_p99(columns: dict[str, list[int] | np.ndarray]) -> dict[str, float]:
    """``<name>_p50_ms`` and ``<name>_p99_ms`` of each column (ns)."""
    return {f"{n}_p{q}_ms": _pct_ms(v, q) for n, v in columns.items() for q in (50, 99)}


def _pct_ms(values: list[int] | np.ndarray, q: float) -> float:
    """The ``q`` percentile of ``|values|`` (ns) in ms; NaN when there are none."""
    return float(np.percentile(np.abs(values), q) / 1e6) if len(values) else float("nan")
