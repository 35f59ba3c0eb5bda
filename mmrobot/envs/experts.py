"""Scripted experts: solve each task on the policy's own action space.

An expert reads the true scene state (privileged, like a human teleoperator who sees the
table) and emits the same 7-D action a policy does: an end-effector delta pose and a gripper
command. The environment's Cartesian controller turns it into joint targets with
Jacobian (damped least squares) inverse kinematics. Each expert is a small state machine of
waypoints (above, descend, close, lift, carry, release) with proportional tracking.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from mmrobot.core.errors import ConfigError, LifecycleError
from mmrobot.envs.scene import HOME_TCP_MAT, mat_to_rotvec
from mmrobot.envs.tasks import reach_target

if TYPE_CHECKING:
    from mmrobot.envs.tabletop import TabletopEnv

__all__ = ["ScriptedExpert"]

_MAX_STEP_M = 0.02
_MAX_ROT_RAD = 0.1
_OPEN, _CLOSED = 1.0, 0.0


def _rz(yaw: float) -> np.ndarray:
    c, s = np.cos(yaw), np.sin(yaw)
    return np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])


class ScriptedExpert:
    """The scripted expert of the env's current task (call :meth:`reset` after ``env.reset``).

    Args:
        env: a :class:`~mmrobot.envs.tabletop.TabletopEnv` (or a wrapper of one) in
            ``ee_delta`` action mode.
    """

    def __init__(self, env: TabletopEnv) -> None:
        self.env = env.unwrapped
        if self.env.config.action_mode != "ee_delta":
            raise ConfigError("the scripted experts act in 'ee_delta' action mode")
        self.phase = "start"
        self._timer = 0

    def reset(self) -> None:
        if self.env.task is None:
            raise LifecycleError("ScriptedExpert.reset() before env.reset()")
        self.phase = "above"
        self._timer = 0
        self._yaw = self._grasp_yaw(self.env.task.block)

    # ------------------------------------------------------------------ helpers
    @property
    def scene(self):  # type: ignore[no-untyped-def]
        return self.env.scene

    def _grasp_yaw(self, block: tuple[str, str]) -> float:
        r = self.scene.block_mat(*block)
        yaw = float(np.arctan2(r[1, 0], r[0, 0]))
        return (yaw + np.pi / 4) % (np.pi / 2) - np.pi / 4  # cube symmetry: within +-45 deg

    def _move(
        self, target: np.ndarray, grip: float, gain: float = 1.0, max_step: float = _MAX_STEP_M
    ) -> np.ndarray:
        # track on the controller's target (what the previous actions asked for), so that the
        # servo lag is not integrated into the command
        tcp, mat = self.scene.commanded_pose()
        dp = np.clip(gain * (target - tcp), -max_step, max_step)
        want = _rz(self._yaw) @ HOME_TCP_MAT
        dr = np.clip(mat_to_rotvec(want @ mat.T), -_MAX_ROT_RAD, _MAX_ROT_RAD)
        return np.concatenate([dp, dr, [grip]]).astype(np.float32)

    def _at(self, target: np.ndarray, tol: float = 0.01) -> bool:
        return bool(np.linalg.norm(self.scene.tcp_pose()[0] - target) < tol)

    def _wait(self, n: int) -> bool:
        self._timer += 1
        if self._timer >= n:
            self._timer = 0
            return True
        return False

    # ------------------------------------------------------------------ policy
    def act(self) -> np.ndarray:
        """The next (7,) float32 action."""
        task = self.env.task
        if task is None:
            raise LifecycleError("ScriptedExpert.act() before env.reset()")
        if self.phase == "start":
            self.reset()
        if task.task == "reach":
            return self._move(reach_target(self.scene, task.block), _OPEN)
        if task.task == "push":
            return self._push()
        return self._pick_and(task.task)

    def _pick_and(self, then: str) -> np.ndarray:
        sc = self.scene
        task = self.env.task
        assert task is not None
        b = task.block
        pos = sc.block_pos(*b)
        half = sc.block_half_m(*b)
        grasp = pos + np.array([0.0, 0.0, 0.002])
        above = np.array([pos[0], pos[1], pos[2] + half + 0.09])
        if self.phase == "above":
            self._yaw = self._grasp_yaw(b)
            if self._at(above, 0.015):
                self.phase = "descend"
            return self._move(above, _OPEN)
        if self.phase == "descend":
            if self._at(grasp, 0.006):
                self.phase = "close"
            return self._move(grasp, _OPEN)
        if self.phase == "close":
            if self._wait(6):
                self.phase = "lift"
            return self._move(grasp, _CLOSED)
        tcp = sc.tcp_pose()[0]
        held = np.linalg.norm(tcp - pos) < 0.04
        if self.phase in ("lift", "carry", "lower") and not held:
            self.phase = "above"  # dropped it: try again
            return self._move(tcp + np.array([0, 0, 0.05]), _OPEN)
        if then == "pick":
            return self._move(np.array([grasp[0], grasp[1], 0.2]), _CLOSED)
        if then == "place":
            dest = self.env.scene.ids.bin_pos + np.array([0.0, 0.0, 0.1 + half])
            drop_z = 0.11 + half
        else:  # stack
            base = sc.block_pos(*task.base_block)
            bhalf = sc.block_half_m(*task.base_block)
            drop_z = base[2] + bhalf + half + 0.012
            dest = np.array([base[0], base[1], drop_z])
            self._base_yaw = self._grasp_yaw(task.base_block)
        carry_z = 0.2
        if self.phase == "lift":
            up = np.array([grasp[0], grasp[1], carry_z])
            if tcp[2] > carry_z - 0.03:
                self.phase = "carry"
            return self._move(up, _CLOSED)
        if self.phase == "carry":
            over = np.array([dest[0], dest[1], carry_z])
            if then == "stack":
                self._yaw = self._base_yaw
            if self._at(over, 0.012):
                self.phase = "lower"
            return self._move(over, _CLOSED)
        if self.phase == "lower":
            target = np.array([dest[0], dest[1], drop_z])
            if self._at(target, 0.006) and self._wait(2):
                self.phase = "release"
            return self._move(target, _CLOSED, gain=0.7)
        if self.phase == "release":
            if self._wait(5):
                self.phase = "retreat"
            return self._move(np.array([dest[0], dest[1], drop_z]), _OPEN)
        # retreat
        return self._move(np.array([dest[0], dest[1], drop_z + 0.1]), _OPEN)

    def _push(self) -> np.ndarray:
        sc = self.scene
        task = self.env.task
        assert task is not None
        b = task.block
        pos = sc.block_pos(*b)
        half = sc.block_half_m(*b)
        zone = sc.ids.zone_pos[task.params["zone"]]
        to_zone = zone[:2] - pos[:2]
        dist = float(np.linalg.norm(to_zone))
        u = to_zone / max(dist, 1e-6)
        self._yaw = float(np.arctan2(u[1], u[0]))  # fingers' closing axis across the push
        self._yaw = (self._yaw + np.pi / 2) % np.pi - np.pi / 2
        push_z = 0.022
        standoff = half + 0.018
        behind = np.array([*(pos[:2] - u * (standoff + 0.03)), push_z])
        tcp = sc.tcp_pose()[0]
        if self.phase == "above":
            hover = np.array([behind[0], behind[1], 0.1])
            if self._at(hover, 0.015):
                self.phase = "descend"
            return self._move(hover, _CLOSED)
        if self.phase == "descend":
            if self._at(behind, 0.008):
                self.phase = "push"
            return self._move(behind, _CLOSED)
        # push: follow the line through the block to the zone centre
        rel = tcp[:2] - pos[:2]
        lateral = abs(rel[0] * u[1] - rel[1] * u[0])
        if lateral > 0.025 or rel @ u > 0:
            self.phase = "above"  # lost the block: go around and start again
            return self._move(np.array([tcp[0], tcp[1], 0.1]), _CLOSED)
        goal = np.array([*(zone[:2] - u * standoff), push_z])
        if dist < 0.015:
            return self._move(tcp, _CLOSED)
        target = np.array([*(pos[:2] - u * standoff + u * min(0.02, dist)), push_z])
        # push slowly (at most 8 mm per tick) so the block does not slide past the zone
        return self._move(target if dist > 0.02 else goal, _CLOSED, gain=0.8, max_step=0.008)
