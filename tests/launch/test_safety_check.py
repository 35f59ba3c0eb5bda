"""Issue 13: no key, override or value loosens a safety limit past its bound, and
``mmrobot launch FILE --check`` refuses what ``mmrobot run`` would.

The robot cases use launch/robot_example.toml and drivers/robot_example.toml as shipped,
with their serial ports pointed at /dev/null (a character device), so that the override
under test is the only problem (the ``robot`` and ``sim`` fixtures are in conftest.py).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from mmrobot.cli import main
from mmrobot.core import ConfigError


def check(path: Path, *overrides: str) -> int:
    return main(["launch", str(path), *overrides, "--check"])


def test_the_shipped_files_pass_as_they_are(robot, sim, capsys):
    assert check(robot) == 0 and check(sim) == 0
    assert "valid (run mode)" in capsys.readouterr().out


# (override, what the message must contain: the key, the value and the bound)
ROBOT_CASES = [
    # the four of the issue, and their relatives
    ("safety.max_velocity_rad_s=inf", ["safety.max_velocity_rad_s = inf", "3.142 rad/s"]),
    ("safety.max_acceleration_rad_s2=inf", ["max_acceleration_rad_s2 = inf", "40 rad/s^2"]),
    ("safety.max_gripper_force_n=inf", ["max_gripper_force_n = inf", "the bound is 25 N"]),
    (
        "safety.workspace_low_m=[-inf,-inf,-inf]",
        ["safety.workspace_low_m = [-inf, -inf, -inf]", "the bound is [-0.98, -0.98, -0.9] m"],
    ),
    ("safety.required_streams=[]", ["safety.required_streams = []", "at least ['joints']"]),
    (
        'safety.required_streams=["ft"]',
        ["safety.required_streams = ['ft']", "joint stream 'joints'"],
    ),
    (
        "loop.watchdog_periods=1000000",
        ["loop.watchdog_periods = 1000000", "the bound is 0.5 s (50 periods at 100 Hz)"],
    ),
    ("loop.watchdog_periods=51", ["loop.watchdog_periods = 51", "0.51 s", "0.5 s"]),
    # nan compares false with every bound: it must not pass as "no limit"
    ("safety.max_velocity_rad_s=nan", ["safety.max_velocity_rad_s = nan", "3.142 rad/s"]),
    # negative and zero limits (run refused them; --check now does too)
    ("safety.max_velocity_rad_s=-0.5", ["max_velocity_rad_s = -0.5", "finite and > 0"]),
    ("safety.max_acceleration_rad_s2=0", ["max_acceleration_rad_s2 = 0", "finite and > 0"]),
    ("safety.max_gripper_force_n=-1", ["max_gripper_force_n = -1", "finite and > 0"]),
    # looser than the hardware
    (
        "safety.max_velocity_rad_s=[0.5,0.5,0.5,0.5,0.5,4]",
        ["max_velocity_rad_s = [0.5, 0.5, 0.5, 0.5, 0.5, 4]", "tool_roll 4 rad/s", "3.142 rad/s"],
    ),
    (
        "safety.joint_low_rad=[-2.7,-1,0.1,-1,-1,-1]",
        ["joint_low_rad = [-2.7, -1, 0.1, -1, -1, -1]", "shoulder_pan -2.7 rad", "-2.6 rad"],
    ),
    (  # the arm model allows the elbow 2.8 rad; the rig's servo only 2.4
        "safety.joint_high_rad=[1,1,2.6,1,1,1]",
        ["joint_high_rad = [1, 1, 2.6, 1, 1, 1]", "elbow 2.6 rad", "2.4 rad", "servo 3"],
    ),
    (  # the arm model's elbow range starts at 0.05 rad
        "safety.joint_low_rad=[-1,-1,0,-1,-1,-1]",
        ["joint_low_rad = [-1, -1, 0, -1, -1, -1]", "elbow 0 rad", "0.05 rad"],
    ),
    ("safety.max_gripper_force_n=26", ["max_gripper_force_n = 26", "the bound is 25 N"]),
    (
        "safety.workspace_high_m=[1.2,0.45,0.55]",
        ["workspace_high_m = [1.2, 0.45, 0.55]", "x 1.2 m", "[0.98, 0.98, 1.06] m"],
    ),
    (
        "safety.workspace_high_m=[0.1,0.45,0.55]",
        ["workspace_low_m = [0.15, -0.45, 0.03], workspace_high_m = [0.1, 0.45, 0.55]", "0.1 m"],
    ),
    ("safety.joint_low_rad=[-1,-1]", ["safety.joint_low_rad = [-1, -1]", "needs 6 values"]),
    (
        'safety.required_streams=["joints","camera9"]',
        ["'camera9' is not a stream", "['ft', 'joints', 'lidar', 'scene_cam', 'wrist_cam']"],
    ),
    # rates that `run` refuses
    ("loop.rate_hz=50", ["loop.rate_hz = 50", "loop.policy_rate_hz = 20"]),
    ("loop.rate_hz=inf", ["loop.rate_hz", "finite number", "got inf"]),
]


@pytest.mark.parametrize(("override", "expected"), ROBOT_CASES, ids=[c[0] for c in ROBOT_CASES])
def test_robot_check_refuses_a_loosening_override(robot, capsys, override, expected):
    assert check(robot, override) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    for text in expected:
        assert text in err, (text, err)
    assert err.count("\n  ") == 1, err  # this override is the only problem


SIM_CASES = [
    ("safety.max_velocity_rad_s=inf", ["max_velocity_rad_s = inf", "3.142 rad/s"]),
    ("safety.workspace_low_m=[-0.2,-0.7,-1]", ["z -1 m", "the bound is [-0.98, -0.98, -0.9] m"]),
    ("loop.watchdog_periods=11", ["loop.watchdog_periods = 11", "10 periods at 20 Hz"]),
    (  # a whole multiple of the policy rate, but not the simulation's control rate
        "loop.rate_hz=40",
        ["loop.rate_hz = 40", "control rate is 20 Hz"],
    ),
    ("loop.rate_hz=50", ["loop.rate_hz = 50", "loop.policy_rate_hz = 20"]),
]


@pytest.mark.parametrize(("override", "expected"), SIM_CASES, ids=[c[0] for c in SIM_CASES])
def test_sim_check_refuses_a_loosening_override(sim, capsys, override, expected):
    assert check(sim, override) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    for text in expected:
        assert text in err, (text, err)


def test_overrides_that_tighten_are_accepted_and_used(robot):
    from mmrobot.deploy.safety_bounds import bounds_for_model
    from mmrobot.envs.scene import DEFAULT_SCENE_PATH
    from mmrobot.launch.schema import load_launch
    from mmrobot.launch.sim import safety_limits_for

    tighter = [
        "safety.max_velocity_rad_s=0.3",
        "safety.max_acceleration_rad_s2=[4,4,4,2,2,2]",
        "safety.joint_low_rad=[-2.5,-1.7,0.1,-2.5,-2.0,-2.9]",
        "safety.joint_high_rad=[2.5,1.7,2.3,2.5,2.0,2.9]",
        "safety.workspace_low_m=[0.2,-0.3,0.05]",
        "safety.workspace_high_m=[0.6,0.3,0.4]",
        "safety.max_gripper_force_n=10",
        'safety.required_streams=["joints","ft","lidar"]',
        "loop.watchdog_periods=50",  # 0.5 s at 100 Hz: the bound itself is allowed
    ]
    assert check(robot, *tighter) == 0
    launch = load_launch(robot, tighter)
    import mujoco

    from mmrobot.drivers.rig import load_rig

    servos = load_rig(launch.path(launch.rig.file)).actuators[0].servos[:-1]
    scene = type("Arm", (), {})()  # what safety_limits_for reads of a Scene
    scene.model = mujoco.MjModel.from_xml_path(str(DEFAULT_SCENE_PATH))
    scene.path = DEFAULT_SCENE_PATH
    scene.arm_range = None
    limits = safety_limits_for(scene, launch.safety, servos)
    assert limits.max_velocity_rad_s == (0.3,) * 6
    assert limits.max_acceleration_rad_s2 == (4.0, 4.0, 4.0, 2.0, 2.0, 2.0)
    assert limits.joint_low_rad[2] == 0.1 and limits.joint_high_rad[2] == 2.3
    assert limits.workspace_high_m == (0.6, 0.3, 0.4) and limits.max_gripper_force_n == 10.0
    assert limits.required_streams == ("joints", "ft", "lidar")
    # without overrides, the joint limits are the arm model's narrowed by the rig's servos
    default = safety_limits_for(scene, load_launch(robot).safety, servos)
    assert default.joint_low_rad[2] == pytest.approx(0.05) and default.joint_high_rad[2] == 2.4
    assert bounds_for_model(scene.model, servos).joint_high_rad == default.joint_high_rad


def test_run_refuses_what_check_refuses_without_the_launch_file():
    """The limits are refused where the safety path is built, not only by --check."""
    from mmrobot.deploy.safety import SafetyConfig, SimSafety
    from mmrobot.envs.tabletop import EnvConfig, TabletopEnv

    env = TabletopEnv(EnvConfig(action_mode="joint"), render_mode=None)
    try:
        with pytest.raises(ConfigError, match=r"max_velocity_rad_s = inf: .*3\.142 rad/s"):
            SimSafety(env, SafetyConfig(max_velocity_rad_s=float("inf")))
        SimSafety(env, SafetyConfig(max_velocity_rad_s=1.0))  # tighter: fine
    finally:
        env.close()


def test_a_serial_port_must_be_a_character_device(robot, tmp_path, capsys):
    rig = tmp_path / "rig.toml"
    plain = tmp_path / "not_a_port"
    plain.write_text("")
    rig.write_text(rig.read_text().replace('port = "/dev/null"', f'port = "{plain}"', 1))
    assert check(robot) == 2
    err = capsys.readouterr().err
    assert f"port '{plain}' of 'base_lidar'" in err and "is not a character device" in err
    # `mmrobot rig FILE` checks the ports as `launch --check` does: listing, then exit 2
    assert main(["rig", str(rig)]) == 2
    out, err = capsys.readouterr()
    assert "joints" in out and "is not a character device" in err and "Traceback" not in err
