"""``mmrobot run``: instructions one after another, a controlled stop, outputs kept.

Before anything starts, every given instruction is checked: it is not blank, it fits the
policy's instruction length (:func:`instruction_limit`; longer text is refused, never cut),
and in simulation it reads as one task (:func:`task_for`). One that fails is a
:class:`~mmrobot.core.errors.ConfigError` (exit 2) and nothing runs or is written.

Stop (:class:`StopRequest`): SIGINT (Ctrl-C) or SIGTERM during a run is a stop request. In
simulation the running instruction ends at its next tick; on a rig the control loop holds
the last safe command, then switches the torque off. That instruction is marked
``interrupted``, no further instruction runs, the outputs (results JSON, video, timing plot)
of every instruction so far, the interrupted one included, are written, and the command exits
130. A second signal aborts at once. A watchdog stop on a rig also ends the run (exit 1).

Outputs never overwrite an earlier run's (:func:`output_paths`): when any of a run's output
files exists, all of them go into a new numbered folder beside them (``out/run-2/demo.gif``,
``out/run-2/demo_results.json``, ...); ``--overwrite`` writes over them instead.
"""

from __future__ import annotations

import contextlib
import signal
import sys
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from mmrobot.core.errors import ConfigError

__all__ = [
    "EXIT_INTERRUPTED",
    "StopRequest",
    "instruction_limit",
    "instruction_problems",
    "output_paths",
    "run_instructions",
    "task_for",
    "tasks_for",
]

EXIT_INTERRUPTED = 130  # 128 + SIGINT, the shell's convention for Ctrl-C


# --------------------------------------------------------------------------- instructions
def instruction_limit(launch: Any) -> int | None:
    """UTF-8 bytes of instruction text the launch file's policy reads (its tokenizer's
    ``language.max_len`` less BOS and EOS), from the checkpoint's ``config.json`` or the ONNX
    sidecar; None when that cannot be read here (checking the launch file says why)."""
    from mmrobot.launch.policy_check import read_policy_config
    from mmrobot.policies.tokenizers import ByteTokenizer

    if getattr(launch, "policy", None) is None:
        return None
    try:
        config = read_policy_config(launch)
    except (ConfigError, OSError):
        return None
    return ByteTokenizer(config.language.max_len).max_text_bytes


def check_text(text: str, limit: int | None) -> None:
    """Refuse blank text and text longer than the policy reads (``limit`` bytes).

    Raises:
        ConfigError: saying which, with the lengths.
    """
    if not text.strip():
        raise ConfigError(
            f"instruction {text!r} is empty; say what to do, e.g. 'lift the red block'"
        )
    n = len(text.encode("utf-8"))
    if limit is not None and n > limit:
        cut = text.encode("utf-8")[:limit].decode("utf-8", errors="ignore")
        raise ConfigError(
            f"instruction {text[:40] + '...' if len(text) > 40 else text!r} is {n} bytes; the "
            f"policy reads {limit} (language.max_len {limit + 2} tokens, BOS and EOS "
            f"included) and would see only {cut!r}; shorten it"
        )


def task_for(
    launch: Any, text: str, task: str | None, limit: int | None = None
) -> tuple[str | None, str]:
    """The task spec a run executes ``text`` as (None: none is read), and a note on it.

    Raises:
        ConfigError: the text is blank or longer than ``limit`` bytes, or a simulated run
            cannot read it (or reads it two ways).
    """
    from mmrobot.envs.reader import read_instruction
    from mmrobot.envs.tasks import TaskSpec

    check_text(text, limit)
    if task:
        return TaskSpec.parse(task).format(), "from --task"
    if launch.rig is not None:  # the policy gets the text; a robot has no scene to set up
        return None, "a robot runs the text as given; no task is read"
    reading = read_instruction(text)
    return reading.spec.format(), "; ".join(reading.notes)


def instruction_problems(launch: Any, limit: int | None) -> list[str]:
    """Each of the launch file's ``run.instructions`` that a run refuses (:func:`task_for`),
    as ``"instructions[k]: reason"`` (k counts from 0, as TOML arrays do)."""
    problems = []
    for k, text in enumerate(launch.run.instructions):
        try:
            task_for(launch, text, None, limit)
        except ConfigError as e:
            problems.append(f"instructions[{k}]: {e}")
    return problems


def tasks_for(
    launch: Any, instructions: Sequence[str], task: str | None, limit: int | None = None
) -> list[str | None]:
    """Every instruction's task spec, read before anything starts or is written.

    Raises:
        ConfigError: the instructions that cannot be run, each with the reason.
    """
    tasks: list[str | None] = []
    errors: list[str] = []
    for k, text in enumerate(instructions, 1):
        try:
            tasks.append(task_for(launch, text, task, limit)[0])
        except ConfigError as e:
            errors.append(f"instruction {k} of {len(instructions)}: {e}")
    if errors:
        raise ConfigError(
            "\n".join(errors) + "\nnothing ran; `mmrobot run LAUNCH -i TEXT --dry-run` shows "
            "how an instruction is read, and --task gives the task spec explicitly"
        )
    return tasks


# --------------------------------------------------------------------------- stop
class StopRequest:
    """SIGINT and SIGTERM as a request that a run checks between ticks.

    Call it for the reason (``"signal SIGINT"``), None while none came. A first signal only
    sets the reason, except while :meth:`waiting` (for typed input), where it raises
    :class:`KeyboardInterrupt`; so does a second signal, anywhere.
    """

    def __init__(self) -> None:
        self.reason: str | None = None
        self._waiting = False

    def __call__(self) -> str | None:
        return self.reason

    def _handle(self, signum: int, frame: object) -> None:
        first = self.reason is None
        if first:
            self.reason = f"signal {signal.Signals(signum).name}"
        if self._waiting or not first:
            raise KeyboardInterrupt

    @contextlib.contextmanager
    def installed(self) -> Iterator[StopRequest]:
        """Handle SIGINT and SIGTERM (main thread only) until the block ends."""
        if threading.current_thread() is not threading.main_thread():
            yield self
            return
        previous = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
        for s in previous:
            signal.signal(s, self._handle)
        try:
            yield self
        finally:
            for s, h in previous.items():
                signal.signal(s, h)

    @contextlib.contextmanager
    def waiting(self) -> Iterator[None]:
        """A blocking wait (typed input) that a first signal ends at once."""
        self._waiting = True
        try:
            yield
        finally:
            self._waiting = False


# --------------------------------------------------------------------------- outputs
def output_paths(paths: Sequence[Path], overwrite: bool = False) -> list[Path]:
    """Where a run writes ``paths``. Those in one folder move together: as given when none
    of them exists there (or with ``overwrite``), else into a new subfolder ``run-N``, N >= 2
    the smallest for which none of them exists."""
    out = list(paths)
    if overwrite:
        return out
    for folder in dict.fromkeys(p.parent for p in paths):
        mine = [i for i, p in enumerate(paths) if p.parent == folder]
        if not any(paths[i].exists() for i in mine):
            continue
        n = 2
        while any((folder / f"run-{n}" / paths[i].name).exists() for i in mine):
            n += 1
        for i in mine:
            out[i] = folder / f"run-{n}" / paths[i].name
    return out


def _write(
    console: Any, outcomes: list[Any], launch: Any, paths: dict[str, str | None], overwrite: bool
) -> None:
    from mmrobot.launch.sim import write_outputs

    if not any(o.frames for o in outcomes):
        paths = {**paths, "video": None}  # nothing to show: no video is written
    keys = [k for k, v in paths.items() if v]
    given = [Path(str(paths[k])) for k in keys]
    chosen = output_paths(given, overwrite)
    for folder in dict.fromkeys(c.parent for c, g in zip(chosen, given) if c != g):
        existing = ", ".join(str(g) for g in given if g.exists() and g.parent == folder.parent)
        console.print(
            f"{existing} exist(s): this run's outputs there go into {folder}/ (a run never "
            "overwrites an earlier one's; --overwrite does)"
        )
    final = {**paths, **{k: str(p) for k, p in zip(keys, chosen)}}
    for path in write_outputs(outcomes, launch, final["video"], final["timing"], final["json"]):
        console.print(f"wrote {path}")


# --------------------------------------------------------------------------- the run
def _open_session(launch: Any, record_video: bool, explain: bool = False) -> Any:
    if launch.rig is not None:
        from mmrobot.launch.robot import RobotSession

        return RobotSession(launch, explain=explain)
    from mmrobot.launch.sim import SimSession

    return SimSession(launch, record_video=record_video, explain=explain)


def run_instructions(
    launch: Any,
    instructions: Sequence[str] | None,
    task: str | None = None,
    video: str | None = None,
    timing_png: str | None = None,
    results_json: str | None = None,
    overwrite: bool = False,
    session: Any = None,
    explain: bool = False,
) -> int:
    """Execute instructions (None: ask interactively), print a table, write outputs.

    Args:
        session: a started session to use instead of opening the launch file's (tests).
        explain: explain every decision (``mmrobot run --explain``, a torch checkpoint):
            per-call shares in the results JSON, the attribution panel on the video.

    Returns:
        0; 1 when nothing ran or the watchdog stopped a rig; 130 when stopped by a signal.

    Raises:
        ConfigError: an instruction cannot be run (before anything starts).
    """
    from rich.console import Console

    limit = instruction_limit(launch)
    tasks = tasks_for(launch, instructions, task, limit) if instructions is not None else None
    console = Console()
    outcomes: list[Any] = []
    stop = StopRequest()

    def execute(text: str, text_task: str | None) -> None:
        console.print(f"[bold]> {text}[/]")
        o = session.execute(text, task=text_task, should_stop=stop)
        outcomes.append(o)
        if o.interrupted:
            stop.reason = stop.reason or o.reason
        if o.success:
            mark = "[green]success[/]"
        elif o.interrupted:
            mark = f"[yellow]interrupted ({o.reason})[/]"
        else:
            mark = f"[red]{o.reason}[/]"
        console.print(
            f"  {mark} after {o.steps} steps ({o.sim_seconds:.1f} s robot time, "
            f"{o.wall_seconds:.1f} s wall); task {o.task}"
        )

    def ended() -> bool:  # a signal, or a rig whose motors are off (signal or watchdog)
        return bool(stop.reason or getattr(session, "stopped", None))

    paths = {"video": video, "timing": timing_png, "json": results_json}
    with stop.installed():
        opened = session is None
        if opened:
            with stop.waiting():  # a signal while starting up ends the command (exit 130)
                session = _open_session(launch, record_video=bool(video), explain=explain)
        try:  # from here on the session is closed, whatever happens (its policy process too)
            report = session.loop.policy_report() if opened else None
            if report:  # an ONNX policy: which execution provider runs it, and why
                console.print(report, markup=False, highlight=False)
            if instructions is None:
                console.print("type an instruction and press enter (empty line or Ctrl-D ends)")
                while not ended():
                    with stop.waiting():
                        line = sys.stdin.readline()
                    if not line.strip():
                        break
                    try:  # typed: say why it cannot be run and ask again
                        text_task = task_for(launch, line.strip(), task, limit)[0]
                    except ConfigError as e:
                        console.print(f"  [red]{e}[/]")
                        continue
                    execute(line.strip(), text_task)
            else:
                for text, text_task in zip(instructions, tasks or [], strict=True):
                    if ended():
                        break
                    execute(text, text_task)
        except KeyboardInterrupt:  # a signal while waiting for input, or a second one
            stop.reason = stop.reason or "signal SIGINT"
        finally:
            session.close()
        return _report(
            console, launch, outcomes, stop.reason, session, instructions, paths, overwrite
        )


def _report(
    console: Any,
    launch: Any,
    outcomes: list[Any],
    stopped_by: str | None,
    session: Any,
    instructions: Sequence[str] | None,
    paths: dict[str, str | None],
    overwrite: bool,
) -> int:
    """The table, the outputs, and the exit code."""
    from rich.table import Table

    fault = getattr(session, "stopped", None)
    if stopped_by:
        n_int = sum(o.interrupted for o in outcomes)
        left = "" if instructions is None else f", {len(instructions) - len(outcomes)} not started"
        console.print(
            f"[yellow]stopped by {stopped_by.removeprefix('signal ')}: "
            f"{len(outcomes) - n_int} instruction(s) finished, {n_int} interrupted{left}[/]"
        )
    elif fault:
        console.print(f"[red]the robot was stopped ({fault}); no further instruction ran[/]")
    if not outcomes:
        console.print("no instruction ran; nothing written")
        return EXIT_INTERRUPTED if stopped_by else 1
    table = Table(title="mmrobot run")
    for col in ("instruction", "task", "outcome", "steps", "policy p50/p99 ms", "safety events"):
        table.add_column(col)
    for o in outcomes:
        d = o.to_dict()
        table.add_row(
            o.instruction,
            o.task,
            "success" if o.success else f"interrupted ({o.reason})" if o.interrupted else o.reason,
            str(o.steps),
            f"{d['policy_latency_p50_ms']:.1f} / {d['policy_latency_p99_ms']:.1f}",
            ", ".join(f"{k} {v}" for k, v in o.safety.items()) or "-",
        )
    console.print(table)
    for o in outcomes:
        if o.loop:  # real time: say what the loop could not do
            holds = ", ".join(
                f"{k.removeprefix('holds_')} {v}"
                for k, v in o.loop.items()
                if k.startswith("holds_")
            )
            console.print(
                f"loop ({o.instruction}): {o.loop['ticks']} ticks, "
                f"{o.loop['deadline_misses']} deadline misses, {o.loop['skipped_ticks']} skipped, "
                f"jitter p99 {o.loop['jitter_p99_ms']:.2f} ms, policy age p99 "
                f"{o.loop['policy_age_p99_ms']:.1f} ms; holds: {holds or 'none'}; "
                f"{o.loop['scheduling']}"
                + (f"; {o.loop['drivers']}" if o.loop.get("drivers") else ""),
                markup=False,
                highlight=False,
            )
    n_ok = sum(o.success for o in outcomes)
    n_completed = sum(o.reason == "completed" for o in outcomes)
    if n_completed:  # a real robot has no success detector unless one is given
        console.print(
            f"{n_completed}/{len(outcomes)} instructions ran to their time limit "
            f"(no success detector); {n_ok} reported success"
        )
    else:
        console.print(f"{n_ok}/{len(outcomes)} instructions succeeded")
    _write(console, outcomes, launch, paths, overwrite)
    if stopped_by:
        return EXIT_INTERRUPTED
    return 1 if fault else 0
