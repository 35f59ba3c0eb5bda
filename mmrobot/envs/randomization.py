"""Domain randomization of the tabletop scene, drawn per episode from its seed.

Every perturbation is relative to the scene's nominal values (kept by :class:`Scene`), so
episodes do not drift: colours stay within their names (a red block stays red), sizes within
theirs (small stays smaller than large), and lighting, camera poses, friction, masses and
sensor latency vary within the configured ranges.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from mmrobot.core.errors import ConfigError

if TYPE_CHECKING:
    from mmrobot.envs.scene import Scene
    from mmrobot.envs.sensors import SimDriver

__all__ = ["Randomization", "apply_randomization"]


@dataclass(frozen=True)
class Randomization:
    """Ranges of the per-episode perturbations (0 turns one off).

    Attributes:
        color_jitter: max change of each RGB channel of blocks (0..1 units).
        size_rel: max relative change of block edge length (+-).
        light: max relative change of the key light's intensity, and its position (m / 10).
        camera_pos_m: max offset of each camera position, per axis.
        camera_rot_rad: max rotation of each camera about a random axis.
        friction_rel: max relative change of every geom's sliding friction.
        mass_rel: max relative change of block masses.
        latency_ns: max extra latency added to every stream (uniform per episode).
    """

    color_jitter: float = 0.08
    size_rel: float = 0.08
    light: float = 0.3
    camera_pos_m: float = 0.01
    camera_rot_rad: float = 0.03
    friction_rel: float = 0.2
    mass_rel: float = 0.3
    latency_ns: int = 10_000_000

    def __post_init__(self) -> None:
        if not 0 <= self.size_rel < 0.15:
            raise ConfigError(
                f"size_rel must be in [0, 0.15) so sizes keep their names, got {self.size_rel}"
            )
        if not 0 <= self.color_jitter <= 0.15:
            raise ConfigError(
                f"color_jitter must be in [0, 0.15] so colours keep their names, got {self.color_jitter}"
            )
        for k in ("light", "camera_pos_m", "camera_rot_rad", "friction_rel", "mass_rel"):
            v = getattr(self, k)
            if not 0 <= v < 1:
                raise ConfigError(f"{k} must be in [0, 1), got {v}")
        if self.latency_ns < 0:
            raise ConfigError(f"latency_ns must be >= 0, got {self.latency_ns}")


def _quat_mul(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    w1, x1, y1, z1 = a
    w2, x2, y2, z2 = b
    return np.array(
        [
            w1 * w2 - x1 * x2 - y1 * y2 - z1 * z2,
            w1 * x2 + x1 * w2 + y1 * z2 - z1 * y2,
            w1 * y2 - x1 * z2 + y1 * w2 + z1 * x2,
            w1 * z2 + x1 * y2 - y1 * x2 + z1 * w2,
        ]
    )


def apply_randomization(
    scene: Scene, cfg: Randomization | None, rng: np.random.Generator, drivers: list[SimDriver]
) -> dict[str, float]:
    """Reset the model to nominal, then (when ``cfg``) perturb it; returns a summary."""
    m, nom = scene.model, scene.nominal
    m.geom_friction[:] = nom["geom_friction"]
    m.body_mass[:] = nom["body_mass"]
    m.body_inertia[:] = nom["body_inertia"]
    m.geom_rgba[:] = nom["geom_rgba"]
    m.geom_size[:] = nom["geom_size"]
    m.geom_rbound[:] = nom["geom_rbound"]
    m.geom_aabb[:] = nom["geom_aabb"]
    m.cam_pos[:] = nom["cam_pos"]
    m.cam_quat[:] = nom["cam_quat"]
    m.light_diffuse[:] = nom["light_diffuse"]
    m.light_pos[:] = nom["light_pos"]
    for d in drivers:
        d.latency_ns = int(d.config.latency_ns)
    if cfg is None:
        if scene.randomized:
            _recompute_constants(scene)
            scene.randomized = False
        return {}
    scene.randomized = True
    ids = scene.ids
    for b, g in ids.block_geom.items():
        m.geom_rgba[g, :3] = np.clip(
            nom["geom_rgba"][g, :3] + rng.uniform(-1, 1, 3) * cfg.color_jitter, 0, 1
        )
        s = 1.0 + rng.uniform(-cfg.size_rel, cfg.size_rel)
        m.geom_size[g] = nom["geom_size"][g] * s
        m.geom_rbound[g] = nom["geom_rbound"][g] * s
        m.geom_aabb[g, 3:] = nom["geom_aabb"][g, 3:] * s  # the collision bounding box too
        body = ids.block_body[b]
        k = (1.0 + rng.uniform(-cfg.mass_rel, cfg.mass_rel)) * s**3
        m.body_mass[body] = nom["body_mass"][body] * k
        m.body_inertia[body] = nom["body_inertia"][body] * k * s**2
    m.geom_friction[:, 0] = nom["geom_friction"][:, 0] * (
        1.0 + rng.uniform(-cfg.friction_rel, cfg.friction_rel, m.ngeom)
    )
    li = ids.light
    m.light_diffuse[li] = nom["light_diffuse"][li] * (1.0 + rng.uniform(-cfg.light, cfg.light))
    m.light_pos[li] = nom["light_pos"][li] + rng.uniform(-1, 1, 3) * cfg.light / 10
    for c in (ids.scene_cam, ids.wrist_cam):
        m.cam_pos[c] = nom["cam_pos"][c] + rng.uniform(-1, 1, 3) * cfg.camera_pos_m
        axis = rng.normal(size=3)
        axis /= np.linalg.norm(axis)
        ang = rng.uniform(-cfg.camera_rot_rad, cfg.camera_rot_rad)
        dq = np.concatenate([[np.cos(ang / 2)], np.sin(ang / 2) * axis])
        m.cam_quat[c] = _quat_mul(nom["cam_quat"][c], dq)
    extra = int(rng.integers(0, cfg.latency_ns + 1)) if cfg.latency_ns else 0
    for d in drivers:
        d.latency_ns = int(d.config.latency_ns) + extra
    _recompute_constants(scene)
    return {"extra_latency_ns": float(extra)}


def _recompute_constants(scene: Scene) -> None:
    """Recompute the model's derived constants (inverse weights that scale constraint
    softness) after masses changed; stale ones make light contacts unstable. The data is
    used as workspace: call before resetting it."""
    scene.mujoco.mj_setConst(scene.model, scene.data)
