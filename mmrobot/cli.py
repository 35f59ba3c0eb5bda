"""The ``mmrobot`` command.

Each subpackage contributes its subcommands through a module with a
``register(subparsers)`` function, listed in ``_COMMAND_MODULES``; this file only wires them.
Exit codes: 0 success, 1 runtime failure, 2 bad input.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

import mmrobot
from mmrobot.core.errors import ConfigError, DependencyNotInstalled, MmrobotError

# Modules that add subcommands. Import paths are stable; a module that is absent is skipped.
_COMMAND_MODULES = (
    "mmrobot.sync._cli",
    "mmrobot.drivers._cli",
    "mmrobot.envs._cli",
    "mmrobot.policies._cli",
    "mmrobot.train._cli",
    "mmrobot.deploy._cli",
    "mmrobot.launch._cli",
)

EXIT_OK, EXIT_RUNTIME, EXIT_BAD_INPUT = 0, 1, 2


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
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return EXIT_OK
    try:
        return int(args.func(args) or EXIT_OK)
    except (ConfigError, FileNotFoundError) as e:
        print(f"mmrobot {args.command}: error: {e}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except DependencyNotInstalled as e:
        print(f"mmrobot {args.command}: {e}", file=sys.stderr)
        return EXIT_RUNTIME
    except MmrobotError as e:
        print(f"mmrobot {args.command}: error: {e}", file=sys.stderr)
        return EXIT_RUNTIME
    except KeyboardInterrupt:
        print(f"mmrobot {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
