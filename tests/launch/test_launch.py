"""Launch files: validation before anything opens, overrides, and a simulated run through
the real control loop and safety layer."""

import json

import numpy as np
import pytest

from mmrobot.core import ConfigError
from mmrobot.launch.schema import load_launch

BASE = """
mode = "run"
[sim]
seed = 3
[policy]
checkpoint = "{ckpt}"
[loop]
rate_hz = 20.0
[run]
max_seconds = 0.5
"""


def write(tmp_path, text, name="l.toml"):
    (tmp_path / "launch").mkdir(exist_ok=True)
    path = tmp_path / "launch" / name
    path.write_text(text)
    return path


def test_errors_name_the_file_and_key_path(tmp_path, checkpoint):
    path = write(tmp_path, BASE.format(ckpt=checkpoint) + "\n[loop2]\nx = 1\n")
    with pytest.raises(ConfigError, match=r"l.toml.*\n.*loop2: Extra inputs are not permitted"):
        load_launch(path)
    path = write(
        tmp_path, BASE.format(ckpt=checkpoint).replace("rate_hz = 20.0", 'rate_hz = "fast"')
    )
    with pytest.raises(ConfigError, match=r"loop\.rate_hz: .*number.*got 'fast'"):
        load_launch(path)
    path = write(tmp_path, BASE.format(ckpt=tmp_path / "nope"))
    with pytest.raises(ConfigError, match=r"policy\.checkpoint = .*nope.* does not exist"):
        load_launch(path)
    path = write(tmp_path, 'mode = "run"\n[sim]\n')
    with pytest.raises(ConfigError, match="needs a \\[policy\\] section"):
        load_launch(path)


def test_a_missing_serial_port_is_reported_before_anything_opens(tmp_path, checkpoint):
    rig = tmp_path / "rig.toml"
    rig.write_text(
        'name = "arm"\n[[actuator]]\nkind = "dynamixel"\nname = "arm_goal"\n'
        'port = "/dev/ttyUSB_mmrobot_missing"\nbaud_rate = 1000000\n'
        'servos = [{id = 1, model = "XM430-W350", joint = "j1"}]\n'
    )
    path = write(
        tmp_path,
        f'mode = "run"\n[rig]\nfile = "{rig}"\nactuator = "arm_goal"\n'
        f'[policy]\ncheckpoint = "{checkpoint}"\n',
    )
    with pytest.raises(ConfigError, match=r"ttyUSB_mmrobot_missing.*does not exist"):
        load_launch(path)


def test_overrides_set_any_key(tmp_path, checkpoint):
    path = write(tmp_path, BASE.format(ckpt=checkpoint))
    launch = load_launch(
        path, ["loop.ensemble_decay=0.5", "sim.visuals=pretty", "run.max_seconds=2"]
    )
    assert launch.loop.ensemble_decay == 0.5 and launch.sim.visuals == "pretty"
    assert launch.run.max_seconds == 2.0
    with pytest.raises(ConfigError, match="safety.enabled"):
        load_launch(path, ["safety.enabled=false"])  # the safety layer cannot be switched off


def test_simulated_run_goes_through_loop_and_safety(tmp_path, checkpoint):
    from mmrobot.launch.sim import SimSession

    launch = load_launch(
        write(tmp_path, BASE.format(ckpt=checkpoint)), ["safety.max_velocity_rad_s=0.5"]
    )
    session = SimSession(launch)
    try:
        qs = []
        outcome = session.execute(
            "put the red block in the bin",
            on_step=lambda i, info: qs.append(session.scene.arm_qpos.copy()),
        )
        assert outcome.task.startswith("place color=red")
        assert outcome.steps == 10 and not outcome.success and outcome.reason == "time limit"
        assert len(outcome.policy_latency_ms) == 10
        # no joint moved faster than the safety limit allows: 0.5 rad/s is 0.025 rad a tick
        steps = np.abs(np.diff(np.stack(qs), axis=0))
        assert len(qs) == 10 and steps.max() <= 0.025 * 1.2
        assert session.safety.counts().get("velocity_limit", 0) > 0  # a random policy is fast
        assert session.safety.events == [] or all(
            e.kind in ("velocity_limit", "acceleration_limit", "joint_limit", "hold")
            for e in session.safety.events
        )
        with pytest.raises(ConfigError, match="names no known block"):
            session.execute("dance a little")
    finally:
        session.close()


def test_run_command_prints_a_table_and_writes_results(tmp_path, checkpoint, capsys):
    from mmrobot.cli import main

    path = write(tmp_path, BASE.format(ckpt=checkpoint))
    out = tmp_path / "res.json"
    code = main(
        [
            "run",
            str(path),
            "--instruction",
            "grab the large green block",
            "--instruction",
            "sing",
            "--json",
            str(out),
        ]
    )
    assert code == 0
    text = capsys.readouterr().out
    assert "names no known block" in text and "0/1 instructions succeeded" in text
    rows = json.loads(out.read_text())
    assert len(rows) == 1 and rows[0]["task"].startswith("pick color=green size=large")
