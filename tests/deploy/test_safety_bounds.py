"""Bounds of the safety limits, derived from the arm model, a rig's servos and the ceilings."""

import math
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from mmrobot.core import ConfigError
from mmrobot.deploy.safety import SafetyConfig, limits_for_arm
from mmrobot.deploy.safety_bounds import (
    MAX_ACCELERATION_RAD_S2,
    MAX_VELOCITY_RAD_S,
    bounds_for_model,
    safety_problems,
    watchdog_problem,
)

mujoco = pytest.importorskip("mujoco")
SCENE = Path(__file__).resolve().parents[2] / "envs" / "tabletop.xml"


def model(custom: str = ""):
    if not custom:
        return mujoco.MjModel.from_xml_path(str(SCENE))
    xml = SCENE.read_text().replace("<actuator>", f"<custom>{custom}</custom>\n  <actuator>", 1)
    return mujoco.MjModel.from_xml_string(xml)


def test_bounds_of_the_packaged_arm():
    b = bounds_for_model(model())
    # link offsets of envs/tabletop.xml from the shoulder_pan anchor (z 0.08) to the TCP:
    # link2 0.06, link3 0.36, link4 0.32, link5 0.04, link6 0.04, hand 0.01, tcp_site 0.1
    reach = 0.06 + 0.36 + 0.32 + 0.04 + 0.04 + 0.01 + 0.1
    np.testing.assert_allclose(
        b.workspace_low_m, [-reach - 0.05, -reach - 0.05, 0.08 - reach - 0.05]
    )
    np.testing.assert_allclose(
        b.workspace_high_m, [reach + 0.05, reach + 0.05, 0.08 + reach + 0.05]
    )
    assert b.joint_low_rad[2] == pytest.approx(0.05) and b.joint_high_rad[2] == pytest.approx(2.8)
    assert b.max_velocity_rad_s == (math.pi,) * 6 and b.max_acceleration_rad_s2 == (40.0,) * 6
    assert b.max_gripper_force_n == 25.0  # gripper_act forcerange="-25 25"
    assert "gripper_act" in b.origin["max_gripper_force_n"]
    # the defaults (mmrobot eval, a launch file without [safety]) are within them
    assert safety_problems(SafetyConfig(), b) == []


def test_the_arm_model_may_declare_lower_velocity_and_acceleration():
    b = bounds_for_model(
        model(
            '<numeric name="mmrobot_max_velocity_rad_s" data="1.5"/>'
            '<numeric name="mmrobot_max_acceleration_rad_s2" data="50 10 10 10 10 10"/>'
        )
    )
    assert b.max_velocity_rad_s == (1.5,) * 6
    assert "mmrobot_max_velocity_rad_s" in b.origin["max_velocity_rad_s"][0]
    # a declared value above the ceiling does not raise the bound
    assert b.max_acceleration_rad_s2 == (MAX_ACCELERATION_RAD_S2,) + (10.0,) * 5
    (line,) = safety_problems(SafetyConfig(max_velocity_rad_s=2.0, max_acceleration_rad_s2=5.0), b)
    assert line.startswith("safety.max_velocity_rad_s = 2: joint shoulder_pan 2 rad/s is too loose")
    assert "the bound is 1.5 rad/s (mmrobot_max_velocity_rad_s in the arm model)" in line
    with pytest.raises(ConfigError, match="needs 1 or 6 values, has 2"):
        bounds_for_model(model('<numeric name="mmrobot_max_velocity_rad_s" data="1 2"/>'))
    with pytest.raises(ConfigError, match="must be finite and > 0"):
        bounds_for_model(model('<numeric name="mmrobot_max_acceleration_rad_s2" data="0"/>'))


def test_a_rigs_servos_narrow_joint_range_and_speed(monkeypatch):
    from mmrobot.drivers.protocols import dynamixel

    slow = dynamixel.ServoModel("TEST-SLOW", 9999, max_velocity_rad_s=1.2)
    monkeypatch.setitem(dynamixel.SERVO_MODELS, "TEST-SLOW", slow)
    servos = [SimpleNamespace(id=i + 1, model="XM430-W350", min=None, max=None) for i in range(6)]
    servos[0] = SimpleNamespace(id=1, model="XM430-W350", min=-2.6, max=2.6)
    servos[3] = SimpleNamespace(id=4, model="TEST-SLOW", min=None, max=None)
    b = bounds_for_model(model(), servos)
    assert (b.joint_low_rad[0], b.joint_high_rad[0]) == (-2.6, 2.6)
    assert b.joint_low_rad[1] == pytest.approx(-2.1)  # no min/max: the arm model's range
    assert b.max_velocity_rad_s[3] == 1.2 and b.max_velocity_rad_s[0] == MAX_VELOCITY_RAD_S
    lines = safety_problems(SafetyConfig(max_velocity_rad_s=1.5, joint_high_rad=(2.7,) * 6), b)
    assert any(
        "joint shoulder_pan 2.7 rad is above the arm's range; the bound is 2.6" in x for x in lines
    )
    assert any(
        "joint wrist_roll 1.5 rad/s is too loose; the bound is 1.2 rad/s (servo 4 (TEST-SLOW)" in x
        for x in lines
    )


def test_limits_for_arm_refuses_what_loosens_and_keeps_what_tightens():
    b = bounds_for_model(model())
    arm = np.array([b.joint_low_rad, b.joint_high_rad]).T
    tight = SafetyConfig(
        max_velocity_rad_s=0.5,
        max_acceleration_rad_s2=(5.0,) * 6,
        workspace_low_m=(0.1, -0.3, 0.05),
        workspace_high_m=(0.6, 0.3, 0.5),
        max_gripper_force_n=10.0,
    )
    lim = limits_for_arm(arm, tight, b)
    assert lim.max_velocity_rad_s == (0.5,) * 6 and lim.max_gripper_force_n == 10.0
    assert lim.workspace_low_m == (0.1, -0.3, 0.05)
    for bad in (
        SafetyConfig(max_gripper_force_n=float("inf")),
        SafetyConfig(workspace_low_m=(-math.inf,) * 3),
        SafetyConfig(max_acceleration_rad_s2=-1.0),
    ):
        with pytest.raises(ConfigError, match="the bound is"):
            limits_for_arm(arm, bad, b)


def test_watchdog_bound():
    assert watchdog_problem(100.0, 50) is None  # 0.5 s exactly
    assert watchdog_problem(20.0, 10) is None
    msg = watchdog_problem(20.0, 11)
    assert msg is not None and msg.startswith("loop.watchdog_periods = 11: 11 periods at 20 Hz")
    assert "the bound is 0.5 s (10 periods at 20 Hz)" in msg
