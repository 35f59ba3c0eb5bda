"""The MuJoCo tabletop scene: model loading, element ids, the Cartesian controller.

The arm is commanded like a real arm with a Cartesian interface: an end-effector delta pose
is turned into joint position targets by damped-least-squares inverse kinematics on the
site Jacobian (``mj_jacSite``), and the joint servos track them.
"""

from __future__ import annotations

import logging
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np

from mmrobot.core.deps import require
from mmrobot.core.errors import ConfigError
from mmrobot.envs import names
from mmrobot.envs.projection import CameraProjection

__all__ = [
    "DEFAULT_SCENE_PATH",
    "HOME_TCP_POS_M",
    "Scene",
    "SceneState",
    "Visuals",
    "available_scenes",
    "choose_gl_backend",
    "rotvec_to_mat",
    "mat_to_rotvec",
]

Visuals = Literal["fast", "pretty"]


def choose_gl_backend() -> str:
    """Pick MuJoCo's headless GL backend before ``mujoco`` is imported.

    A user's ``MUJOCO_GL`` is kept. Without a display (Linux, no ``DISPLAY`` or
    ``WAYLAND_DISPLAY``) it is ``egl`` when ``libEGL`` loads (GPU or Mesa EGL), else ``osmesa``
    (software; needs the libosmesa6 package). With a display MuJoCo's default (GLFW) is used.

    Returns:
        The backend now in ``MUJOCO_GL`` ("" when left to MuJoCo).
    """
    import ctypes.util
    import sys

    if "MUJOCO_GL" in os.environ or "mujoco" in sys.modules:
        return os.environ.get("MUJOCO_GL", "")
    if sys.platform.startswith("linux") and not (
        os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")
    ):
        backend = "osmesa"
        for lib in ("libEGL.so.1", ctypes.util.find_library("EGL")):
            if not lib:
                continue
            try:
                ctypes.CDLL(lib)
            except OSError:
                continue
            backend = "egl"
            break
        os.environ["MUJOCO_GL"] = backend
        if backend == "osmesa":
            os.environ.setdefault("PYOPENGL_PLATFORM", "osmesa")
        return backend
    return ""


_log = logging.getLogger("mmrobot.envs")


def _route_mujoco_warnings(mujoco: Any) -> None:
    """Send MuJoCo's warnings to logging instead of stderr and ./MUJOCO_LOG.TXT (once).

    A handler someone else installed is left alone. The environment still sees every
    warning through ``MjData.warning`` counters (that is how it detects a blow-up).
    """
    if mujoco.get_mju_user_warning() is None:
        mujoco.set_mju_user_warning(lambda msg: _log.warning("MuJoCo: %s", msg))


def _envs_dir() -> Path:
    env = os.environ.get("MMROBOT_ENVS_DIR")
    return Path(env) if env else Path(__file__).resolve().parents[2] / "envs"


DEFAULT_SCENE_PATH: Path = _envs_dir() / "tabletop.xml"
#: Where the tool centre point rests at the start of an episode (base frame, metres).
HOME_TCP_POS_M = np.array([0.38, 0.0, 0.22])
#: Tool pointing down, fingers closing along the base y axis.
HOME_TCP_MAT = np.array([[-1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, -1.0]])


def available_scenes() -> list[str]:
    """The MJCF files shipped in ``envs/``."""
    return sorted(str(p) for p in _envs_dir().glob("*.xml"))


# rotvec_to_mat and mat_to_rotvec run several times per IK solve (the 100 Hz robot tick,
# the simulator's controller, the scripted expert), so a float64 argument takes scalar
# arithmetic in the same order as the array expressions, with numpy's own arccos, sin, cos,
# dot and matmul where libm or BLAS could round differently: the results are the same bits
# (tests/envs/test_env_ik_equivalence.py); anything else takes the array code.
_EYE3 = np.eye(3)
_EYE3.flags.writeable = False


def rotvec_to_mat(rv: np.ndarray) -> np.ndarray:
    """Rotation vector (3,) -> rotation matrix (3, 3) (Rodrigues)."""
    if type(rv) is not np.ndarray or rv.dtype != np.float64 or rv.shape != (3,):
        return _rotvec_to_mat_arrays(rv)
    theta = math.sqrt(rv.dot(rv))  # np.linalg.norm of a vector
    if theta < 1e-12:
        return np.eye(3)
    k0, k1, k2 = (rv / theta).tolist()
    kx = np.array([[0.0, -k2, k1], [k2, 0.0, -k0], [-k1, k0, 0.0]])
    # eye + sin * kx + ((1 - cos) * kx) @ kx, as the array expression groups it
    out = ((1.0 - _cos(theta)) * kx) @ kx
    out += _EYE3 + _sin(theta) * kx
    return out


def _rotvec_to_mat_arrays(rv: np.ndarray) -> np.ndarray:
    theta = float(np.linalg.norm(rv))
    if theta < 1e-12:
        return np.eye(3)
    k = rv / theta
    kx = np.array([[0, -k[2], k[1]], [k[2], 0, -k[0]], [-k[1], k[0], 0]])
    return np.eye(3) + np.sin(theta) * kx + (1 - np.cos(theta)) * kx @ kx


def mat_to_rotvec(r: np.ndarray) -> np.ndarray:
    """Rotation matrix (3, 3) -> rotation vector (3,)."""
    if type(r) is not np.ndarray or r.dtype != np.float64 or r.shape != (3, 3):
        return _mat_to_rotvec_arrays(r)
    (r00, r01, r02), (r10, r11, r12), (r20, r21, r22) = r.tolist()
    cos = ((r00 + r11 + r22) - 1.0) / 2.0  # np.trace adds the diagonal in this order
    if cos < -1.0:
        cos = -1.0
    elif cos > 1.0:
        cos = 1.0
    theta = float(_arccos(cos))
    if theta < 1e-9:
        return np.zeros(3)
    if theta > np.pi - 1e-6:
        return _mat_to_rotvec_arrays(r)
    s = 2.0 * float(_sin(theta))
    return np.array([(r21 - r12) * theta / s, (r02 - r20) * theta / s, (r10 - r01) * theta / s])


def _mat_to_rotvec_arrays(r: np.ndarray) -> np.ndarray:
    cos = np.clip((np.trace(r) - 1) / 2, -1.0, 1.0)
    theta = float(np.arccos(cos))
    if theta < 1e-9:
        return np.zeros(3)
    if theta > np.pi - 1e-6:
        # axis from the symmetric part
        m = (r + np.eye(3)) / 2
        axis = np.sqrt(np.clip(np.diag(m), 0, None))
        i = int(np.argmax(axis))
        axis = m[:, i] / np.sqrt(m[i, i])
        return axis * theta
    w = np.array([r[2, 1] - r[1, 2], r[0, 2] - r[2, 0], r[1, 0] - r[0, 1]])
    return w * theta / (2 * np.sin(theta))


_arccos, _sin, _cos = np.arccos, np.sin, np.cos

try:  # the gufunc behind np.linalg.solve(a, b) for a vector b (same LAPACK call, same bits)
    from numpy.linalg import _umath_linalg

    _solve1: Any = _umath_linalg.solve1
except (ImportError, AttributeError):  # pragma: no cover - a numpy without it
    _solve1 = None


@dataclass(frozen=True)
class SceneState:
    """A snapshot of a :class:`Scene`: everything its future depends on.

    Attributes:
        physics: MuJoCo's integration state (``mj_getState`` with ``mjSTATE_INTEGRATION``:
            time, joint positions and velocities, actuator activations, controls, ...).
        target_pos: (3,) the Cartesian controller's target position.
        target_mat: (3, 3) its target rotation.
    """

    physics: np.ndarray
    target_pos: np.ndarray
    target_mat: np.ndarray


@dataclass(frozen=True)
class _Ids:
    arm_qpos: np.ndarray  # (6,) qpos addresses
    arm_dof: np.ndarray  # (6,) dof addresses
    arm_act: np.ndarray  # (6,)
    finger_qpos: np.ndarray  # (2,)
    finger_dof: np.ndarray  # (2,)
    finger_geom: np.ndarray  # (2,) left, right
    gripper_act: int
    tcp_site: int
    lidar_site: int
    base_body: int
    hand_body: int
    scene_cam: int
    wrist_cam: int
    ft_force_adr: int
    ft_torque_adr: int
    block_body: dict[tuple[str, str], int]
    block_geom: dict[tuple[str, str], int]
    block_qpos: dict[tuple[str, str], int]
    block_dof: dict[tuple[str, str], int]
    zone_pos: dict[str, np.ndarray]
    bin_pos: np.ndarray
    light: int


class Scene:
    """One MuJoCo model + data of the tabletop scene with the arm's controller.

    Args:
        xml_path: MJCF file; default ``envs/tabletop.xml`` (or ``$MMROBOT_ENVS_DIR``).
        visuals: ``"fast"`` (no shadows, no multisampling: the training default) or
            ``"pretty"`` (4096 shadow map, 4x anti-aliasing: for videos).

    Raises:
        FileNotFoundError: the MJCF file does not exist (the message lists shipped scenes).
        ConfigError: the file does not parse or lacks an element the code needs.
    """

    def __init__(self, xml_path: str | os.PathLike[str] | None = None, visuals: Visuals = "fast"):
        choose_gl_backend()
        mujoco = require("mujoco", "the MuJoCo tabletop simulation")
        _route_mujoco_warnings(mujoco)
        self.mujoco = mujoco
        path = Path(xml_path) if xml_path is not None else DEFAULT_SCENE_PATH
        if not path.is_file():
            raise FileNotFoundError(
                f"MJCF scene {str(path)!r} does not exist; shipped scenes: {available_scenes()}"
            )
        try:
            self.model = mujoco.MjModel.from_xml_path(str(path))
        except ValueError as e:
            raise ConfigError(f"MJCF scene {str(path)!r} does not load: {e}") from e
        if visuals not in ("fast", "pretty"):
            raise ConfigError(f"visuals must be 'fast' or 'pretty', got {visuals!r}")
        if visuals == "pretty":
            self.model.vis.quality.shadowsize = 4096
            self.model.vis.quality.offsamples = 4
        self.path = path
        self.visuals = visuals
        self.data = mujoco.MjData(self.model)
        self._renderers: dict[tuple[int, int, bool], Any] = {}
        self.randomized = False  # whether the model differs from the nominal one
        self.ids = self._resolve_ids()
        self._scratch = mujoco.MjData(self.model)
        # mj_jacSite's two outputs, stacked: the IK copies the arm's columns out in one go
        self._jac_rows = np.zeros((6, self.model.nv))
        self._jacp, self._jacr = self._jac_rows[:3], self._jac_rows[3:]
        self.arm_range = self.model.jnt_range[[self._jid(j) for j in names.ARM_JOINTS]].copy()
        adr = self.ids.arm_qpos
        contiguous = bool(np.all(np.diff(adr) == 1))
        self._arm_qpos_index: slice | np.ndarray = (
            slice(int(adr[0]), int(adr[-1]) + 1) if contiguous else adr
        )
        dof = self.ids.arm_dof
        self._arm_dof_index: slice | np.ndarray = (
            slice(int(dof[0]), int(dof[-1]) + 1) if bool(np.all(np.diff(dof) == 1)) else dof
        )
        # Fortran order: the layout np.vstack of the column-indexed halves had, which decides
        # how BLAS sums jac.T @ x (so the result keeps its last bit)
        self._ik_err, self._ik_jac = np.zeros(6), np.zeros((6, 6), order="F")
        self._ik_reg_damping, self._ik_reg = float("nan"), np.zeros((6, 6))
        self._target_pos, self._target_mat = np.zeros(3), np.eye(3)
        self.home_qpos = self.solve_ik(HOME_TCP_POS_M, HOME_TCP_MAT, q0=_HOME_GUESS, iters=200)
        # nominal values that domain randomization perturbs
        self.nominal = {
            "geom_friction": self.model.geom_friction.copy(),
            "body_mass": self.model.body_mass.copy(),
            "body_inertia": self.model.body_inertia.copy(),
            "geom_rgba": self.model.geom_rgba.copy(),
            "geom_size": self.model.geom_size.copy(),
            "geom_rbound": self.model.geom_rbound.copy(),
            "geom_aabb": self.model.geom_aabb.copy(),
            "cam_pos": self.model.cam_pos.copy(),
            "cam_quat": self.model.cam_quat.copy(),
            "light_diffuse": self.model.light_diffuse.copy(),
            "light_pos": self.model.light_pos.copy(),
        }

    def shared_renderer(self, height: int, width: int, depth: bool = False) -> Any:
        """One offscreen renderer per (size, depth) shared by the cameras that use it.

        One GL context serves every camera of a size, so rendering two cameras does not
        switch contexts. Made lazily, in the process that renders (GL does not survive fork).
        """
        key = (height, width, depth)
        r = self._renderers.get(key)
        if r is None:
            r = self._renderers[key] = self.renderer(height, width, depth)
        return r

    def close(self) -> None:
        """Free the renderers' GL contexts."""
        for r in self._renderers.values():
            r.close()
        self._renderers.clear()

    def renderer(self, height: int, width: int, depth: bool = False) -> Any:
        """A new offscreen ``mujoco.Renderer`` (one GL context; make it in the process using it)."""
        vis = self.model.vis.global_
        vis.offwidth = max(int(vis.offwidth), width)
        vis.offheight = max(int(vis.offheight), height)
        try:
            r = self.mujoco.Renderer(self.model, height, width)
        except Exception as e:
            raise RuntimeError(
                f"cannot create a MuJoCo renderer (MUJOCO_GL={os.environ.get('MUJOCO_GL', '')!r}): "
                f"{e}. Without a display set MUJOCO_GL=egl (or osmesa) before mujoco is first "
                "imported, e.g. import mmrobot.envs first or export MUJOCO_GL=egl"
            ) from e
        if depth:
            r.enable_depth_rendering()
        return r

    # ------------------------------------------------------------------ ids
    def _jid(self, name: str) -> int:
        return self._id("joint", name)

    def _id(self, kind: str, name: str) -> int:
        obj = getattr(self.mujoco.mjtObj, f"mjOBJ_{kind.upper()}")
        i = self.mujoco.mj_name2id(self.model, obj, name)
        if i < 0:
            raise ConfigError(
                f"MJCF scene {str(self.path)!r} has no {kind} named {name!r}; the scene must "
                "define every element named in mmrobot/envs/names.py"
            )
        return int(i)

    def _resolve_ids(self) -> _Ids:
        m = self.model
        arm_j = [self._jid(j) for j in names.ARM_JOINTS]
        fing_j = [self._jid(j) for j in names.FINGER_JOINTS]
        blocks = [(c, s) for c in names.COLORS for s in names.SIZES]
        block_j = {b: self._jid(names.block_joint(*b)) for b in blocks}
        return _Ids(
            arm_qpos=m.jnt_qposadr[arm_j].copy(),
            arm_dof=m.jnt_dofadr[arm_j].copy(),
            arm_act=np.array([self._id("actuator", a) for a in names.ARM_ACTUATORS]),
            finger_qpos=m.jnt_qposadr[fing_j].copy(),
            finger_dof=m.jnt_dofadr[fing_j].copy(),
            finger_geom=np.array([self._id("geom", g) for g in names.FINGER_GEOMS]),
            gripper_act=self._id("actuator", names.GRIPPER_ACTUATOR),
            tcp_site=self._id("site", names.TCP_SITE),
            lidar_site=self._id("site", names.LIDAR_SITE),
            base_body=self._id("body", names.BASE_BODY),
            hand_body=self._id("body", names.HAND_BODY),
            scene_cam=self._id("camera", names.SCENE_CAMERA),
            wrist_cam=self._id("camera", names.WRIST_CAMERA),
            ft_force_adr=int(m.sensor_adr[self._id("sensor", names.FT_FORCE_SENSOR)]),
            ft_torque_adr=int(m.sensor_adr[self._id("sensor", names.FT_TORQUE_SENSOR)]),
            block_body={b: self._id("body", names.block_body(*b)) for b in blocks},
            block_geom={b: self._id("geom", names.block_geom(*b)) for b in blocks},
            block_qpos={b: int(m.jnt_qposadr[j]) for b, j in block_j.items()},
            block_dof={b: int(m.jnt_dofadr[j]) for b, j in block_j.items()},
            zone_pos={
                z: m.geom_pos[self._id("geom", names.zone_geom(z))].copy() for z in names.ZONES
            },
            bin_pos=m.body_pos[self._id("body", names.BIN_BODY)].copy(),
            light=self._id("light", names.KEY_LIGHT),
        )

    # ------------------------------------------------------------------ state
    @property
    def arm_qpos(self) -> np.ndarray:
        """(6,) arm joint angles, rad."""
        return self.data.qpos[self.ids.arm_qpos]

    @property
    def arm_qvel(self) -> np.ndarray:
        return self.data.qvel[self.ids.arm_dof]

    @property
    def gripper_opening_m(self) -> float:
        """Distance between the finger pads, metres."""
        return float(self.data.qpos[self.ids.finger_qpos].sum())

    def touching(self, geom_a: int, geom_b: int) -> bool:
        """Whether two geoms are in contact (in the last step's contact list)."""
        d = self.data
        n = int(d.ncon)
        if n == 0:
            return False
        g1, g2 = d.contact.geom1[:n], d.contact.geom2[:n]
        hit = ((g1 == geom_a) & (g2 == geom_b)) | ((g1 == geom_b) & (g2 == geom_a))
        return bool((hit & (d.contact.dist[:n] <= 0.0)).any())

    def tcp_pose(self, data: Any = None) -> tuple[np.ndarray, np.ndarray]:
        """Tool centre point position (3,) and rotation matrix (3, 3) in the base frame."""
        d = self.data if data is None else data
        i = self.ids.tcp_site
        return d.site_xpos[i].copy(), d.site_xmat[i].reshape(3, 3).copy()

    def fixed_cameras(self) -> list[str]:
        """The names of the cameras fixed to the world (not on a moving body)."""
        m = self.mujoco
        return [
            m.mj_id2name(self.model, m.mjtObj.mjOBJ_CAMERA, i)
            for i in range(self.model.ncam)
            if self.model.cam_bodyid[i] == 0
        ]

    def camera_projection(self, camera: str, height: int, width: int) -> CameraProjection:
        """The pinhole projection of ``camera`` (an MJCF camera name) into a ``height`` x
        ``width`` image, from its pose in the current state and its ``fovy``. For a camera
        fixed to the world, as the scene camera is, the pose never changes (domain
        randomization moves it by up to 1 cm and 0.03 rad)."""
        i = self._id("camera", camera)
        mj = self.mujoco  # the camera poses from qpos (the state itself is kept)
        for stage in (mj.mj_kinematics, mj.mj_comPos, mj.mj_camlight):
            stage(self.model, self.data)
        rot = self.data.cam_xmat[i].reshape(3, 3)
        return CameraProjection(
            position=tuple(float(x) for x in self.data.cam_xpos[i]),
            rotation=tuple(tuple(float(x) for x in row) for row in rot),
            fovy_deg=float(self.model.cam_fovy[i]),
            height=height,
            width=width,
        )

    def commanded_pose(self) -> tuple[np.ndarray, np.ndarray]:
        """The Cartesian controller's current target: position (3,), rotation (3, 3)."""
        return self._target_pos.copy(), self._target_mat.copy()

    def block_pos(self, color: str, size: str) -> np.ndarray:
        return self.data.xpos[self.ids.block_body[(color, size)]].copy()

    def blocks_on_table(self) -> list[tuple[str, str]]:
        """The blocks the layout put on the table (parked blocks wait below it)."""
        return [b for b in self.ids.block_body if self.block_pos(*b)[2] > 0.0]

    def block_mat(self, color: str, size: str) -> np.ndarray:
        return self.data.xmat[self.ids.block_body[(color, size)]].reshape(3, 3).copy()

    def block_half_m(self, color: str, size: str) -> float:
        return float(self.model.geom_size[self.ids.block_geom[(color, size)], 0])

    def set_block_pose(self, block: tuple[str, str], pos: np.ndarray, yaw_rad: float) -> None:
        adr = self.ids.block_qpos[block]
        self.data.qpos[adr : adr + 3] = pos
        self.data.qpos[adr + 3 : adr + 7] = [np.cos(yaw_rad / 2), 0, 0, np.sin(yaw_rad / 2)]
        dof = self.ids.block_dof[block]
        self.data.qvel[dof : dof + 6] = 0

    def reset_arm(self, qpos: np.ndarray, gripper_open: float = 1.0) -> None:
        self.data.qpos[self.ids.arm_qpos] = qpos
        self.data.qvel[self.ids.arm_dof] = 0
        half = 0.5 * names.GRIPPER_MAX_OPENING_M * gripper_open
        self.data.qpos[self.ids.finger_qpos] = half
        self.data.qvel[self.ids.finger_dof] = 0
        self.data.ctrl[self.ids.arm_act] = qpos
        self.data.ctrl[self.ids.gripper_act] = half
        self.mujoco.mj_forward(self.model, self.data)
        self._target_pos, self._target_mat = self.tcp_pose()

    def get_state(self) -> SceneState:
        """Snapshot the physics and the controller (see :meth:`set_state`)."""
        mj = self.mujoco
        sig = mj.mjtState.mjSTATE_INTEGRATION
        out = np.empty(mj.mj_stateSize(self.model, sig))
        mj.mj_getState(self.model, self.data, out, sig)
        return SceneState(out, self._target_pos.copy(), self._target_mat.copy())

    def set_state(self, state: SceneState) -> None:
        """Restore a :meth:`get_state` snapshot of this model (e.g. to label a state again).

        Positions, contacts and sensors are recomputed (``mj_forward``). Simulated sensor
        buffers are not part of the scene and are left as they are.
        """
        mj = self.mujoco
        sig = mj.mjtState.mjSTATE_INTEGRATION
        if state.physics.shape != (mj.mj_stateSize(self.model, sig),):
            raise ConfigError(
                f"scene state has {state.physics.shape} values, this model needs "
                f"{mj.mj_stateSize(self.model, sig)}: a snapshot of another model"
            )
        mj.mj_setState(self.model, self.data, state.physics, sig)
        mj.mj_forward(self.model, self.data)
        self._target_pos, self._target_mat = state.target_pos.copy(), state.target_mat.copy()

    # ------------------------------------------------------------------ control
    def solve_ik(
        self,
        pos: np.ndarray,
        mat: np.ndarray,
        q0: np.ndarray | None = None,
        iters: int = 3,
        damping: float = 0.02,
    ) -> np.ndarray:
        """Arm joint angles (6,) that put the TCP at ``pos`` with rotation ``mat``.

        Damped least squares on the TCP site Jacobian, iterated ``iters`` times from ``q0``
        (default: the current joint angles) on a scratch copy of the state; clipped to the
        joint limits.
        """
        # The tick's hot path (tests/envs/test_env_ik_equivalence.py holds it to the plain
        # version): views instead of copies, preallocated error and Jacobian arrays, and the
        # same floating-point operations in the same order, so the angles are the same bits.
        mj, model, d = self.mujoco, self.model, self._scratch
        d.qpos[:] = self.data.qpos
        q = (self.arm_qpos if q0 is None else np.asarray(q0, dtype=np.float64)).copy()
        qpos, qadr, site = d.qpos, self._arm_qpos_index, self.ids.tcp_site
        cur_p, cur_r_t = d.site_xpos[site], d.site_xmat[site].reshape(3, 3).T
        err, jac, jacp, jacr = self._ik_err, self._ik_jac, self._jacp, self._jacr
        jac_rows, dof = self._jac_rows, self._arm_dof_index
        reg = self._ik_damping(damping)
        # damping > 0 with a finite error: a positive definite system, which np.linalg.solve
        # would pass straight to its LAPACK gufunc (its wrapper costs more than the solve)
        fast_solve = _solve1 is not None and damping > 0
        low, high = self.arm_range[:, 0], self.arm_range[:, 1]
        for _ in range(iters):
            qpos[qadr] = q
            mj.mj_kinematics(model, d)
            np.subtract(pos, cur_p, out=err[:3])
            err[3:] = mat_to_rotvec(mat @ cur_r_t)
            sq = err @ err
            if sq < 1e-12:  # within 1 micrometre / microradian
                break
            mj.mj_comPos(model, d)  # mj_jacSite needs the com-based frames it computes
            mj.mj_jacSite(model, d, jacp, jacr, site)
            jac[...] = jac_rows[:, dof]
            a = jac @ jac.T + reg
            if fast_solve and sq < math.inf:
                x = _solve1(a, err, signature="dd->d")
            else:  # non-finite error or no damping: np.linalg.solve's checks and errors
                x = np.linalg.solve(a, err)
            dq = jac.T @ x
            q = (q + dq).clip(low, high)  # np.clip's ufunc, without its Python wrapper
        return q

    def _ik_damping(self, damping: float) -> np.ndarray:
        """``damping**2 * I`` (6, 6), kept for the last damping used."""
        if damping != self._ik_reg_damping:
            self._ik_reg = damping**2 * np.eye(6)
            self._ik_reg_damping = damping
        return self._ik_reg

    def command_delta_pose(self, delta: np.ndarray) -> np.ndarray:
        """Set the arm servo targets for a TCP delta pose.

        Args:
            delta: (6,) [dx, dy, dz (m), droll, dpitch, dyaw (rad)] in the base frame; the
                rotation is a rotation vector applied on the left of the current rotation.

        Returns:
            (6,) the joint targets written to the actuators.
        """
        pos, mat = self.tcp_pose()
        # The target accumulates the deltas (exact tracking in free space) but is held within
        # a leash of the measured pose, so a blocked arm does not wind up.
        target_p = self._target_pos + delta[:3]
        off = target_p - pos
        n = math.sqrt(off.dot(off))  # np.linalg.norm of a vector, without its wrapper
        if n > _LEASH_M:
            target_p = pos + off * (_LEASH_M / n)
        target_r = rotvec_to_mat(delta[3:6]) @ self._target_mat
        rv = mat_to_rotvec(target_r @ mat.T)
        a = math.sqrt(rv.dot(rv))
        if a > _LEASH_RAD:
            target_r = rotvec_to_mat(rv * (_LEASH_RAD / a)) @ mat
        self._target_pos, self._target_mat = target_p, target_r
        q = self.solve_ik(target_p, target_r, q0=self.data.ctrl[self.ids.arm_act], iters=5)
        self.data.ctrl[self.ids.arm_act] = q
        return q

    def command_joints(self, q: np.ndarray) -> None:
        """Set the arm servo targets (6,) rad, clipped to the joint limits."""
        self.data.ctrl[self.ids.arm_act] = np.clip(q, self.arm_range[:, 0], self.arm_range[:, 1])

    def command_gripper(self, opening: float) -> None:
        """Gripper command in [0 closed, 1 open]."""
        g = float(np.clip(opening, 0.0, 1.0))
        self.data.ctrl[self.ids.gripper_act] = 0.5 * names.GRIPPER_MAX_OPENING_M * g


_LEASH_M = 0.03
_LEASH_RAD = 0.2
# A pose near the home pose (elbow up, wrist down) to start the home IK from.
_HOME_GUESS = np.array([0.0, 0.6, 1.5, 0.0, 1.0, 0.0])
