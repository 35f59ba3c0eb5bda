import numpy as np
import pytest

from mmrobot.core import ConfigError
from mmrobot.deploy.safety import SafetyLayer, SafetyLimits


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
    assert s.counts() == {"joint_limit": 1}


def test_velocity_limit_caps_the_step():
    s = layer(max_velocity_rad_s=(1.0, 1.0, 1.0))
    out = s.filter(0, np.array([0.5, -0.5, 0.005, 1.0]))
    # 1 rad/s for 10 ms is 0.01 rad per command; the third joint was within the limit
    np.testing.assert_allclose(out[:3], [0.01, -0.01, 0.005])
    assert s.counts() == {"velocity_limit": 1}


def test_acceleration_limit_ramps_speed_up():
    s = layer(max_acceleration_rad_s2=(10.0,) * 3)  # dv 0.1 rad/s per 10 ms tick
    first = s.filter(0, np.array([1.0, 0.0, 0.0, 0.0]))
    second = s.filter(1, np.array([1.0, 0.0, 0.0, 0.0]))
    np.testing.assert_allclose([first[0], second[0]], [0.001, 0.003])
    assert s.counts()["acceleration_limit"] == 2


def test_workspace_box_holds_the_last_safe_command():
    fk = lambda q: np.asarray(q[:3])  # noqa: E731 - a toy arm whose hand is at its joints
    s = layer(fk=fk, workspace_low_m=(-0.5, -0.5, -0.5), workspace_high_m=(0.5, 0.5, 0.5))
    ok = s.filter(0, np.array([0.4, 0.0, 0.0, 1.0]))
    held = s.filter(1, np.array([0.6, 0.0, 0.0, 0.0]))
    np.testing.assert_allclose(held, ok)
    assert s.events[-1].kind == "hold" and "outside workspace" in s.events[-1].detail


def test_non_finite_and_stale_required_streams_hold():
    s = layer(required_streams=("joints",))
    s.filter(0, np.array([0.1, 0.1, 0.1, 0.5]), {"joints": True})
    held = s.filter(1, np.array([np.nan, 0.0, 0.0, 0.5]), {"joints": True})
    np.testing.assert_allclose(held, [0.1, 0.1, 0.1, 0.5])
    held = s.filter(2, np.array([0.2, 0.2, 0.2, 0.5]), {"joints": False})
    np.testing.assert_allclose(held, [0.1, 0.1, 0.1, 0.5])
    assert [e.kind for e in s.events] == ["hold", "hold"]
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
    s = layer()
    with pytest.raises(ValueError, match=r"3 joints \+ gripper"):
        s.filter(0, np.zeros(3))
