"""Where the control loop's policy runs when a tick must never wait for it.

Two workers with one interface (``submit``, ``poll``, ``wait_idle``, ``reset``, ``close``):

- :class:`PolicyWorker`, a thread of the loop's process (``loop.policy_worker = "thread"``).
  ONNX Runtime and torch release the GIL while they compute, but the policy's Python pre-
  and post-processing (collation, decoding) does not, and interleaves with the ticks.
- :class:`PolicyProcess`, a process of its own (``"process"``): it shares no interpreter
  with the loop, so nothing it does holds the loop's GIL. The policy is built in the child
  by a picklable factory; observations go to it and chunks come back over a pipe.

Both keep only the newest request: one that arrives while another is still waiting to
start replaces it, and :meth:`submit` says so, for the loop's count of replaced requests.
"""

from __future__ import annotations

import contextlib
import multiprocessing as mp
import os
import signal
import threading
import time
from collections.abc import Callable, Iterable
from typing import Any

from mmrobot.core.types import ActionChunk, Observation
from mmrobot.deploy.chunks import PolicyLike

__all__ = ["PolicyProcess", "PolicyWorker", "WorkerResult", "runtime_report"]

#: A finished request: (generation, the chunk or the exception the policy raised, latency ns).
WorkerResult = tuple[int, ActionChunk | BaseException, int]


def _pin(cpus: Iterable[int]) -> None:
    """Pin the calling thread (Linux: ``sched_setaffinity(0)`` is per thread) to ``cpus``."""
    cpus = set(cpus)
    if cpus and hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, cpus)


def _act(policy: PolicyLike, obs: Observation, instruction: str) -> tuple[Any, int]:
    t0 = time.perf_counter_ns()
    try:
        result: ActionChunk | BaseException = policy.act(obs, instruction)
    except BaseException as e:  # handed to the loop thread, which raises it
        result = e
    return result, time.perf_counter_ns() - t0


def runtime_report(policy: PolicyLike | None) -> str | None:
    """The policy's line on what runs it (an ONNX policy's ``provider_report()``), or None."""
    report = getattr(policy, "provider_report", None)
    return report() if callable(report) else None


def _reset(policy: PolicyLike) -> None:
    reset = getattr(policy, "reset", None)
    if callable(reset):
        reset()


class PolicyWorker:
    """Runs ``policy.act`` in its own thread; the control tick hands it the newest
    observation and never waits for it.

    Args:
        policy: anything with ``act(observation, instruction) -> ActionChunk``.
        cpus: CPUs the worker thread is pinned to (empty: any).
    """

    def __init__(
        self, policy: PolicyLike, name: str = "mmrobot-policy", cpus: Iterable[int] = ()
    ) -> None:
        self.policy = policy
        self.cpus = tuple(cpus)
        self._cv = threading.Condition()
        self._request: tuple[int, Observation, str] | None = None
        self._done: list[WorkerResult] = []
        self._busy = False
        self._reset_due = False
        self._closed = False
        self._thread = threading.Thread(target=self._serve, name=name, daemon=True)
        self._thread.start()

    def submit(self, generation: int, observation: Observation, instruction: str) -> bool:
        """Ask for a chunk; True when this replaced a request that had not started yet."""
        with self._cv:
            replaced = self._request is not None
            self._request = (generation, observation, instruction)
            self._cv.notify_all()
        return replaced

    def poll(self) -> list[WorkerResult]:
        """Finished requests since the last poll: (generation, chunk or the exception the
        policy raised, latency in ns)."""
        with self._cv:
            out, self._done = self._done, []
        return out

    def wait_idle(self, timeout_s: float) -> bool:
        """Block until no request is pending or running (tests, shutdown); False on timeout."""
        with self._cv:
            return self._cv.wait_for(
                lambda: self._request is None and not self._busy and not self._reset_due,
                timeout=timeout_s,
            )

    def reset(self) -> None:
        """Drop a request that has not started and ``policy.reset()``, between instructions.

        The reset runs in the worker thread, before any later request, so it never overlaps
        a call still running (one that outlived :meth:`wait_idle`'s timeout)."""
        with self._cv:
            self._request = None
            self._reset_due = True
            self._cv.notify_all()

    def close(self, timeout_s: float = 1.0) -> None:
        with self._cv:
            self._closed = True
            self._cv.notify_all()
        self._thread.join(timeout=timeout_s)

    def _serve(self) -> None:
        _pin(self.cpus)
        while True:
            with self._cv:
                self._cv.wait_for(
                    lambda: self._request is not None or self._reset_due or self._closed
                )
                if self._closed:
                    return
                reset, self._reset_due = self._reset_due, False
                request, self._request = self._request, None
                self._busy = request is not None
            if reset:
                _reset(self.policy)
            if request is None:
                continue
            generation, obs, instruction = request
            result, latency_ns = _act(self.policy, obs, instruction)
            with self._cv:
                self._done.append((generation, result, latency_ns))
                self._busy = False
                self._cv.notify_all()


def _serve_process(factory: Callable[[], PolicyLike], conn: Any, cpus: tuple[int, ...]) -> None:
    """The child's main loop. Messages in: ``("act", generation, obs, instruction)``,
    ``("reset",)``, ``None`` (exit). Out: ``("ready", runtime_report(policy))`` or
    ``("failed", error)`` once, then one ``(generation, result, latency_ns)`` per ``act``."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the loop's to handle (a stop)
    try:
        _pin(cpus)
        policy = factory()
    except BaseException as e:
        conn.send(("failed", _picklable(e)))
        return
    conn.send(("ready", runtime_report(policy)))
    while True:
        try:
            msg = conn.recv()
        except EOFError:  # the loop's process is gone
            return
        if msg is None:
            return
        if msg[0] == "reset":
            _reset(policy)
            continue
        _, generation, obs, instruction = msg
        result, latency_ns = _act(policy, obs, instruction)
        if isinstance(result, BaseException):
            result = _picklable(result)
        conn.send((generation, result, latency_ns))


def _picklable(e: BaseException) -> BaseException:
    """``e`` itself when it survives pickling, else a RuntimeError that names it."""
    import pickle

    try:
        pickle.loads(pickle.dumps(e))
        return e
    except Exception:
        return RuntimeError(f"{type(e).__name__}: {e}")


class PolicyProcess:
    """Runs the policy in a process of its own (``spawn``: no GL context or thread pool is
    inherited); the control tick hands it the newest observation and never waits for it.

    The pipe is served from the tick itself, so the loop's process has no extra thread:
    :meth:`submit` sends a request at once when the child is idle and keeps it otherwise;
    :meth:`poll` collects a finished chunk and sends the kept request. A request kept
    while the child computes therefore starts at the first tick after the chunk is done,
    at most one command period late.

    Args:
        factory: builds the policy in the child; must pickle (a module-level function or a
            ``functools.partial`` of one, e.g. of
            :func:`mmrobot.launch.policy_loader.load_launch_policy` with the launch file).
        cpus: CPUs the child is pinned to (empty: any).
        start_timeout_s: how long loading the policy in the child may take.

    Raises:
        RuntimeError: the child did not start in time, or exited.
        Exception: whatever the factory raised in the child (the policy file is missing...).
    """

    def __init__(
        self,
        factory: Callable[[], PolicyLike],
        name: str = "mmrobot-policy",
        cpus: Iterable[int] = (),
        start_timeout_s: float = 120.0,
    ) -> None:
        ctx = mp.get_context("spawn")
        self._conn, child = ctx.Pipe()
        self._proc = ctx.Process(
            target=_serve_process, args=(factory, child, tuple(cpus)), name=name, daemon=True
        )
        self._proc.start()
        child.close()
        self._pending: tuple[str, int, Observation, str] | None = None
        self._busy = False
        self._done: list[WorkerResult] = []
        try:
            if not self._conn.poll(start_timeout_s):
                raise RuntimeError(
                    f"the policy process did not load its policy within {start_timeout_s:g} s"
                )
            kind, answer = self._recv()
        except BaseException:
            self.close()
            raise
        if kind == "failed":
            self.close()
            raise answer
        #: the child's policy's line on what runs it (:func:`runtime_report`), or None
        self.runtime_report: str | None = answer

    @property
    def pid(self) -> int | None:
        return self._proc.pid

    @property
    def alive(self) -> bool:
        """Whether the child still runs (it can be killed, or run out of memory)."""
        return self._proc.is_alive()

    def submit(self, generation: int, observation: Observation, instruction: str) -> bool:
        """Ask for a chunk; True when this replaced a request that had not started yet."""
        request = ("act", generation, observation, instruction)
        if not self._busy:
            self._send(request)
            return False
        replaced = self._pending is not None
        self._pending = request
        return replaced

    def poll(self) -> list[WorkerResult]:
        """Finished requests since the last poll (see :meth:`PolicyWorker.poll`).

        Raises:
            RuntimeError: the child exited (killed, out of memory).
        """
        self._collect(0.0)
        out, self._done = self._done, []
        return out

    def wait_idle(self, timeout_s: float) -> bool:
        """Block until no request is pending or running; False on timeout."""
        end = time.monotonic() + timeout_s
        while self._busy:
            left = end - time.monotonic()
            if left <= 0:
                return False
            self._collect(left)
        return True

    def reset(self) -> None:
        """Drop a request kept for the child and ``policy.reset()`` in it, between
        instructions (call when idle).

        Raises:
            RuntimeError: the child exited.
        """
        self._pending = None
        try:
            self._conn.send(("reset",))
        except (BrokenPipeError, OSError) as e:
            raise self._exited() from e

    def close(self, timeout_s: float = 2.0) -> None:
        if self._proc.is_alive():
            with contextlib.suppress(BrokenPipeError, OSError):  # already gone
                self._conn.send(None)
            self._proc.join(timeout_s)
        if self._proc.is_alive():
            self._proc.terminate()
            self._proc.join(timeout_s)
        self._conn.close()

    def _send(self, request: tuple[str, int, Observation, str]) -> None:
        try:
            self._conn.send(request)
        except (BrokenPipeError, OSError) as e:
            raise self._exited() from e
        self._busy = True

    def _recv(self) -> Any:
        try:
            return self._conn.recv()
        except (EOFError, OSError) as e:
            raise self._exited() from e

    def _collect(self, timeout_s: float) -> None:
        """Take a finished chunk, waiting up to ``timeout_s``; then send the kept request."""
        if self._busy and self._conn.poll(timeout_s):
            self._done.append(self._recv())
            self._busy = False
            if self._pending is not None:
                request, self._pending = self._pending, None
                self._send(request)

    def _exited(self) -> RuntimeError:
        self._proc.join(0.5)
        return RuntimeError(
            f"the policy process (pid {self._proc.pid}) exited with code {self._proc.exitcode}"
        )
