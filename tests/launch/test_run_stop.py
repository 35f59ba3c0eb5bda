"""`mmrobot run` stopped by Ctrl-C (SIGINT) or SIGTERM: a controlled stop, the outputs of
every instruction so far (the interrupted one marked), exit 130; a stopped rig ends the
run; and a run never overwrites an earlier run's outputs."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import pytest
from launch_texts import run_launch

from mmrobot.cli import main
from mmrobot.launch.runner import output_paths, run_instructions
from mmrobot.launch.sim import Outcome

ROOT = Path(__file__).resolve().parents[2]
FIRST, SECOND, THIRD = (
    "put the red block in the bin",
    "lift the green block",
    "slide the blue cube to the left target",
)


def test_ctrl_c_in_a_real_run_writes_what_ran_and_exits_130(tmp_path):
    """`mmrobot run launch/sim_demo.toml` in its own process, SIGINT once the second
    instruction has started."""
    out = tmp_path / "out"
    cmd = [sys.executable, "-m", "mmrobot.cli", "run", "launch/sim_demo.toml"]
    for text in (FIRST, SECOND, THIRD):
        cmd += ["-i", text]
    cmd += ["run.max_seconds=3", "--json", str(out / "r.json"), "--video", str(out / "v.gif")]
    cmd += ["--timing-png", str(out / "t.png")]
    env = dict(os.environ, PYTHONUNBUFFERED="1", MUJOCO_GL=os.environ.get("MUJOCO_GL", "egl"))
    env["COLUMNS"] = "200"  # one line per message in rich's output
    proc = subprocess.Popen(
        cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    lines = []
    try:
        for line in proc.stdout:
            lines.append(line)
            if line.startswith(f"> {SECOND}"):
                proc.send_signal(signal.SIGINT)
                break
        rest, _ = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    text = "".join(lines) + rest
    assert proc.returncode == 130, text
    assert "Traceback" not in text
    assert "stopped by SIGINT: 1 instruction(s) finished, 1 interrupted, 1 not started" in text
    rows = json.loads((out / "r.json").read_text())
    # the first finished, the second was interrupted, the third never started
    assert [r["instruction"] for r in rows] == [FIRST, SECOND], text
    assert [r["interrupted"] for r in rows] == [False, True]
    assert rows[1]["reason"] == "signal SIGINT" and rows[1]["steps"] < 60
    assert (out / "v.gif").stat().st_size > 0 and (out / "t.png").stat().st_size > 0


def test_sigterm_mid_instruction_stops_the_simulated_run(tmp_path, checkpoint, monkeypatch):
    """In process, through the real SimSession: SIGTERM arrives at the second instruction's
    fifth command (the first has 20 ticks)."""
    from mmrobot.launch.sim import SimArm

    sent = 0
    send = SimArm.send

    def counting(self, command):
        nonlocal sent
        sent += 1
        if sent == 25:
            os.kill(os.getpid(), signal.SIGTERM)
        send(self, command)

    monkeypatch.setattr(SimArm, "send", counting)
    monkeypatch.chdir(tmp_path)
    path = tmp_path / "run.toml"
    path.write_text(run_launch(checkpoint, max_seconds=1.0))
    handler = signal.getsignal(signal.SIGTERM)
    code = main(["run", str(path), "-i", FIRST, "-i", SECOND, "-i", THIRD, "--json", "r.json"])
    assert code == 130
    assert signal.getsignal(signal.SIGTERM) is handler  # restored
    rows = json.loads(Path("r.json").read_text())
    assert [(r["steps"], r["interrupted"], r["reason"]) for r in rows] == [
        (20, False, "time limit"),
        (5, True, "signal SIGTERM"),
    ]


class FakeRobot:
    """A rig session whose first instruction is stopped by a signal or the watchdog."""

    def __init__(self, reason: str) -> None:
        self.reason = reason
        self.stopped: str | None = None
        self.ran: list[str] = []
        self.closed = False

    def execute(self, text, task=None, should_stop=None):
        self.ran.append(text)
        self.stopped = self.reason  # as RobotSession: the motors are off now
        return Outcome(
            text,
            "-",
            False,
            7,
            0.35,
            0.35,
            self.reason,
            [1.0],
            [2.0],
            {},
            [],
            interrupted=self.reason.startswith("signal"),
        )

    def close(self):
        self.closed = True


@pytest.mark.parametrize(
    ("reason", "code"), [("signal SIGINT", 130), ("watchdog: no tick completed in 5 periods", 1)]
)
def test_a_stopped_rig_ends_the_whole_run(tmp_path, capsys, reason, code):
    launch = SimpleNamespace(rig=object(), policy=None, loop=SimpleNamespace(rate_hz=20.0))
    robot = FakeRobot(reason)
    results = tmp_path / "r.json"
    got = run_instructions(launch, [FIRST, SECOND], results_json=str(results), session=robot)
    assert got == code
    assert robot.ran == [FIRST] and robot.closed  # the second never started
    rows = json.loads(results.read_text())
    assert len(rows) == 1 and rows[0]["reason"] == reason
    if code == 1:
        assert "the robot was stopped (watchdog" in capsys.readouterr().out


def test_outputs_of_a_later_run_go_into_a_new_numbered_folder(tmp_path):
    out = tmp_path / "out"
    paths = [out / "demo.gif", out / "results.json"]
    assert output_paths(paths) == paths  # nothing there yet
    out.mkdir()
    (out / "results.json").write_text("[]")
    assert output_paths(paths) == [out / "run-2" / "demo.gif", out / "run-2" / "results.json"]
    (out / "run-2").mkdir()
    (out / "run-2" / "demo.gif").write_bytes(b"GIF")
    assert output_paths(paths)[0] == out / "run-3" / "demo.gif"
    assert output_paths(paths, overwrite=True) == paths
    # outputs in another folder are not moved along
    elsewhere = tmp_path / "plots" / "t.png"
    assert output_paths([*paths, elsewhere])[2] == elsewhere


def test_a_second_run_keeps_the_first_runs_results(tmp_path, checkpoint, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    path = tmp_path / "run.toml"
    path.write_text(run_launch(checkpoint, max_seconds=0.2))
    argv = ["run", str(path), "-i", FIRST, "--json", "out/r.json", "--timing-png", "out/t.png"]
    assert main(argv) == 0
    first = Path("out/r.json").read_text()
    assert main(argv) == 0
    assert "this run's outputs there go into out/run-2/" in capsys.readouterr().out
    assert Path("out/r.json").read_text() == first
    assert sorted(p.name for p in Path("out/run-2").iterdir()) == ["r.json", "t.png"]
    t0 = Path("out/r.json").stat().st_mtime_ns
    time.sleep(0.01)
    assert main([*argv, "--overwrite"]) == 0
    assert Path("out/r.json").stat().st_mtime_ns > t0
    assert not Path("out/run-3").exists()
