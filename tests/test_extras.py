"""Install extras: the table in mmrobot.core.extras is pyproject.toml's, and a command whose
extra is missing exits 2 with the pip command that installs it, before it starts.

Missing modules are simulated here (``is_present`` patched); tests/launch/test_robot_env.py
runs the same commands in a real environment without torch, gymnasium and Open3D."""

from __future__ import annotations

import re
from pathlib import Path
from types import SimpleNamespace

import pytest

import mmrobot.core.deps as deps
import mmrobot.core.extras as extras
from mmrobot.cli import COMMAND_NEEDS, build_parser, main
from mmrobot.core._toml import tomllib
from mmrobot.core.errors import DependencyNotInstalled

ROOT = Path(__file__).resolve().parents[1]
# Commands that run on the core install (or check their needs later: run and launch read
# them from their launch file). A new command must be listed here or in COMMAND_NEEDS.
CORE_COMMANDS = {"emulate", "rig", "record", "replay", "doctor", "run", "launch"}


def _pyproject() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]


def _names(requirements: list[str]) -> tuple[str, ...]:
    """Distribution names of PEP 508 requirements, without those for older Pythons."""
    out = []
    for r in requirements:
        if "python_version <" in r:
            continue
        out.append(re.match(r"[A-Za-z0-9_.\-]+", r).group(0).lower())
    return tuple(out)


def test_the_extras_table_is_pyproject_toml():
    project = _pyproject()
    assert _names(project["dependencies"]) == extras.CORE.distributions
    optional = project["optional-dependencies"]
    for name, extra in extras.EXTRAS.items():
        assert _names(optional[name]) == extra.distributions, name
    assert optional["all"] == [f"mmrobot[{','.join(extras.EXTRAS)}]"]
    assert set(optional) == {*extras.EXTRAS, "all", "dev"}
    for dist in {d for e in (extras.CORE, *extras.EXTRAS.values()) for d in e.distributions}:
        assert dist in extras.MODULES, f"no import name for {dist}"


def test_core_and_robot_install_no_training_stack():
    heavy = {"torch", "open3d", "gymnasium"}
    assert not heavy & set(extras.CORE.modules)
    assert not heavy & set(extras.EXTRAS["robot"].modules)


def test_every_command_declares_what_it_needs():
    sub = next(a for a in build_parser()._actions if a.dest == "command")
    assert set(sub.choices) == CORE_COMMANDS | set(COMMAND_NEEDS)


@pytest.fixture
def without(monkeypatch):
    """without(*modules): make those modules look uninstalled to the extras checks."""

    def hide(*modules: str) -> None:
        real = extras.is_present
        monkeypatch.setattr(extras, "is_present", lambda m: m not in modules and real(m))

    return hide


def test_require_extras_names_the_extra_and_the_missing_modules(without):
    without("torch", "gymnasium")
    with pytest.raises(DependencyNotInstalled) as e:
        extras.require_extras(["sim", "train"], "mmrobot release")
    msg = str(e.value)
    assert 'needs the "sim" and "train" extras (gymnasium, torch not installed)' in msg
    assert 'pip install "mmrobot[sim,train]"' in msg
    extras.require_extras([extras.Need("train", ("matplotlib",))], "mmrobot plot")  # present


def test_a_need_names_a_real_extra_and_its_modules():
    with pytest.raises(ValueError, match="unknown extra 'gpu'"):
        extras.Need("gpu")
    with pytest.raises(ValueError, match=r"does not provide \['torch'\]"):
        extras.Need("robot", ("torch",))


def test_extras_for_module_and_require_hint():
    assert extras.extras_for_module("torch.nn") == ("train",)
    assert extras.extras_for_module("mujoco") == ("robot", "sim")
    assert extras.extras_for_module("cv2") == ("core",)
    assert extras.extras_for_module("warp_drive") == ()


def test_require_says_which_extra_installs_a_missing_module(monkeypatch):
    def absent(name):
        raise ModuleNotFoundError(f"No module named {name!r}", name=name)

    monkeypatch.setattr(deps, "importlib", SimpleNamespace(import_module=absent))
    with pytest.raises(DependencyNotInstalled) as e:
        deps.require("open3d", "lidar filtering")
    assert 'Fix: pip install "mmrobot[pointcloud]"; its wheel also needs' in str(e.value)
    with pytest.raises(DependencyNotInstalled, match=r'pip install "mmrobot\[robot\]" or pip'):
        deps.require("mujoco")
    with pytest.raises(DependencyNotInstalled, match="Fix: pip install warp_drive$"):
        deps.require("warp_drive")


# argv of each command with its extra missing: (argv, modules to hide, extra in the hint)
CASES = [
    (["train", "policies/train_default.toml"], ("torch",), "train"),
    (["export", "policies/release", "--out", "x"], ("onnx",), "train"),
    (["policy", "info", "policies/default.toml"], ("torch",), "train"),
    (["plot", "runs/x"], ("matplotlib",), "train"),
    (["collect", "--episodes", "1", "--out", "x.h5"], ("gymnasium",), "sim"),
    (["eval", "--policy", "policies/release", "--episodes", "1"], ("torch",), "train"),
    (["eval", "--policy", "expert", "--episodes", "1"], ("gymnasium",), "sim"),
    (["release", "--toy"], ("torch",), "train"),
    (["hil"], ("gymnasium",), "sim"),
    (["bench", "sync"], ("torch",), "train"),
    (["dataset", "export", "d.h5", "out", "--format", "lerobot"], ("pyarrow",), "lerobot"),
    (["view", "run1.mcap"], ("rerun",), "viz"),
    (["view", "demos.h5", "--episode", "2"], ("h5py",), "sim"),
    (["run", "launch/sim_demo.toml", "-i", "lift the red block"], ("gymnasium",), "sim"),
    (["run", "launch/hil.toml", "-i", "lift the red block"], ("torch",), "train"),
    (["run", "launch/hil.toml", "policy.checkpoint=", "policy.onnx=x"], ("mujoco",), "robot"),
    (["launch", "launch/sim_demo.toml", "--check"], ("mujoco",), "sim"),
]


@pytest.mark.parametrize("argv,hidden,extra", CASES, ids=lambda x: " ".join(x)[:40])
def test_a_command_without_its_extra_exits_2_with_the_hint(
    argv, hidden, extra, without, capsys, monkeypatch
):
    monkeypatch.chdir(ROOT)
    without(*hidden)
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert f'pip install "mmrobot[{extra}' in err, err
    assert "Traceback" not in err


def test_commands_that_need_no_extra_are_not_stopped(without, capsys):
    without("torch", "gymnasium", "mujoco", "open3d", "h5py", "matplotlib")
    assert main(["bench", "--list"]) == 0
    assert main(["collect", "--list-tasks"]) == 0
    assert "pick" in capsys.readouterr().out


def test_an_unchecked_import_of_an_extra_module_exits_2_with_the_hint(monkeypatch, capsys):
    """The CLI's net under the checks: a ModuleNotFoundError for an extra's module."""

    def needs_torch(args):
        raise ModuleNotFoundError("No module named 'torch'", name="torch")

    parser = build_parser()
    monkeypatch.setattr("mmrobot.cli.build_parser", lambda: parser)
    parser._subparsers._group_actions[0].choices["doctor"].set_defaults(func=needs_torch)
    assert main(["doctor"]) == 2
    err = capsys.readouterr().err
    assert 'cannot import torch. Install: pip install "mmrobot[train]"' in err


def test_a_missing_module_no_extra_provides_is_not_hidden(monkeypatch):
    def broken(args):
        raise ModuleNotFoundError("No module named 'warp_drive'", name="warp_drive")

    parser = build_parser()
    monkeypatch.setattr("mmrobot.cli.build_parser", lambda: parser)
    parser._subparsers._group_actions[0].choices["doctor"].set_defaults(func=broken)
    with pytest.raises(ModuleNotFoundError):
        main(["doctor"])
