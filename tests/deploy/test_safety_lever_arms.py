"""The safety layer's lever-arm shortcut (issue 14) changes no command and no event.

With ``fk_lever_arms_m`` the layer skips the workspace check of the rate-limited step when
the target's clearance from the box proves that step inside; these tests run the same
commands through a layer with and one without it, on the arm model's forward kinematics,
where the arm moves along, across and away from the box's faces.
"""

from __future__ import annotations

import numpy as np
import pytest

from mmrobot.core import ConfigError
from mmrobot.deploy.safety import SafetyConfig, SafetyLayer, limits_for_arm
from mmrobot.envs.kinematics import ArmKinematics, tcp_lever_arms_m
from mmrobot.envs.scene import Scene


@pytest.fixture(scope="module")
def arm():
    scene = Scene()
    kin = ArmKinematics(scene.model)
    return scene, kin, tcp_lever_arms_m(scene.model)


def _pair(scene, fk, lever, **section):
    limits = limits_for_arm(scene.arm_range, SafetyConfig(**section))
    plain = SafetyLayer(limits, period_s=0.01, forward_kinematics=fk)
    lever_layer = SafetyLayer(limits, period_s=0.01, forward_kinematics=fk, fk_lever_arms_m=lever)
    return plain, lever_layer


def _counting_fk(kin):
    """Forward kinematics of the TCP position that counts its calls in ``calls["n"]``."""
    calls = {"n": 0}

    def fk(q):
        calls["n"] += 1
        return kin.tcp_pose(q)[0]

    return fk, calls


def _events(layer):
    return [(e.t_ns, e.kind, e.detail, e.where, e.value, e.limit) for e in layer.events]


def test_same_commands_and_events_with_and_without_the_lever_arm_bound(arm):
    scene, kin, lever = arm
    fk, calls = _counting_fk(kin)

    rng = np.random.default_rng(0)
    fk_calls = {"plain": 0, "lever": 0}
    for _ in range(12):
        # a floor and a side wall near the home pose (TCP at z 0.22 m, y 0), so commands
        # cross them, slide along them and leave them
        section = dict(
            max_velocity_rad_s=float(rng.uniform(0.5, 2.0)),
            max_acceleration_rad_s2=float(rng.uniform(5.0, 20.0)),
            workspace_low_m=(-0.2, -0.7, float(rng.uniform(0.15, 0.24))),
            workspace_high_m=(0.9, float(rng.uniform(0.02, 0.7)), 0.9),
        )
        plain, fast = _pair(scene, fk, lever, **section)
        start = np.concatenate([scene.home_qpos, [0.5]])
        plain.reset(start)
        fast.reset(start)
        cmd = start.copy()
        for k in range(150):
            cmd = cmd + rng.normal(scale=rng.choice([1e-4, 2e-3, 2e-2]), size=7)
            if k % 37 == 36:
                cmd[rng.integers(6)] += rng.choice([-4.0, 4.0])  # past a joint limit
            valid = {"joints": k % 41 != 40}
            force = float(rng.uniform(0.0, 40.0))
            n0 = calls["n"]
            a = plain.filter(k, cmd, valid, force)
            n1 = calls["n"]
            b = fast.filter(k, cmd, valid, force)
            fk_calls["plain"] += n1 - n0
            fk_calls["lever"] += calls["n"] - n1
            np.testing.assert_array_equal(a, b)
            if k % 10 == 0:
                cmd = b.copy()  # follow the layer now and then, as a policy would
        assert _events(plain) == _events(fast)
        assert plain.n_holds == fast.n_holds
    assert fk_calls["lever"] < fk_calls["plain"]


def test_a_smooth_motion_inside_the_box_needs_one_forward_kinematics_per_command(arm):
    scene, kin, lever = arm
    fk, calls = _counting_fk(kin)

    plain, fast = _pair(scene, fk, lever)
    start = np.concatenate([scene.home_qpos, [0.5]])
    plain.reset(start)
    fast.reset(start)
    for k in range(100):
        cmd = start + 0.002 * k * np.array([1, -1, 1, 0.5, -0.5, 1, 0])
        n0 = calls["n"]
        np.testing.assert_array_equal(plain.filter(k, cmd), fast.filter(k, cmd))
        assert calls["n"] - n0 == 3  # two for the plain layer, one with the bound
    assert plain.events == fast.events


def test_lever_arms_must_be_one_finite_non_negative_value_per_joint(arm):
    scene, kin, lever = arm
    limits = limits_for_arm(scene.arm_range, SafetyConfig())
    for bad in (lever[:5], -lever, np.full(6, np.nan)):
        with pytest.raises(ConfigError, match="fk_lever_arms_m"):
            SafetyLayer(limits, 0.01, lambda q: kin.tcp_pose(q)[0], fk_lever_arms_m=bad)
