"""Launch files: validation before anything opens, overrides, and a simulated run through
the real control loop and safety layer."""

import json

import numpy as np
import pytest
from launch_texts import run_launch

from mmrobot.core import ConfigError
from mmrobot.launch.schema import load_launch


def write(tmp_path, text, name="l.toml"):
    (tmp_path / "launch").mkdir(exist_ok=True)
    path = tmp_path / "launch" / name
    path.write_text(text)
    return path


def test_errors_name_the_file_and_key_path(tmp_path, checkpoint):
    path = write(tmp_path, run_launch(checkpoint) + "\n[loop2]\nx = 1\n")
    with pytest.raises(ConfigError, match=r"l.toml.*\n.*loop2: Extra inputs are not permitted"):
        load_launch(path)
    path = write(tmp_path, run_launch(checkpoint).replace("rate_hz = 20.0", 'rate_hz = "fast"'))
    with pytest.raises(ConfigError, match=r"loop\.rate_hz: .*number.*got 'fast'"):
        load_launch(path)
    path = write(tmp_path, run_launch(tmp_path / "nope"))
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
    path = write(tmp_path, run_launch(checkpoint))
    launch = load_launch(
        path, ["loop.ensemble_decay=0.5", "sim.visuals=pretty", "run.max_seconds=2"]
    )
    assert launch.loop.ensemble_decay == 0.5 and launch.sim.visuals == "pretty"
    assert launch.run.max_seconds == 2.0
    with pytest.raises(ConfigError, match="safety.enabled"):
        load_launch(path, ["safety.enabled=false"])  # the safety layer cannot be switched off


def test_simulated_run_goes_through_loop_and_safety(tmp_path, checkpoint):
    from mmrobot.launch.sim import SimSession

    launch = load_launch(write(tmp_path, run_launch(checkpoint)), ["safety.max_velocity_rad_s=0.5"])
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
        kinds = session.safety.counts(by="kind")
        assert kinds.get("velocity_limit", 0) > 0  # a random policy is fast
        assert set(kinds) <= {
            "velocity_limit",
            "acceleration_limit",
            "joint_limit",
            "workspace",
            "gripper_force",
        }  # and nothing held: the policy's actions are finite and the joints stream is on
        # each event names its joint and numbers; the outcome counts them per reason
        assert all(e.where and e.value is not None for e in session.safety.events)
        assert outcome.safety == session.safety.counts()
        assert all(":" in reason for reason in outcome.safety)
        with pytest.raises(ConfigError, match="names no known block"):
            session.execute("dance a little")
    finally:
        session.close()


def test_run_command_prints_a_table_and_writes_results(tmp_path, checkpoint, capsys, monkeypatch):
    from mmrobot.cli import main
    from mmrobot.launch.sim import SimSession

    seen = []  # what the policy was given, and the task the scene was set up for
    execute = SimSession.execute

    def recording(self, instruction, task=None, **kwargs):
        outcome = execute(self, instruction, task, **kwargs)
        seen.append((self.loop.instruction, task))
        return outcome

    monkeypatch.setattr(SimSession, "execute", recording)
    path = write(tmp_path, run_launch(checkpoint))
    out = tmp_path / "res.json"
    text = "Could you please grab the LARGE green block?"
    code = main(["run", str(path), "--instruction", text, "--json", str(out)])
    assert code == 0
    assert "0/1 instructions succeeded" in capsys.readouterr().out
    rows = json.loads(out.read_text())
    assert len(rows) == 1 and rows[0]["task"].startswith("pick color=green size=large")
    # the reader only sets up the scene: the policy still gets the raw text
    assert seen == [(text, "pick color=green size=large")]


def test_safety_config_defaults_are_the_launch_files():
    """Evaluation's default limits (deploy) are those of a launch file without [safety]."""
    from mmrobot.deploy.safety import SafetyConfig
    from mmrobot.launch.schema import SafetySection

    section = SafetySection()
    config = SafetyConfig()
    for name in SafetyConfig.__dataclass_fields__:
        want = getattr(section, name)
        want = tuple(want) if isinstance(want, list) else want
        assert getattr(config, name) == want, name
    assert set(SafetyConfig.__dataclass_fields__) == set(SafetySection.model_fields)


def test_a_target_below_the_table_is_clamped_and_the_arm_slides_on():
    """Issue 13: the workspace box clamps; it no longer freezes an arm pushed at the table."""
    from mmrobot.deploy.safety import SafetyConfig, SimSafety
    from mmrobot.envs.tabletop import EnvConfig, TabletopEnv

    env = TabletopEnv(EnvConfig(action_mode="joint"))
    try:
        env.reset(seed=0, options={"task": "reach color=red size=small"})
        floor = 0.03
        path = SimSafety(env, SafetyConfig(workspace_low_m=(-0.2, -0.7, floor)))
        path.start(env.observation)
        xs, zs = [], []
        for k in range(40):  # down at full speed; after 20 ticks also +x at 4 mm a tick
            action = np.array([0.004 if k >= 20 else 0.0, 0.0, -0.02, 0, 0, 0, 1.0])
            obs = env.observation
            env.step(path.command(obs.t_ns, action, obs))
            tcp = env.scene.tcp_pose()[0]
            xs.append(tcp[0])
            zs.append(tcp[2])
    finally:
        env.close()
    layer = path.layer
    assert layer.n_holds == 0
    assert layer.counts().get("workspace:z_low", 0) >= 20
    assert min(zs) > floor - 0.003 and zs[-1] == pytest.approx(floor, abs=0.003)
    assert xs[-1] - xs[19] > 0.03  # it still moves in x along the floor
    e = next(e for e in layer.events if e.kind == "workspace")
    assert e.where == "z_low" and e.limit == floor and e.value < floor
