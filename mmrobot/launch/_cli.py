"""Subcommands of ``mmrobot`` from the launch package: launch, run, doctor."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

_RUN_EPILOG = """examples:
  mmrobot run launch/sim_demo.toml --instruction "put the red block in the bin"
  mmrobot run launch/sim_demo.toml --instruction "push the blue cube to the left" --instruction "lift the green block"
  mmrobot run launch/sim_demo.toml --file my_instructions.txt --video out/run.mp4
  mmrobot run launch/sim_demo.toml            # interactive: type instructions, empty line ends
  mmrobot run launch/sim_demo.toml -i "push the red block to the left" --dry-run   # how it is read
"""


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "run",
        help="execute language instructions one after another with a launch file's robot and policy",
        description="Execute instructions one after another; the robot holds safely between them. "
        "In simulation the outcome comes from the task's success detector.",
        epilog=_RUN_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("launch", help="launch file (launch/*.toml)")
    p.add_argument("overrides", nargs="*", metavar="KEY.PATH=VALUE", help="override launch keys")
    p.add_argument(
        "--instruction", "-i", action="append", default=[], help="an instruction (repeatable)"
    )
    p.add_argument("--file", help="a text file of instructions, one per line")
    p.add_argument(
        "--task", help="explicit task spec for every instruction (else read from the text)"
    )
    p.add_argument("--video", help="write an MP4/GIF of the run (overrides run.video)")
    p.add_argument(
        "--timing-png", help="write the control-loop timing plot (overrides run.timing_png)"
    )
    p.add_argument("--json", help="write the outcomes as JSON (overrides run.results_json)")
    p.add_argument(
        "--dry-run",
        action="store_true",
        help="print the task spec each instruction is read as and run nothing "
        "(exit 2 when one cannot be read)",
    )
    p.set_defaults(func=_run)

    p = sub.add_parser(
        "launch",
        help="validate a launch file and run its mode (collect, train, eval or run)",
        epilog="examples:\n  mmrobot launch launch/sim_demo.toml\n"
        "  mmrobot launch launch/sim_demo.toml loop.ensemble_decay=0.5\n"
        "  mmrobot launch launch/robot_example.toml --check",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("launch", help="launch file (launch/*.toml)")
    p.add_argument("overrides", nargs="*", metavar="KEY.PATH=VALUE", help="override launch keys")
    p.add_argument(
        "--check", action="store_true", help="only validate (files, ports, keys) and exit"
    )
    p.set_defaults(func=_launch)

    p = sub.add_parser(
        "bench",
        help="run the benchmarks in benchmarks/ (each prints a table; --json writes figures)",
        epilog="examples:\n  mmrobot bench --list\n  mmrobot bench sync --quick\n"
        "  mmrobot bench --quick --json-dir out/bench",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("names", nargs="*", help="benchmarks to run (default: all), e.g. sync policy")
    p.add_argument("--quick", action="store_true", help="the short version of each (< 30 s)")
    p.add_argument("--json-dir", help="write each benchmark's figures to DIR/bench_NAME.json")
    p.add_argument("--list", action="store_true", help="list the benchmarks and exit")
    p.set_defaults(func=_bench)

    from mmrobot.launch.hil import HIL_DESCRIPTION, add_arguments

    p = sub.add_parser(
        "hil",
        help="serve the simulated tabletop as a real rig (Dynamixel, FT 300, RPLIDAR on ptys)",
        description=HIL_DESCRIPTION,
        epilog='example: mmrobot hil --task "pick color=red" &  then  '
        'mmrobot run launch/hil.toml -i "put the red block in the bin"',
    )
    add_arguments(p)
    p.set_defaults(func=_hil)

    p = sub.add_parser(
        "doctor",
        help="check rendering, system libraries, serial ports and cameras, and say how to fix",
        description="Check this machine for what mmrobot needs. Exit code 1 when a check fails.",
        epilog="example: mmrobot doctor",
    )
    p.set_defaults(func=_doctor)


def _bench(args: argparse.Namespace) -> int:
    import subprocess

    folder = Path(__file__).resolve().parents[2] / "benchmarks"
    found = {p.stem.removeprefix("bench_"): p for p in sorted(folder.glob("bench_*.py"))}
    if not found:
        raise FileNotFoundError(
            f"no benchmarks in {folder}; they ship with the source tree (git clone), not the wheel"
        )
    if args.list:
        print("\n".join(found))
        return 0
    unknown = sorted(set(args.names) - set(found))
    if unknown:
        raise FileNotFoundError(f"unknown benchmark(s) {unknown}; available: {sorted(found)}")
    for name in args.names or list(found):
        cmd = [sys.executable, str(found[name])]
        if args.quick:
            cmd.append("--quick")
        if args.json_dir:
            cmd += ["--json", str(Path(args.json_dir) / f"bench_{name}.json")]
        print(f"$ {' '.join(cmd)}", flush=True)
        code = subprocess.run(cmd).returncode
        if code:
            return code
    return 0


def _hil(args: argparse.Namespace) -> int:
    from mmrobot.launch.hil import serve

    return serve(args)


def _instructions(args: argparse.Namespace, configured: list[str]) -> list[str] | None:
    items = list(args.instruction)
    if args.file:
        path = Path(args.file)
        if not path.is_file():
            raise FileNotFoundError(f"instructions file {args.file!r} not found")
        items += [x.strip() for x in path.read_text(encoding="utf-8").splitlines() if x.strip()]
    return items or configured or None


def _run(args: argparse.Namespace) -> int:
    from mmrobot.envs.tasks import TaskSpec
    from mmrobot.launch.schema import load_launch

    launch = load_launch(args.launch, args.overrides)
    if launch.mode != "run":
        launch = launch.model_copy(update={"mode": "run"})
    if args.task:
        TaskSpec.parse(args.task)  # a bad spec is bad input, before anything starts
    instructions = _instructions(args, launch.run.instructions)
    if args.dry_run:
        return dry_run(launch, instructions, args.task)
    return run_instructions(
        launch,
        instructions,
        args.task,
        video=args.video or launch.run.video,
        timing_png=args.timing_png or launch.run.timing_png,
        results_json=args.json or launch.run.results_json,
    )


def _task_for(launch, text: str, task: str | None) -> tuple[str | None, str]:
    """The task spec a run executes ``text`` as (None: none is read), and a note on it.

    Raises:
        ConfigError: a simulated run cannot read the instruction (or reads it two ways).
    """
    from mmrobot.envs.reader import read_instruction
    from mmrobot.envs.tasks import TaskSpec

    if task:
        return TaskSpec.parse(task).format(), "from --task"
    if launch.rig is not None:  # the policy gets the text; a robot has no scene to set up
        return None, "a robot runs the text as given; no task is read"
    reading = read_instruction(text)
    return reading.spec.format(), "; ".join(reading.notes)


def _tasks_for(launch, instructions: list[str], task: str | None) -> list[str | None]:
    """Every instruction's task spec, read before anything starts or is written.

    Raises:
        ConfigError: the instructions that cannot be read, each with the reason.
    """
    from mmrobot.core.errors import ConfigError

    tasks: list[str | None] = []
    errors: list[str] = []
    for k, text in enumerate(instructions, 1):
        try:
            tasks.append(_task_for(launch, text, task)[0])
        except ConfigError as e:
            errors.append(f"instruction {k} of {len(instructions)}: {e}")
    if errors:
        raise ConfigError(
            "\n".join(errors) + "\nnothing ran; `mmrobot run LAUNCH -i TEXT --dry-run` shows "
            "how an instruction is read, and --task gives the task spec explicitly"
        )
    return tasks


def dry_run(launch, instructions: list[str] | None, task: str | None = None) -> int:
    """Print the task spec each instruction (None: lines from stdin) is read as; run nothing.

    Returns 0, or 2 when an instruction cannot be read.
    """
    from mmrobot.core.errors import ConfigError

    where = "a robot" if launch.rig is not None else "simulation"
    print(f"{launch.source}: dry run in {where}; nothing runs, nothing is written")
    texts = instructions if instructions is not None else (x.strip() for x in sys.stdin)
    n = failed = 0
    for text in texts:
        if instructions is None and not text:
            break
        n += 1
        print(f"{n}. {text!r}")
        try:
            spec, note = _task_for(launch, text, task)
        except ConfigError as e:
            failed += 1
            print("   cannot be read: " + str(e).replace("\n", "\n   "))
            continue
        print(f"   -> {spec or '-'}" + (f"  ({note})" if note else ""))
    if failed:
        print(f"mmrobot run: error: {failed} of {n} instructions cannot be read", file=sys.stderr)
        return 2
    return 0


def run_instructions(
    launch, instructions, task=None, video=None, timing_png=None, results_json=None
) -> int:
    """Execute instructions (None: ask interactively), print a table, write outputs.

    Every given instruction is read into its task spec first: one that cannot be read is a
    ConfigError before the session starts, so nothing runs and nothing is written.
    """
    from rich.console import Console
    from rich.table import Table

    from mmrobot.core.errors import ConfigError
    from mmrobot.launch.sim import SimSession, write_outputs

    tasks = _tasks_for(launch, instructions, task) if instructions is not None else None
    console = Console()
    if launch.rig is not None:
        from mmrobot.launch.robot import RobotSession

        session = RobotSession(launch)
    else:
        session = SimSession(launch, record_video=bool(video))
    outcomes = []

    def execute(text: str, text_task: str | None) -> None:
        console.print(f"[bold]> {text}[/]")
        o = session.execute(text, task=text_task)  # the policy gets the text as typed
        outcomes.append(o)
        mark = "[green]success[/]" if o.success else f"[red]{o.reason}[/]"
        console.print(
            f"  {mark} after {o.steps} steps ({o.sim_seconds:.1f} s robot time, "
            f"{o.wall_seconds:.1f} s wall); task {o.task}"
        )

    try:
        if instructions is None:
            console.print("type an instruction and press enter (empty line or Ctrl-D ends)")
            for line in sys.stdin:
                if not line.strip():
                    break
                try:  # typed: say why it cannot be read and ask again
                    text_task = _task_for(launch, line.strip(), task)[0]
                except ConfigError as e:
                    console.print(f"  [red]{e}[/]")
                    continue
                execute(line.strip(), text_task)
        else:
            for text, text_task in zip(instructions, tasks or [], strict=True):
                execute(text, text_task)
    finally:
        session.close()
    if not outcomes:
        console.print("no instruction ran; nothing written")
        return 1
    table = Table(title="mmrobot run")
    for col in ("instruction", "task", "outcome", "steps", "policy p50/p99 ms", "safety events"):
        table.add_column(col)
    for o in outcomes:
        d = o.to_dict()
        table.add_row(
            o.instruction,
            o.task,
            "success" if o.success else o.reason,
            str(o.steps),
            f"{d['policy_latency_p50_ms']:.1f} / {d['policy_latency_p99_ms']:.1f}",
            ", ".join(f"{k} {v}" for k, v in o.safety.items()) or "-",
        )
    console.print(table)
    n_ok = sum(o.success for o in outcomes)
    n_completed = sum(o.reason == "completed" for o in outcomes)
    if n_completed:  # a real robot has no success detector unless one is given
        console.print(
            f"{n_completed}/{len(outcomes)} instructions ran to their time limit "
            f"(no success detector); {n_ok} reported success"
        )
    else:
        console.print(f"{n_ok}/{len(outcomes)} instructions succeeded")
    for path in write_outputs(outcomes, launch, video, timing_png, results_json):
        console.print(f"wrote {path}")
    return 0 if outcomes else 1


def _launch(args: argparse.Namespace) -> int:
    from mmrobot.launch.schema import load_launch

    launch = load_launch(args.launch, args.overrides)
    print(f"{launch.source}: valid ({launch.mode} mode)")
    if args.check:
        return 0
    if launch.mode == "run":
        r = launch.run
        return run_instructions(
            launch, r.instructions or None, None, r.video, r.timing_png, r.results_json
        )
    from mmrobot import cli

    if launch.mode == "collect":
        c = launch.collect
        argv = [
            "collect",
            "--episodes",
            str(c.episodes),
            "--out",
            str(launch.path(c.out)),
            "--workers",
            str(c.workers),
            "--seed",
            str(c.seed),
        ]
        if c.tasks:
            argv += ["--tasks", *c.tasks]
        if launch.sim is not None and launch.sim.randomize:
            argv.append("--randomize")
        return cli.main(argv)
    if launch.mode == "train":
        return cli.main(["train", str(launch.path(launch.train.config)), *launch.train.overrides])
    e, source = launch.eval, launch.policy  # the schema requires [policy] in eval mode
    policy = launch.path(source.checkpoint or source.onnx or "") if source else None
    argv = [
        "eval",
        "--policy",
        str(policy),
        "--splits",
        ",".join(e.splits),
        "--episodes",
        str(e.episodes),
        "--workers",
        str(e.workers),
    ]
    if e.results_json:
        argv += ["--json", e.results_json]
    return cli.main(argv)


def _doctor(args: argparse.Namespace) -> int:
    from rich.console import Console
    from rich.table import Table

    from mmrobot.launch.doctor import run_checks

    results = run_checks()
    table = Table(title="mmrobot doctor")
    for col in ("check", "status", "found", "fix"):
        table.add_column(col, overflow="fold")
    style = {"ok": "green", "warn": "yellow", "fail": "red"}
    for r in results:
        table.add_row(r.name, f"[{style[r.status]}]{r.status}[/]", r.found, r.fix)
    Console().print(table)
    return 1 if any(r.status == "fail" for r in results) else 0
