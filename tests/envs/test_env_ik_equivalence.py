"""The arm's IK and rotation helpers give what their plain versions give (issue 14).

``Scene.solve_ik`` and ``Scene.command_delta_pose`` run in the robot's 100 Hz tick and in
the simulator's Cartesian controller and scripted expert that make the training data, so
their speed-ups must not change a number. The references below are the straightforward
array code (the implementation before issue 14), run on random targets.
"""

from __future__ import annotations

import numpy as np
import pytest

from mmrobot.envs.scene import HOME_TCP_MAT, HOME_TCP_POS_M, Scene, mat_to_rotvec, rotvec_to_mat

TOL = 1e-12
LEASH_M, LEASH_RAD = 0.03, 0.2


def ref_rotvec_to_mat(rv):
    theta = float(np.linalg.norm(rv))
    if theta < 1e-12:
        return np.eye(3)
    k = rv / theta
    kx = np.array([[0, -k[2], k[1]], [k[2], 0, -k[0]], [-k[1], k[0], 0]])
    return np.eye(3) + np.sin(theta) * kx + (1 - np.cos(theta)) * kx @ kx


def ref_mat_to_rotvec(r):
    cos = np.clip((np.trace(r) - 1) / 2, -1.0, 1.0)
    theta = float(np.arccos(cos))
    if theta < 1e-9:
        return np.zeros(3)
    if theta > np.pi - 1e-6:
        m = (r + np.eye(3)) / 2
        axis = np.sqrt(np.clip(np.diag(m), 0, None))
        i = int(np.argmax(axis))
        axis = m[:, i] / np.sqrt(m[i, i])
        return axis * theta
    w = np.array([r[2, 1] - r[1, 2], r[0, 2] - r[2, 0], r[1, 0] - r[0, 1]])
    return w * theta / (2 * np.sin(theta))


def ref_solve_ik(scene, d, pos, mat, q0, iters, damping=0.02):
    """Damped least squares on the TCP site Jacobian, every step spelled out."""
    import mujoco

    d.qpos[:] = scene.data.qpos
    q = np.asarray(q0, dtype=np.float64).copy()
    ids = scene.ids
    jacp, jacr = np.zeros((3, scene.model.nv)), np.zeros((3, scene.model.nv))
    lo, hi = scene.arm_range[:, 0], scene.arm_range[:, 1]
    for _ in range(iters):
        d.qpos[ids.arm_qpos] = q
        mujoco.mj_kinematics(scene.model, d)
        cur_p = d.site_xpos[ids.tcp_site].copy()
        cur_r = d.site_xmat[ids.tcp_site].reshape(3, 3).copy()
        err = np.concatenate([pos - cur_p, ref_mat_to_rotvec(mat @ cur_r.T)])
        if err @ err < 1e-12:
            break
        mujoco.mj_comPos(scene.model, d)
        mujoco.mj_jacSite(scene.model, d, jacp, jacr, ids.tcp_site)
        jac = np.vstack([jacp[:, ids.arm_dof], jacr[:, ids.arm_dof]])
        dq = jac.T @ np.linalg.solve(jac @ jac.T + damping**2 * np.eye(6), err)
        q = np.clip(q + dq, lo, hi)
    return q


@pytest.fixture(scope="module")
def scene():
    return Scene()


def _random_rotation(rng, max_angle):
    axis = rng.normal(size=3)
    return ref_rotvec_to_mat(axis / np.linalg.norm(axis) * rng.uniform(0, max_angle))


def test_rotation_helpers_match_the_array_code():
    rng = np.random.default_rng(0)
    worst = 0.0
    for k in range(4000):
        scale = (1e-13, 1e-10, 1e-6, 0.1, 1.0, np.pi - 1e-7, np.pi)[k % 7]
        rv = rng.normal(size=3)
        rv *= scale * rng.uniform(0.5, 1.0) / np.linalg.norm(rv)
        r = ref_rotvec_to_mat(rv)
        worst = max(worst, np.abs(rotvec_to_mat(rv) - r).max())
        worst = max(worst, np.abs(mat_to_rotvec(r) - ref_mat_to_rotvec(r)).max())
        noisy = r + rng.normal(scale=1e-9, size=(3, 3))  # not quite orthonormal, as from IK
        worst = max(worst, np.abs(mat_to_rotvec(noisy) - ref_mat_to_rotvec(noisy)).max())
    assert worst <= TOL
    # other dtypes and array-likes take the array code, as before
    r32 = ref_rotvec_to_mat(np.array([0.1, 0.2, 0.3])).astype(np.float32)
    np.testing.assert_array_equal(mat_to_rotvec(r32), ref_mat_to_rotvec(r32))
    rv32 = np.array([0.1, -0.2, 0.3], np.float32)
    np.testing.assert_array_equal(rotvec_to_mat(rv32), ref_rotvec_to_mat(rv32))
    assert np.isnan(mat_to_rotvec(np.full((3, 3), np.nan))).all()


def test_solve_ik_matches_the_plain_version_on_random_targets(scene):
    import mujoco

    rng = np.random.default_rng(1)
    d = mujoco.MjData(scene.model)
    lo, hi = scene.arm_range[:, 0], scene.arm_range[:, 1]
    worst, exact = 0.0, 0
    n = 300
    for k in range(n):
        pos = HOME_TCP_POS_M + rng.uniform(-0.15, 0.15, 3)
        mat = _random_rotation(rng, 0.6) @ HOME_TCP_MAT
        if k % 3 == 0:  # seeded near the answer (the tick), else from anywhere in range
            q0 = scene.home_qpos + rng.normal(scale=0.05, size=6)
        else:
            q0 = rng.uniform(lo, hi)
        iters = (5, 5, 3, 20, 200)[k % 5]
        got = scene.solve_ik(pos, mat, q0=q0, iters=iters)
        want = ref_solve_ik(scene, d, pos, mat, q0, iters)
        worst = max(worst, np.abs(got - want).max())
        exact += bool(np.array_equal(got, want))
    assert worst <= TOL
    assert exact >= n // 2  # the same operations in the same order: mostly identical bits
    target = HOME_TCP_POS_M + 0.05
    for damping in (0.1, 0.0):  # another damping; none (np.linalg.solve's own path)
        got = scene.solve_ik(target, HOME_TCP_MAT, q0=scene.home_qpos, damping=damping)
        want = ref_solve_ik(scene, d, target, HOME_TCP_MAT, scene.home_qpos, 3, damping)
        assert np.abs(got - want).max() <= TOL
    # a non-finite target gives what it gave (NaN angles), not an exception or a warning
    nan_target = np.array([np.nan, 0.0, 0.2])
    got = scene.solve_ik(nan_target, HOME_TCP_MAT, q0=scene.home_qpos)
    want = ref_solve_ik(scene, d, nan_target, HOME_TCP_MAT, scene.home_qpos, 3)
    np.testing.assert_array_equal(got, want)


def test_command_delta_pose_sequence_matches_the_plain_version(scene):
    """The controller's target, leash and IK over a random walk, as the simulator runs it."""
    import mujoco

    rng = np.random.default_rng(2)
    d = mujoco.MjData(scene.model)
    scene.reset_arm(scene.home_qpos)
    target_p, target_r = scene.commanded_pose()
    ctrl = scene.data.ctrl[scene.ids.arm_act].copy()
    worst = 0.0
    for k in range(300):
        delta = rng.normal(scale=(0.01, 0.01, 0.01, 0.05, 0.05, 0.05))
        if k % 10 == 0:
            delta[:3] *= 8  # past the leash
            delta[3:] *= 8
        # measured pose: the arm follows its servo targets with some lag
        lagged = 0.7 * scene.arm_qpos + 0.3 * ctrl
        scene.data.qpos[scene.ids.arm_qpos] = lagged
        mujoco.mj_kinematics(scene.model, scene.data)
        pos, mat = scene.tcp_pose()
        # the reference controller step
        tp = target_p + delta[:3]
        off = tp - pos
        n = float(np.linalg.norm(off))
        if n > LEASH_M:
            tp = pos + off * (LEASH_M / n)
        tr = ref_rotvec_to_mat(delta[3:6]) @ target_r
        rv = ref_mat_to_rotvec(tr @ mat.T)
        a = float(np.linalg.norm(rv))
        if a > LEASH_RAD:
            tr = ref_rotvec_to_mat(rv * (LEASH_RAD / a)) @ mat
        want_q = ref_solve_ik(scene, d, tp, tr, ctrl, 5)
        got_q = scene.command_delta_pose(delta)
        got_p, got_r = scene.commanded_pose()
        worst = max(
            worst,
            np.abs(got_q - want_q).max(),
            np.abs(got_p - tp).max(),
            np.abs(got_r - tr).max(),
        )
        target_p, target_r, ctrl = tp, tr, want_q
    assert worst <= TOL
