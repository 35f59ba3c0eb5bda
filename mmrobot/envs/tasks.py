"""The tabletop task suite: task specs (one-line text form), initial states, success detectors.

A task spec reads ``<task> key=value ...``, e.g. ``pick color=red size=small`` or
``stack color=red size=small base_color=blue base_size=large``. Parameters left out are
drawn from the episode's seed at reset, so ``pick`` alone means "pick some block".
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from mmrobot.core.errors import ConfigError
from mmrobot.envs import names

if TYPE_CHECKING:
    from mmrobot.envs.scene import Scene

__all__ = [
    "TASKS",
    "TaskDef",
    "TaskSpec",
    "Layout",
    "goal_position",
    "is_held",
    "is_success",
    "list_tasks",
    "reach_target",
    "sample_layout",
]

Block = tuple[str, str]  # (color, size)


@dataclass(frozen=True)
class TaskDef:
    """What a task is: its parameters, episode length and a one-line description."""

    name: str
    params: tuple[str, ...]
    max_steps: int
    description: str


TASKS: dict[str, TaskDef] = {
    t.name: t
    for t in (
        TaskDef("reach", ("color", "size"), 60, "move the gripper just above a block"),
        TaskDef("push", ("color", "size", "zone"), 160, "push a block into a target zone"),
        TaskDef("pick", ("color", "size"), 100, "grasp a block and lift it 8 cm"),
        TaskDef("place", ("color", "size"), 180, "put a block into the bin"),
        TaskDef(
            "stack",
            ("color", "size", "base_color", "base_size"),
            200,
            "put a block on top of another block",
        ),
    )
}

_VALID = {
    "color": names.COLORS,
    "size": names.SIZES,
    "zone": names.ZONES,
    "base_color": names.COLORS,
    "base_size": names.SIZES,
}


@dataclass(frozen=True)
class TaskSpec:
    """A task with (some of) its parameters.

    Attributes:
        task: one of :data:`TASKS`.
        params: parameter -> value; a missing parameter is drawn at reset.
    """

    task: str
    params: Mapping[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.task not in TASKS:
            raise ConfigError(f"unknown task {self.task!r}; valid tasks: {list(TASKS)}")
        allowed = TASKS[self.task].params
        for k, v in self.params.items():
            if k not in allowed:
                raise ConfigError(
                    f"task {self.task!r} has no parameter {k!r}; its parameters: {list(allowed)}"
                )
            if v not in _VALID[k]:
                raise ConfigError(
                    f"unknown {k} {v!r} for task {self.task!r}; valid: {list(_VALID[k])}"
                )
        p = self.params
        if (
            self.task == "stack"
            and "base_color" in p
            and "color" in p
            and p["color"] == p["base_color"]
            and p.get("size") is not None
            and p.get("size") == p.get("base_size")
        ):
            raise ConfigError("stack: the block and its base must be different blocks")
        object.__setattr__(
            self, "params", dict(sorted(p.items(), key=lambda kv: allowed.index(kv[0])))
        )

    @classmethod
    def parse(cls, text: str) -> TaskSpec:
        """Read the one-line form ``<task> key=value ...``."""
        parts = text.split()
        if not parts:
            raise ConfigError(f"empty task spec; valid tasks: {list(TASKS)}")
        params: dict[str, str] = {}
        for p in parts[1:]:
            key, eq, value = p.partition("=")
            if not eq or not key or not value:
                raise ConfigError(
                    f"task spec {text!r}: {p!r} is not key=value (e.g. 'pick color=red size=small')"
                )
            params[key.replace("-", "_")] = value.lower()
        return cls(parts[0].lower(), params)

    def format(self) -> str:
        """The one-line text form; ``TaskSpec.parse(spec.format()) == spec``."""
        return " ".join([self.task, *(f"{k}={v}" for k, v in self.params.items())])

    def __str__(self) -> str:
        return self.format()

    @property
    def complete(self) -> bool:
        return all(k in self.params for k in TASKS[self.task].params)

    @property
    def max_steps(self) -> int:
        return TASKS[self.task].max_steps

    @property
    def block(self) -> Block:
        return (self.params["color"], self.params["size"])

    @property
    def base_block(self) -> Block:
        return (self.params["base_color"], self.params["base_size"])

    @property
    def blocks(self) -> list[tuple[str | None, str | None]]:
        """(colour, size) of every block the spec names: its block and a stack's base; None
        where the spec leaves a parameter open."""
        p = self.params
        named = [(p.get("color"), p.get("size"))]
        if self.task == "stack":
            named.append((p.get("base_color"), p.get("base_size")))
        return named

    def resolve(self, rng: np.random.Generator) -> TaskSpec:
        """Fill the missing parameters by drawing from ``rng``."""
        p = dict(self.params)
        for k in TASKS[self.task].params:
            if k not in p:
                p[k] = str(rng.choice(_VALID[k]))
        if self.task == "stack" and (p["color"], p["size"]) == (p["base_color"], p["base_size"]):
            options = [c for c in names.COLORS if c != p["color"]]
            if "base_color" in self.params:  # the base was given: move the top block
                p["color"] = str(rng.choice([c for c in names.COLORS if c != p["base_color"]]))
            else:
                p["base_color"] = str(rng.choice(options))
        return TaskSpec(self.task, p)


def list_tasks() -> list[str]:
    """One line per task: its text form with every parameter and the valid values."""
    out = []
    for t in TASKS.values():
        ps = " ".join(f"{k}={'|'.join(_VALID[k])}" for k in t.params)
        out.append(f"{t.name} {ps}  -- {t.description} ({t.max_steps} steps)")
    return out


# --------------------------------------------------------------------------- layouts

SPAWN_X_M = (0.32, 0.56)
SPAWN_Y_M = (-0.18, 0.18)
MIN_SEPARATION_M = 0.1
# where unused blocks wait: on the floor under the table, out of every sensor's view
_PARK_X_M = 0.75


@dataclass(frozen=True)
class Layout:
    """Initial block poses: block -> (position (3,), yaw rad). Blocks not listed are parked."""

    poses: Mapping[Block, tuple[np.ndarray, float]]


def _all_blocks() -> list[Block]:
    return [(c, s) for c in names.COLORS for s in names.SIZES]


def _sample_xy(rng: np.random.Generator) -> np.ndarray:
    return np.array([rng.uniform(*SPAWN_X_M), rng.uniform(*SPAWN_Y_M)])


def _seg_dist(p: np.ndarray, a: np.ndarray, b: np.ndarray) -> float:
    ab = b - a
    t = float(np.clip((p - a) @ ab / max(ab @ ab, 1e-12), 0, 1))
    return float(np.linalg.norm(p - (a + t * ab)))


def sample_layout(
    spec: TaskSpec,
    scene: Scene,
    rng: np.random.Generator,
    n_distractors: int = 2,
    unique_colors: Collection[str] = (),
) -> Layout:
    """Random initial poses of the task's block(s) and ``n_distractors`` other blocks.

    ``spec`` must be complete (see :meth:`TaskSpec.resolve`). No distractor has one of
    ``unique_colors`` (the colours an instruction names without a size).
    """
    main = spec.blocks  # a complete spec: every colour and size given
    placed: dict[Block, np.ndarray] = {}
    keep_clear: list[tuple[np.ndarray, np.ndarray]] = []  # segments distractors avoid
    for _ in range(1000):
        xy = _sample_xy(rng)
        if spec.task == "push":
            zone = scene.ids.zone_pos[spec.params["zone"]][:2]
            d = float(np.linalg.norm(zone - xy))
            if not (0.12 <= d <= 0.2):
                continue
            behind = xy - (zone - xy) / d * 0.08  # where the pusher starts
            keep_clear = [(behind, zone)]
        placed = {main[0]: xy}
        break
    if len(main) == 2:
        for _ in range(1000):
            xy = _sample_xy(rng)
            if np.linalg.norm(xy - placed[main[0]]) >= 0.12:
                placed[main[1]] = xy
                break
    others = [b for b in _all_blocks() if b not in main and b[0] not in unique_colors]
    order = rng.permutation(len(others))
    for k in order[:n_distractors]:
        b = others[int(k)]
        for _ in range(200):
            xy = _sample_xy(rng)
            if all(np.linalg.norm(xy - q) >= MIN_SEPARATION_M for q in placed.values()) and all(
                _seg_dist(xy, a, c) >= 0.08 for a, c in keep_clear
            ):
                placed[b] = xy
                break
    poses = {}
    for b, xy in placed.items():
        half = scene.block_half_m(*b)
        poses[b] = (
            np.array([xy[0], xy[1], half + 0.0005]),
            float(rng.uniform(-np.pi / 4, np.pi / 4)),
        )
    return Layout(poses)


def apply_layout(scene: Scene, layout: Layout) -> None:
    """Put the layout's blocks in place and park the others."""
    for i, b in enumerate(_all_blocks()):
        if b in layout.poses:
            pos, yaw = layout.poses[b]
        else:
            half = scene.block_half_m(*b)
            pos, yaw = np.array([_PARK_X_M, -0.49 + 0.14 * i, -0.75 + half + 0.001]), 0.0
        scene.set_block_pose(b, pos, yaw)


# --------------------------------------------------------------------------- success

REACH_TOL_M = 0.03
LIFT_HEIGHT_M = 0.08
#: The pick task's goal: the TCP this far above the block's start position (its centre), so
#: the block's bottom clears :data:`LIFT_HEIGHT_M` with a 2 cm margin.
PICK_LIFT_M = LIFT_HEIGHT_M + 0.02


def reach_target(scene: Scene, block: Block) -> np.ndarray:
    """The point to reach: 3 cm above the block's top face."""
    return scene.block_pos(*block) + np.array([0, 0, scene.block_half_m(*block) + 0.03])


def is_held(scene: Scene, block: Block) -> bool:
    """Whether the gripper holds ``block``: both finger pads touch it."""
    g = scene.ids.block_geom[block]
    left, right = scene.ids.finger_geom
    return scene.touching(int(left), g) and scene.touching(int(right), g)


def goal_position(scene: Scene, spec: TaskSpec, block_start: np.ndarray) -> np.ndarray:
    """Where the task wants things to end up (3,), base frame, metres.

    reach: :func:`reach_target`; push: the zone's centre; pick: :data:`PICK_LIFT_M` above
    ``block_start`` (the block's position at the episode's start); place: the bin's centre;
    stack: the centre of the base block's top face.
    """
    if spec.task == "reach":
        return reach_target(scene, spec.block)
    if spec.task == "push":
        return scene.ids.zone_pos[spec.params["zone"]].copy()
    if spec.task == "pick":
        return np.asarray(block_start, dtype=np.float64) + np.array([0.0, 0.0, PICK_LIFT_M])
    if spec.task == "place":
        return scene.ids.bin_pos.copy()
    if spec.task == "stack":
        base = spec.base_block
        return scene.block_pos(*base) + np.array([0.0, 0.0, scene.block_half_m(*base)])
    raise ConfigError(f"unknown task {spec.task!r}")


def is_success(scene: Scene, spec: TaskSpec) -> bool:
    """Whether ``spec`` (complete) is accomplished in the scene's current state."""
    b = spec.block
    pos = scene.block_pos(*b)
    half = scene.block_half_m(*b)
    tcp, _ = scene.tcp_pose()
    if spec.task == "reach":
        return bool(np.linalg.norm(tcp - reach_target(scene, b)) < REACH_TOL_M)
    if spec.task == "push":
        zone = scene.ids.zone_pos[spec.params["zone"]]
        on_table = pos[2] < half + 0.01
        return bool(on_table and np.linalg.norm(pos[:2] - zone[:2]) < names.ZONE_RADIUS_M)
    if spec.task == "pick":
        held = np.linalg.norm(tcp - pos) < 0.05
        return bool(held and pos[2] - half > LIFT_HEIGHT_M)
    if spec.task == "place":
        rel = pos[:2] - scene.ids.bin_pos[:2]
        inside = bool(np.all(np.abs(rel) < names.BIN_INNER_HALF_M))
        released = scene.gripper_opening_m > 2 * half + 0.005 or np.linalg.norm(tcp - pos) > 0.06
        return bool(inside and pos[2] < 0.08 and released)
    if spec.task == "stack":
        base = scene.block_pos(*spec.base_block)
        bhalf = scene.block_half_m(*spec.base_block)
        aligned = np.linalg.norm(pos[:2] - base[:2]) < bhalf
        on_top = abs(pos[2] - (base[2] + bhalf + half)) < 0.01
        base_down = base[2] < bhalf + 0.01
        released = scene.gripper_opening_m > 2 * half + 0.005
        return bool(aligned and on_top and base_down and released)
    raise ConfigError(f"unknown task {spec.task!r}")
