import numpy as np
import pytest

from mmrobot.core import ConfigError
from mmrobot.deploy.safety import SafetyConfig, SafetyLayer, SafetyLimits, limits_for_arm


def limits(**kw):
    base = dict(
        joint_low_rad=(-1.0, -1.0, -1.0),
        joint_high_rad=(1.0, 1.0, 1.0),
        max_velocity_rad_s=(100.0,) * 3,
        max_acceleration_rad_s2=(1e6,) * 3,
    )
    base.update(kw)
    return SafetyLimits(**base)


def layer(period_s=0.01, fk=None, **kw):
    s = SafetyLayer(limits(**kw), period_s=period_s, forward_kinematics=fk)
    s.reset(np.zeros(4))
    return s


def test_joint_position_limits_clamp_and_report():
    s = layer()
    out = s.filter(0, np.array([0.5, 1.3, -0.2, 0.5]))
    np.testing.assert_allclose(out, [0.5, 1.0, -0.2, 0.5])
    assert s.counts() == {"joint_limit:j1": 1}


def test_velocity_limit_caps_the_step():
    s = layer(max_velocity_rad_s=(1.0, 1.0, 1.0))
    out = s.filter(0, np.array([0.5, -0.5, 0.005, 1.0]))
    # 1 rad/s for 10 ms is 0.01 rad per command; the third joint was within the limit
    np.testing.assert_allclose(out[:3], [0.01, -0.01, 0.005])
    assert s.counts() == {"velocity_limit:j0": 1, "velocity_limit:j1": 1}
    assert s.counts(by="kind") == {"velocity_limit": 2}


def test_acceleration_limit_ramps_speed_up():
    s = layer(max_acceleration_rad_s2=(10.0,) * 3)  # dv 0.1 rad/s per 10 ms tick
    first = s.filter(0, np.array([1.0, 0.0, 0.0, 0.0]))
    second = s.filter(1, np.array([1.0, 0.0, 0.0, 0.0]))
    np.testing.assert_allclose([first[0], second[0]], [0.001, 0.003])
    assert s.counts() == {"acceleration_limit:j0": 2}


def toy_fk(q):  # a toy arm whose hand is at its first three joints
    return np.asarray(q[:3], np.float64)


def bent_fk(q):  # a planar two-link arm (0.3 m + 0.25 m) on a base 0.2 m high: not linear
    a, b = q[0], q[0] + q[1]
    reach = 0.3 * np.cos(a) + 0.25 * np.cos(b)
    return np.array(
        [reach * np.cos(q[2]), reach * np.sin(q[2]), 0.2 + 0.3 * np.sin(a) + 0.25 * np.sin(b)]
    )


def test_a_target_below_the_table_is_clamped_to_the_floor_and_the_arm_still_moves():
    s = layer(fk=toy_fk, workspace_low_m=(-0.5, -0.5, 0.0), workspace_high_m=(0.5, 0.5, 0.5))
    out = s.filter(0, np.array([0.1, 0.2, -0.3, 1.0]))
    np.testing.assert_allclose(out, [0.1, 0.2, 0.0, 1.0], atol=1e-6)  # on the floor, x/y kept
    # pushed on down while asking to slide: it slides along the floor, never holds
    for k in range(1, 6):
        out = s.filter(k, np.array([0.1 + 0.05 * k, 0.2 - 0.05 * k, -0.3, 0.0]))
        np.testing.assert_allclose(out, [0.1 + 0.05 * k, 0.2 - 0.05 * k, 0.0, 0.0], atol=1e-6)
    assert s.n_holds == 0
    assert s.counts() == {"workspace:z_low": 6}
    e = s.events[0]
    assert (e.kind, e.where, e.reason) == ("workspace", "z_low", "workspace:z_low")
    assert e.value == pytest.approx(-0.3) and e.limit == 0.0
    assert "z -0.300 m" in e.detail


def test_workspace_clamp_on_a_nonlinear_arm_keeps_the_velocity_limit():
    period, floor = 0.05, 0.1
    s = SafetyLayer(
        limits(
            joint_low_rad=(-3.0,) * 3,
            joint_high_rad=(3.0,) * 3,
            max_velocity_rad_s=(2.0,) * 3,
            max_acceleration_rad_s2=(1e6,) * 3,
            workspace_low_m=(-1.0, -1.0, floor),
        ),
        period_s=period,
        forward_kinematics=bent_fk,
    )
    q = np.array([0.4, -0.9, 0.0])  # hand at z 0.197 m
    s.reset(np.append(q, 1.0))
    clamped = 0
    for k in range(12):  # ask to fold the elbow down (into the floor) and turn the base
        out = s.filter(k, np.append(q + np.array([0.0, -0.2, 0.1]), 1.0))
        assert np.all(np.abs(out[:3] - q) <= 2.0 * period + 1e-9)  # the speed limit holds
        assert bent_fk(out[:3])[2] >= floor - 1e-3  # the box holds
        clamped += any(e.t_ns == k and e.kind == "workspace" for e in s.events)
        q = out[:3]
    assert clamped >= 5 and s.n_holds == 0
    assert bent_fk(q)[2] == pytest.approx(floor, abs=1e-3)  # it came down onto the floor...
    assert q[2] == pytest.approx(1.2)  # ...and the base kept turning at full speed


def test_events_carry_reason_where_value_and_limit():
    s = layer(
        max_velocity_rad_s=(1.0, 1.0, 1.0),
        max_gripper_force_n=20.0,
        required_streams=("joints",),
    )
    s.filter(0, np.array([0.0, 1.5, 0.0, 0.6]), {"joints": True})
    s.filter(1, np.array([0.0, 0.0, 0.0, 0.2]), {"joints": True}, gripper_force_n=35.0)
    s.filter(2, np.array([0.0, 0.0, 0.0, 0.2]), {"joints": False})
    by = {e.reason: e for e in s.events}
    assert set(by) == {
        "joint_limit:j1",
        "velocity_limit:j1",
        "gripper_force:gripper",
        "hold:stale:joints",
    }
    assert (by["joint_limit:j1"].value, by["joint_limit:j1"].limit) == (1.5, 1.0)
    assert by["velocity_limit:j1"].value == pytest.approx(100.0)  # 1.0 rad in 10 ms
    assert by["velocity_limit:j1"].limit == 1.0
    assert (by["gripper_force:gripper"].value, by["gripper_force:gripper"].limit) == (35.0, 20.0)
    assert by["hold:stale:joints"].value is None and "joints" in by["hold:stale:joints"].detail
    s.clear()
    assert s.events == [] and s.n_holds == 0


def test_limits_for_arm_narrow_but_refuse_to_widen():
    arm = np.array([[-2.0, 2.0], [-1.0, 1.0]])
    lim = limits_for_arm(arm, SafetyConfig(joint_low_rad=(-1.5, -0.5), max_velocity_rad_s=1.5))
    assert lim.joint_low_rad == (-1.5, -0.5) and lim.joint_high_rad == (2.0, 1.0)
    assert lim.max_velocity_rad_s == (1.5, 1.5) and lim.required_streams == ("joints",)
    with pytest.raises(ConfigError, match="needs 2 values"):
        limits_for_arm(arm, SafetyConfig(joint_high_rad=(1.0,)))
    # a wider range was once narrowed silently; now it is refused, naming key, value, bound
    with pytest.raises(
        ConfigError,
        match=r"safety\.joint_low_rad = \[-3, -0\.5\]: joint j0 -3 rad is below the arm's "
        r"range; the bound is -2 rad",
    ):
        limits_for_arm(arm, SafetyConfig(joint_low_rad=(-3.0, -0.5)))
    with pytest.raises(ConfigError, match=r"max_velocity_rad_s = inf: .* bound is 3\.142 rad/s"):
        limits_for_arm(arm, SafetyConfig(max_velocity_rad_s=float("inf")))


def test_non_finite_and_stale_required_streams_hold():
    s = layer(required_streams=("joints",))
    s.filter(0, np.array([0.1, 0.1, 0.1, 0.5]), {"joints": True})
    held = s.filter(1, np.array([np.nan, 0.0, 0.0, 0.5]), {"joints": True})
    np.testing.assert_allclose(held, [0.1, 0.1, 0.1, 0.5])
    held = s.filter(2, np.array([0.2, 0.2, 0.2, 0.5]), {"joints": False})
    np.testing.assert_allclose(held, [0.1, 0.1, 0.1, 0.5])
    assert [e.reason for e in s.events] == ["hold:non_finite", "hold:stale:joints"]
    assert "non-finite" in s.events[0].detail and "joints" in s.events[1].detail
    assert s.n_holds == 2


def test_gripper_may_not_close_further_past_the_force_limit():
    s = layer(max_gripper_force_n=20.0)
    s.filter(0, np.array([0.0, 0.0, 0.0, 0.6]))
    out = s.filter(1, np.array([0.0, 0.0, 0.0, 0.2]), gripper_force_n=35.0)
    assert out[3] == pytest.approx(0.6)
    out = s.filter(2, np.array([0.0, 0.0, 0.0, 0.9]), gripper_force_n=35.0)  # opening is fine
    assert out[3] == pytest.approx(0.9)
    out = s.filter(3, np.array([0.0, 0.0, 0.0, 0.1]), gripper_force_n=5.0)
    assert out[3] == pytest.approx(0.1)


def test_bad_limits_and_bad_commands_are_clear_errors():
    with pytest.raises(ConfigError, match="one per joint"):
        limits(max_velocity_rad_s=(1.0, 1.0))
    with pytest.raises(ConfigError, match="below joint_high_rad"):
        limits(joint_low_rad=(1.0, 1.0, 1.0))
    with pytest.raises(ConfigError, match="max_gripper_force_n = nan has NaN"):
        limits(max_gripper_force_n=float("nan"))  # NaN compares false: it would pass as no limit
    s = layer()
    with pytest.raises(ValueError, match=r"3 joints \+ gripper"):
        s.filter(0, np.zeros(3))
