"""Subcommands of ``mmrobot`` from the launch package: launch, run, doctor."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from mmrobot.launch.runner import instruction_limit, run_instructions
from mmrobot.launch.runner import task_for as _task_for

if TYPE_CHECKING:
    from mmrobot.launch.schema import LaunchFile

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
        "In simulation the outcome comes from the task's success detector. Ctrl-C (or SIGTERM) "
        "stops in a controlled way, writes the outputs of what ran (the interrupted instruction "
        "marked) and exits 130. Outputs never overwrite an earlier run's: when they exist, the "
        "run writes into a new folder run-N beside them (docs/run.md).",
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
        "--explain",
        action="store_true",
        help="explain every decision (attention rollout; a torch checkpoint only): per-call "
        "shares of each input in the --json outcomes, camera heatmaps and bars on the --video",
    )
    p.add_argument(
        "--dry-run",
        action="store_true",
        help="print the task spec each instruction is read as and run nothing "
        "(exit 2 when one cannot be read)",
    )
    p.add_argument(
        "--overwrite",
        action="store_true",
        help="write over earlier outputs (default: a run whose outputs exist writes into a "
        "new folder run-N beside them)",
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
        "--check",
        action="store_true",
        help="only validate and exit: keys, files, ports, safety bounds, the policy against the "
        "streams, and [run] instructions",
    )
    p.add_argument(
        "--resume",
        action="store_true",
        help="train mode: continue the run in the training config's `out` (as `mmrobot train`)",
    )
    p.add_argument(
        "--overwrite",
        action="store_true",
        help="train mode: replace the run in `out`; collect mode: replace the dataset; run mode: "
        "write over earlier outputs (without it, nothing is overwritten)",
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


def read_instructions_file(name: str) -> list[str]:
    """The non-blank lines of a UTF-8 text file, stripped.

    Raises:
        FileNotFoundError: no such file.
        ConfigError: not UTF-8 (names the line and the byte), or no instruction in it.
    """
    from mmrobot.core.errors import ConfigError

    path = Path(name)
    if not path.is_file():
        raise FileNotFoundError(f"instructions file {name!r} not found")
    data = path.read_bytes()
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        line = data[: e.start].count(b"\n") + 1
        raise ConfigError(
            f"instructions file {name!r} is not UTF-8 text: byte 0x{data[e.start]:02x} on line "
            f"{line} ({e.reason}); save it as UTF-8"
        ) from None
    items = [x.strip() for x in text.splitlines() if x.strip()]
    if not items:
        raise ConfigError(f"instructions file {name!r} holds no instruction (one per line)")
    return items


def _instructions(args: argparse.Namespace, configured: list[str]) -> list[str] | None:
    items = list(args.instruction)
    if args.file:
        items += read_instructions_file(args.file)
    return items or configured or None


def _run(args: argparse.Namespace) -> int:
    from mmrobot.envs.tasks import TaskSpec
    from mmrobot.launch.schema import load_launch
    from mmrobot.launch.validate import check_launch

    launch = load_launch(args.launch, args.overrides, check_files=False)
    if launch.mode != "run":
        launch = launch.model_copy(update={"mode": "run"})
    check_launch(launch)  # as a run: the policy against the streams, the control rate
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
        overwrite=args.overwrite,
        explain=args.explain,
    )


def dry_run(launch, instructions: list[str] | None, task: str | None = None) -> int:
    """Print the task spec each instruction (None: lines from stdin) is read as; run nothing.

    Returns 0, or 2 when an instruction cannot be read.
    """
    from mmrobot.core.errors import ConfigError

    where = "a robot" if launch.rig is not None else "simulation"
    print(f"{launch.source}: dry run in {where}; nothing runs, nothing is written")
    texts = instructions if instructions is not None else (x.strip() for x in sys.stdin)
    limit = instruction_limit(launch)
    n = failed = 0
    for text in texts:
        if instructions is None and not text:
            break
        n += 1
        print(f"{n}. {text!r}")
        try:
            spec, note = _task_for(launch, text, task, limit)
        except ConfigError as e:
            failed += 1
            print("   cannot be read: " + str(e).replace("\n", "\n   "))
            continue
        print(f"   -> {spec or '-'}" + (f"  ({note})" if note else ""))
    if failed:
        print(f"mmrobot run: error: {failed} of {n} instructions cannot be read", file=sys.stderr)
        return 2
    return 0


_FLAG_MODES = {"resume": ("train",), "overwrite": ("train", "collect", "run")}


def _launch(args: argparse.Namespace) -> int:
    from mmrobot.core.errors import ConfigError
    from mmrobot.launch.schema import load_launch
    from mmrobot.launch.validate import check_launch

    launch = load_launch(args.launch, args.overrides, check_files=False)
    for flag, modes in _FLAG_MODES.items():
        if getattr(args, flag) and launch.mode not in modes:
            raise ConfigError(
                f"--{flag} applies in {' or '.join(modes)} mode; {launch.source} is in "
                f"{launch.mode} mode"
            )
    check_launch(launch, instructions=args.check or launch.mode == "run")
    print(f"{launch.source}: valid ({launch.mode} mode)")
    if args.check:
        return 0
    if launch.mode == "run":
        r = launch.run
        return run_instructions(
            launch,
            r.instructions or None,
            None,
            r.video,
            r.timing_png,
            r.results_json,
            overwrite=args.overwrite,
        )
    if launch.mode == "eval":
        return _eval(launch)
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
        if args.overwrite:
            argv.append("--overwrite")
        return cli.main(argv)
    # train: `mmrobot train`, with its refusal of a folder that holds a run
    argv = ["train", str(launch.path(launch.train.config)), *launch.train.overrides]
    argv += [f"--{flag}" for flag in ("resume", "overwrite") if getattr(args, flag)]
    return cli.main(argv)


def _eval(launch: LaunchFile) -> int:
    """``mmrobot eval`` of the launch file's policy, under its ``[safety]`` limits."""
    from rich.console import Console

    from mmrobot.train.eval import EvalSettings, evaluate

    e, source = launch.eval, launch.policy  # the schema requires [policy] in eval mode
    settings = EvalSettings(
        episodes=e.episodes,
        splits=tuple(e.splits),
        workers=e.workers,
        safety_limits=launch.safety.to_config(),
    )
    policy = launch.path(source.checkpoint or source.onnx or "")
    result = evaluate(str(policy), settings, progress=True)
    console = Console()
    if not console.is_terminal:  # a file or pipe: do not wrap the table at 80 columns
        console = Console(width=200)
    for table in result.tables():
        console.print(table)
    if e.results_json:
        console.print(f"results written to {result.write_json(e.results_json)}")
    if result.errors:
        first = result.errors[0]
        print(
            f"mmrobot launch: {len(result.errors)} of {len(result.episodes)} episodes crashed; "
            f"first: [{first.split} {first.task} seed {first.seed}] {first.error}",
            file=sys.stderr,
        )
        return 1
    return 0


def _doctor(args: argparse.Namespace) -> int:
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    from mmrobot.launch.doctor import run_checks

    results = run_checks()
    table = Table(title="mmrobot doctor")
    for col in ("check", "status", "found", "fix"):
        table.add_column(col, overflow="fold")
    style = {"ok": "green", "warn": "yellow", "fail": "red"}
    for r in results:
        # escaped: findings and fixes quote `pip install "mmrobot[train]"`, not markup
        table.add_row(r.name, f"[{style[r.status]}]{r.status}[/]", escape(r.found), escape(r.fix))
    Console().print(table)
    return 1 if any(r.status == "fail" for r in results) else 0
