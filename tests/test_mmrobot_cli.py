"""The mmrobot command: every subcommand the design names exists, bad input exits 2."""

import pytest

from mmrobot.cli import build_parser, main

COMMANDS = [
    "collect",
    "train",
    "eval",
    "export",
    "run",
    "launch",
    "record",
    "replay",
    "emulate",
    "plot",
    "bench",
    "doctor",
    "hil",
    "rig",
    "policy",
    "release",
]


def test_every_subcommand_is_registered_with_help_and_an_example():
    sub = next(a for a in build_parser()._actions if a.dest == "command")
    assert set(COMMANDS) <= set(sub.choices)
    for name in COMMANDS:
        text = sub.choices[name].format_help()
        assert text.startswith(f"usage: mmrobot {name}"), name
        assert "example" in text.lower(), f"mmrobot {name} --help shows no example"


def test_bench_lists_the_benchmarks_and_rejects_unknown_names(capsys):
    assert main(["bench", "--list"]) == 0
    assert {"sync", "policy", "sim", "drivers", "deploy", "loop"} <= set(
        capsys.readouterr().out.split()
    )
    assert main(["bench", "warp-drive"]) == 2
    assert "unknown benchmark(s) ['warp-drive']" in capsys.readouterr().err


@pytest.mark.parametrize(
    "argv",
    [
        ["run", "launch/nope.toml"],
        ["train", "nope.toml"],
        ["launch", "launch/nope.toml", "--check"],
    ],
)
def test_missing_files_are_bad_input(argv, capsys):
    assert main(argv) == 2
    assert "not found" in capsys.readouterr().err
