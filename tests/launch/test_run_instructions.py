"""`mmrobot run` reads every instruction before anything starts: --dry-run prints the task
spec each is read as and runs nothing; an unreadable one exits 2 with nothing written."""

import io
import re
from types import SimpleNamespace

import pytest
from launch_texts import run_launch

from mmrobot.cli import main
from mmrobot.launch import _cli


@pytest.fixture
def launch_file(tmp_path, monkeypatch, checkpoint):
    """A launch file whose simulated session must never start: starting one fails the test."""
    path = tmp_path / "run.toml"
    path.write_text(
        run_launch(checkpoint, run_extra='instructions = ["put the red block in the bin"]\n')
    )

    def no_session(*args, **kwargs):
        raise AssertionError("a session was started")

    monkeypatch.setattr("mmrobot.launch.sim.SimSession", no_session)
    return path


def test_dry_run_prints_each_reading_and_runs_nothing(launch_file, capsys):
    code = main(
        [
            "run",
            str(launch_file),
            "-i",
            "move your gripper over to the red block",
            "-i",
            "lift the red block on the table",
            "-i",
            "don't touch the red block, lift the blue one",
            "--dry-run",
        ]
    )
    out = capsys.readouterr().out
    assert code == 0, out
    assert "nothing runs" in out
    assert "1. 'move your gripper over to the red block'\n   -> reach color=red\n" in out
    assert "-> pick color=red  ('on the table' names nothing)" in out
    assert "-> pick color=blue  (excluded: the red block)" in out


def test_dry_run_reads_the_launch_files_instructions_a_file_and_stdin(
    launch_file, tmp_path, monkeypatch, capsys
):
    assert main(["run", str(launch_file), "--dry-run"]) == 0
    assert "-> place color=red" in capsys.readouterr().out
    lines = tmp_path / "mine.txt"
    lines.write_text("slide the blue cube to the left target\n\nhover over the green cube\n")
    assert main(["run", str(launch_file), "--file", str(lines), "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "-> push color=blue zone=left" in out and "-> reach color=green" in out
    bare = tmp_path / "bare.toml"  # no instructions: they are read from stdin
    bare.write_text(launch_file.read_text().replace("instructions = [", "# ["))
    monkeypatch.setattr("sys.stdin", io.StringIO("stack the red cube onto the blue cube\n\nsing\n"))
    assert main(["run", str(bare), "--dry-run"]) == 0  # an empty line ends
    assert "-> stack color=red base_color=blue" in capsys.readouterr().out


def test_dry_run_exits_2_when_an_instruction_cannot_be_read(launch_file, capsys):
    code = main(
        [
            "run",
            str(launch_file),
            "-i",
            "put the red block in the bin",
            "-i",
            "push the red block on the left",
            "-i",
            "sing",
            "--dry-run",
        ]
    )
    captured = capsys.readouterr()
    assert code == 2
    assert "-> place color=red" in captured.out
    assert "is ambiguous; it can be read as:\n     push color=red  (" in captured.out
    assert "     push color=red zone=left  (" in captured.out
    assert "3. 'sing'\n   cannot be read: instruction 'sing' names no known block" in captured.out
    assert "2 of 3 instructions cannot be read" in captured.err


def test_dry_run_with_an_explicit_task_prints_it(launch_file, capsys):
    argv = ["run", str(launch_file), "-i", "sing", "--task", "pick color=red size=small"]
    assert main([*argv, "--dry-run"]) == 0
    assert "-> pick color=red size=small  (from --task)" in capsys.readouterr().out
    assert main(["run", str(launch_file), "--task", "juggle", "--dry-run"]) == 2
    assert "unknown task 'juggle'" in capsys.readouterr().err


def test_a_robot_run_reads_no_task_and_passes_the_text_through():
    robot = SimpleNamespace(rig=object())
    assert _cli._task_for(robot, "sing", None) == (
        None,
        "a robot runs the text as given; no task is read",
    )
    assert _cli._task_for(robot, "sing", "pick color=red")[0] == "pick color=red"


@pytest.mark.parametrize(
    ("instructions", "message"),
    [
        (["lift the red block", "sing"], "instruction 2 of 2: instruction 'sing' names no known"),
        (["push the red block on the left"], "instruction 1 of 1: .* is ambiguous"),
        ([""], "instruction 1 of 1: instruction '' is empty"),
        (["   "], "is empty"),
    ],
)
def test_an_unreadable_instruction_exits_2_before_anything_is_written(
    launch_file, tmp_path, capsys, instructions, message
):
    results = tmp_path / "out" / "results.json"
    results.parent.mkdir()
    results.write_text("earlier results")
    argv = ["run", str(launch_file), "--json", str(results), "--video", str(tmp_path / "v.gif")]
    for text in instructions:
        argv += ["-i", text]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("mmrobot run: error: ")
    assert re.search(message, err), err
    assert "nothing ran" in err
    assert results.read_text() == "earlier results"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out", "run.toml"]
