"""The ``mmrobot`` command.

Each subpackage contributes its subcommands through a module with a
``register(subparsers)`` function, listed in ``_COMMAND_MODULES``; this file only wires them.
Exit codes: 0 success, 1 runtime failure, 2 bad input or a missing install extra, 130
stopped by Ctrl-C (SIGINT or SIGTERM). ``KEY.PATH=VALUE`` overrides may stand anywhere after
the subcommand.

Before a command runs, the extras it needs (:data:`COMMAND_NEEDS`, :mod:`mmrobot.core.extras`)
are checked; one that is missing stops it with the pip command that installs it (exit 2).
``run`` and ``launch`` need what their launch file composes (a rig, a simulation, a torch
checkpoint or an ONNX export): :func:`mmrobot.launch.validate.check_launch` checks that once
the file is read.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

import mmrobot
from mmrobot.core.errors import (
    ConfigError,
    DependencyNotInstalled,
    MmrobotError,
    OutputExistsError,
)
from mmrobot.core.extras import Need, extras_for_module, install_hint, require_extras

# Modules that add subcommands. Import paths are stable; a module that is absent is skipped.
_COMMAND_MODULES = (
    "mmrobot.sync._cli",
    "mmrobot.drivers._cli",
    "mmrobot.envs._cli",
    "mmrobot.policies._cli",
    "mmrobot.train._cli",
    "mmrobot.deploy._cli",
    "mmrobot.launch._cli",
    "mmrobot.calibrate._cli",
    "mmrobot.viz._cli",
)

EXIT_OK, EXIT_RUNTIME, EXIT_BAD_INPUT, EXIT_INTERRUPTED = 0, 1, 2, 130


def _is_onnx_export(path: str | None) -> bool:
    """Whether ``--policy PATH`` names an ONNX export (its folder, ``.onnx`` or ``.json``)."""
    if not path:
        return False
    p = Path(path)
    return p.suffix in (".onnx", ".json") or (p / "policy.json").is_file()


def _eval_needs(args: argparse.Namespace) -> list[Need | str]:
    if args.list_tasks:
        return []
    torch_free = args.policy == "expert" or _is_onnx_export(args.policy)
    return ["sim"] if torch_free else ["sim", "train"]


# What each command needs beyond the core install: extras (every module of each) or a Need
# (some modules of one), or a function of the parsed arguments. Commands not listed (emulate,
# rig, record, replay, doctor) run on the core install; `run` and `launch` check their launch
# file's needs in check_launch. Modules used only by some options (open3d for lidar
# filtering, cv2 codecs) are checked where they are imported (mmrobot.core.deps.require).
COMMAND_NEEDS: dict[str, Sequence[Need | str] | Callable[[argparse.Namespace], Sequence]] = {
    "collect": lambda a: [] if a.list_tasks else ["sim"],
    "policy": ["train"],  # `policy info` builds the model to count its parameters
    "train": ["train"],
    "plot": [Need("train", ("matplotlib",))],
    "eval": _eval_needs,
    "release": lambda a: [] if a.check else ["sim", "train"],
    "export": [Need("train", ("torch", "onnx", "onnxscript"))],
    "hil": ["sim"],
    "calibrate": ["sim"],  # the arm's kinematic model, and the simulated robot with --sim
    "bench": lambda a: [] if a.list else ["sim", "train"],
    "dataset": ["lerobot"],  # export --format lerobot: h5py, pyarrow, PyAV
    "view": lambda a: (
        ["viz", Need("sim", ("h5py",))] if a.file.endswith((".h5", ".hdf5")) else ["viz"]
    ),
}


def command_needs(args: argparse.Namespace) -> list[Need | str]:
    """The extras ``args.command`` needs (:data:`COMMAND_NEEDS`)."""
    needs = COMMAND_NEEDS.get(args.command, ())
    return list(needs(args) if callable(needs) else needs)


# Examples shown under `mmrobot COMMAND --help` for commands whose module gives none.
_EXAMPLES = {
    "emulate": "mmrobot emulate all\nmmrobot emulate dynamixel --servos 1-6:XM430-W350,7:XL330-M288\n"
    "mmrobot emulate ft300 --wrench 0,0,9.81,0,0,0 --drop-rate 0.001 --unplug-after 5",
    "rig": "mmrobot rig drivers/robot_example.toml\nmmrobot rig drivers/emulated_rig.toml --run 3",
    "record": "mmrobot record drivers/emulated_rig.toml --duration 10 --out run1.mcap\n"
    "mmrobot record drivers/robot_example.toml --duration 30 --out run2.mcap --image-format jpeg",
    "replay": "mmrobot replay run1.mcap --info\nmmrobot replay run1.mcap --fast\n"
    "mmrobot replay crashed.mcap --recover fixed.mcap",
    "collect": "mmrobot collect --list-tasks\n"
    "mmrobot collect --tasks reach 'pick color=red' --episodes 50 --out data/demos.h5 --workers 2\n"
    "mmrobot collect --report --seeds 200 --workers 2",
    "policy": "mmrobot policy info policies/default.toml\nmmrobot policy info policies/release\n"
    "mmrobot policy init --config policies/default.toml --out runs/untrained",
    "eval": "mmrobot eval --list-tasks\n"
    "mmrobot eval --policy policies/release --episodes 10 --workers 2 --json eval.json\n"
    "mmrobot eval --policy out/export --tasks reach --splits train,no_camera --video videos/",
    "export": "mmrobot export policies/release --out out/export\n"
    "mmrobot export policies/release --out out/export_int8 --quantize int8",
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="mmrobot",
        description="Multimodal robot control: sensors, synchronization, fusion policies, "
        "simulation, training and deployment.",
    )
    parser.add_argument("--version", action="version", version=f"mmrobot {mmrobot.__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in _COMMAND_MODULES:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as e:
            if e.name and (name == e.name or name.startswith(e.name + ".")):
                continue  # that subpackage has no commands yet
            raise
        module.register(sub)
    for name, command in sub.choices.items():
        if command.epilog is None and name in _EXAMPLES:
            command.epilog = "examples:\n  " + _EXAMPLES[name].replace("\n", "\n  ")
            command.formatter_class = argparse.RawDescriptionHelpFormatter
    return parser


def _is_override(arg: str) -> bool:
    key, sep, _ = arg.partition("=")
    return bool(sep) and bool(key) and not arg.startswith("-")


def parse_args(parser: argparse.ArgumentParser, argv: Sequence[str] | None) -> argparse.Namespace:
    """Parse ``argv``, taking ``KEY.PATH=VALUE`` words after an option too.

    argparse fills a ``nargs="*"`` positional from the first run of positionals only, so
    ``mmrobot launch FILE --check key=value`` would leave ``key=value`` unrecognized.
    """
    args, extra = parser.parse_known_args(argv)
    if extra:
        if hasattr(args, "overrides") and all(_is_override(x) for x in extra):
            args.overrides = [*args.overrides, *extra]
        else:
            parser.parse_args(argv)  # argparse's own message and exit 2
    return args


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parse_args(parser, argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return EXIT_OK
    try:
        require_extras(command_needs(args), "this command")
        return int(args.func(args) or EXIT_OK)
    except (ConfigError, FileNotFoundError, OutputExistsError) as e:
        print(f"mmrobot {args.command}: error: {e}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except DependencyNotInstalled as e:
        print(f"mmrobot {args.command}: {e}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except ModuleNotFoundError as e:
        # A module of an extra imported where no check expected it: the same hint, no traceback.
        extras = extras_for_module(e.name or "")
        if not extras or extras == ("core",):
            raise
        print(
            f"mmrobot {args.command}: cannot import {e.name}. Install: "
            + " or ".join(install_hint([x]) for x in extras),
            file=sys.stderr,
        )
        return EXIT_BAD_INPUT
    except MmrobotError as e:
        print(f"mmrobot {args.command}: error: {e}", file=sys.stderr)
        return EXIT_RUNTIME
    except KeyboardInterrupt:
        print(f"mmrobot {args.command}: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED


if __name__ == "__main__":
    sys.exit(main())
