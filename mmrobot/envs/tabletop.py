"""The Gymnasium tabletop environment: MuJoCo physics, simulated drivers, the Synchronizer.

Each control tick (default 20 Hz) applies the action, runs the physics substeps (2 ms each)
while every simulated driver samples at its own rate into its StreamBuffer, then returns
``Synchronizer.observe(t)``: values, ages and validity masks exactly as a real rig would give
them. The :class:`~mmrobot.core.Observation` object itself is ``env.unwrapped.observation``
(not in ``info``, which stays plain data so Gymnasium's checks and vector envs handle it).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

from mmrobot.core.deps import require
from mmrobot.core.errors import ConfigError, LifecycleError
from mmrobot.core.types import Observation, StreamSpec
from mmrobot.envs.instructions import Split, colors_alone_allowed, infer_task, make_instruction
from mmrobot.envs.randomization import Randomization, apply_randomization
from mmrobot.envs.scene import Scene, Visuals
from mmrobot.envs.sensors import SensorSuiteConfig, SimDriver, build_drivers
from mmrobot.envs.tasks import TASKS, TaskSpec, apply_layout, is_success, sample_layout
from mmrobot.sync import StreamBuffer, Synchronizer

gym = require("gymnasium", "the tabletop Gymnasium environments")
spaces = gym.spaces

__all__ = ["ActionMode", "EnvConfig", "TabletopEnv", "ACTION_LOW", "ACTION_HIGH"]

ActionMode = Literal["ee_delta", "joint"]
#: Default action bounds: [dx, dy, dz (m), droll, dpitch, dyaw (rad), gripper (0 closed, 1 open)].
ACTION_LOW = np.array([-0.02, -0.02, -0.02, -0.1, -0.1, -0.1, 0.0], dtype=np.float32)
ACTION_HIGH = np.array([0.02, 0.02, 0.02, 0.1, 0.1, 0.1, 1.0], dtype=np.float32)
_AGE_LIMIT_NS = 2**62
_BUFFER_SECONDS = 0.25  # history kept per stream: enough for any history window


@dataclass(frozen=True)
class EnvConfig:
    """Settings of a :class:`TabletopEnv`.

    Attributes:
        task: task spec (text or :class:`TaskSpec`); None draws a task per episode.
        tasks: the tasks drawn from when ``task`` is None.
        control_hz: control ticks per second; the period must be a multiple of the physics step.
        action_mode: ``"ee_delta"`` (default) or ``"joint"`` (six joint targets + gripper).
        sensors: which streams exist and their timing/error models.
        randomization: domain randomization ranges, or None for the nominal scene.
        instruction_split: phrasing set of generated instructions (``"train"``/``"heldout"``).
        color_only: the fraction of generated instructions that name their blocks by colour
            alone ("put the red block in the bin"), as people do when no other block on the
            table has that colour; the layout then has none. An instruction given to
            ``reset`` (with or without a task) that names a block without its size gets such
            a layout too.
        n_distractors: blocks on the table besides the task's own.
        max_steps: episode length override (default: the task's).
        settle_ms: physics time run at reset before the first observation (sensors fill).
        visuals: ``"fast"`` (training) or ``"pretty"`` (videos).
        render_size: side of the frames returned by ``render()``.
        xml_path: MJCF scene (default ``envs/tabletop.xml``).
    """

    task: str | TaskSpec | None = None
    tasks: tuple[str, ...] = tuple(TASKS)
    control_hz: float = 20.0
    action_mode: ActionMode = "ee_delta"
    sensors: SensorSuiteConfig = field(default_factory=SensorSuiteConfig)
    randomization: Randomization | None = None
    instruction_split: Split = "train"
    color_only: float = 0.3
    n_distractors: int = 2
    max_steps: int | None = None
    settle_ms: float = 200.0
    visuals: Visuals = "fast"
    render_size: int = 256
    xml_path: str | None = None

    def __post_init__(self) -> None:
        if self.action_mode not in ("ee_delta", "joint"):
            raise ConfigError(
                f"action_mode must be 'ee_delta' or 'joint', got {self.action_mode!r}"
            )
        for t in self.tasks:
            if t not in TASKS:
                raise ConfigError(f"unknown task {t!r}; valid tasks: {list(TASKS)}")
        if not 0 <= self.n_distractors <= 6:
            raise ConfigError(f"n_distractors must be in [0, 6], got {self.n_distractors}")
        if self.control_hz <= 0:
            raise ConfigError(f"control_hz must be > 0, got {self.control_hz}")
        if not 0.0 <= self.color_only <= 1.0:
            raise ConfigError(f"color_only must be a fraction in [0, 1], got {self.color_only}")


class TabletopEnv(gym.Env):
    """Tabletop manipulation with a 6-DoF arm, synchronized multimodal observations.

    Observation (a Dict): ``values`` (stream -> array of the spec's ``obs_shape``),
    ``ages_ns`` (stream -> int64 age of the sample used) and ``valid`` (stream -> 0/1).
    Action: see :data:`ACTION_LOW` / :data:`ACTION_HIGH` (``ee_delta``) or joint targets.
    Reward: 1.0 on a step that ends with the task accomplished (``terminated``), else 0.
    ``reset(options={"task": "pick color=red", "instruction": "..."})`` picks the task and
    instruction; ``info`` carries ``instruction``, ``task``, ``is_success`` and ``t_ns``; the
    latest :class:`~mmrobot.core.Observation` is :attr:`observation` (``env.unwrapped.observation``).

    Stepping past termination is supported: the episode simply continues (the physics, the
    sensors and the controller keep running); ``terminated`` and the reward stay 1 while the
    success condition holds, and ``truncated`` becomes true once the step limit is reached
    with the task not accomplished. Demonstration collection uses this to record the expert
    holding at the goal after success (``CollectConfig.settle_steps``).
    """

    metadata = {"render_modes": ["rgb_array"], "render_fps": 20}

    def __init__(
        self, config: EnvConfig | None = None, render_mode: str | None = "rgb_array", **kwargs: Any
    ) -> None:
        if config is None:
            config = EnvConfig(**kwargs)
        elif kwargs:
            raise ConfigError(f"pass either config or keyword settings, not both: {sorted(kwargs)}")
        if render_mode not in (None, "rgb_array"):
            raise ConfigError(f"render_mode must be 'rgb_array' or None, got {render_mode!r}")
        self.config = config
        self.render_mode = render_mode
        self._default_task = (
            TaskSpec.parse(config.task) if isinstance(config.task, str) else config.task
        )
        self.scene = Scene(config.xml_path, visuals=config.visuals)
        m = self.scene.model
        step_ns = round(m.opt.timestep * 1e9)
        period_ns = round(1e9 / config.control_hz)
        if period_ns % step_ns:
            raise ConfigError(
                f"control period {period_ns / 1e9:g} s is not a multiple of the physics step "
                f"{step_ns / 1e9:g} s; choose control_hz so that it is (e.g. 20, 25, 50)"
            )
        self.physics_step_ns = step_ns
        self.control_period_ns = period_ns
        self.n_substeps = period_ns // step_ns
        self.stream_specs: tuple[StreamSpec, ...] = config.sensors.stream_specs()
        self.buffers = {
            s.name: StreamBuffer(
                s, capacity=max(8, int(s.rate_hz * _BUFFER_SECONDS) + s.history + 2)
            )
            for s in self.stream_specs
        }
        self.synchronizer = Synchronizer(list(self.buffers.values()))
        self._rng = np.random.default_rng()
        # whether a generated instruction names sizes: a stream of its own, so that a
        # seed's episode with sizes is the same whatever color_only is, and a colour-only
        # one keeps its task and its named block's place
        self._phrasing_rng = np.random.default_rng()
        self.drivers: list[SimDriver] = build_drivers(config.sensors, self.buffers, self._rng)
        self.observation_space = self._make_observation_space()
        if config.action_mode == "ee_delta":
            self.action_space = spaces.Box(ACTION_LOW, ACTION_HIGH, dtype=np.float32)
        else:
            r = self.scene.arm_range
            low = np.concatenate([r[:, 0], [0.0]]).astype(np.float32)
            high = np.concatenate([r[:, 1], [1.0]]).astype(np.float32)
            self.action_space = spaces.Box(low, high, dtype=np.float32)
        self.observation: Observation | None = None
        self.task: TaskSpec | None = None
        self.instruction: str = ""
        self.t_ns = 0
        self.steps = 0
        #: (3,) the task block's position at the episode's first observation (base frame, m)
        self.block_start_pos = np.zeros(3)
        self._render_renderer: Any = None
        self._nan_warnings = 0

    # ------------------------------------------------------------------ spaces
    def _make_observation_space(self) -> Any:
        values, ages, valid = {}, {}, {}
        for s in self.stream_specs:
            dt = np.dtype(s.dtype)
            if dt.kind == "u":
                low, high = 0, np.iinfo(dt).max
            else:
                low, high = -np.inf, np.inf
            values[s.name] = spaces.Box(low, high, shape=s.obs_shape, dtype=dt)
            ages[s.name] = spaces.Box(-_AGE_LIMIT_NS, _AGE_LIMIT_NS, shape=(), dtype=np.int64)
            valid[s.name] = spaces.Discrete(2)
        return spaces.Dict(
            {
                "values": spaces.Dict(values),
                "ages_ns": spaces.Dict(ages),
                "valid": spaces.Dict(valid),
            }
        )

    def _to_gym(self, obs: Observation) -> dict[str, dict[str, Any]]:
        return {
            "values": {k: np.asarray(v) for k, v in obs.values.items()},
            "ages_ns": {
                k: np.asarray(np.clip(a, -_AGE_LIMIT_NS, _AGE_LIMIT_NS), dtype=np.int64)
                for k, a in obs.ages_ns.items()
            },
            "valid": {k: np.int64(bool(v)) for k, v in obs.valid.items()},
        }

    # ------------------------------------------------------------------ episode
    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[dict[str, Any], dict[str, Any]]:
        super().reset(seed=seed)
        options = dict(options or {})
        unknown = sorted(set(options) - {"task", "instruction"})
        if unknown:
            raise ConfigError(f"unknown reset option(s) {unknown}; valid: ['task', 'instruction']")
        rng = self.np_random
        if seed is not None:
            self._phrasing_rng = np.random.default_rng([int(seed), 0x5153])
        instruction = options.get("instruction")
        task = options.get("task")
        if isinstance(task, str):
            task = TaskSpec.parse(task)
        unique_colors: set[str] = set()  # colours the instruction names without a size
        if instruction:
            try:
                said = infer_task(instruction)
                unique_colors = {c for c, z in said.blocks if c is not None and z is None}
                task = said if task is None else task
            except ConfigError:
                if task is None:
                    raise  # nothing says what to lay out
                # free text with its task given: nothing read, the layout is the task's
        if task is None:
            task = self._default_task
        if task is None:
            task = TaskSpec(str(rng.choice(self.config.tasks)))
        self.task = task.resolve(rng)
        if instruction:
            self.instruction = str(instruction)
        else:
            sizes = not (
                self._phrasing_rng.random() < self.config.color_only
                and colors_alone_allowed(self.task)
            )
            self.instruction = make_instruction(
                self.task, rng, self.config.instruction_split, sizes=sizes
            )
            if not sizes:
                unique_colors = {c for c, _ in self.task.blocks}
        scene = self.scene
        self.randomization_info = apply_randomization(
            scene, self.config.randomization, rng, self.drivers
        )
        scene.mujoco.mj_resetData(scene.model, scene.data)
        layout = sample_layout(
            self.task, scene, rng, self.config.n_distractors, unique_colors=unique_colors
        )
        apply_layout(scene, layout)
        q0 = scene.home_qpos + rng.uniform(-0.05, 0.05, size=6)
        scene.reset_arm(q0, gripper_open=1.0)
        self._nan_warnings = self._warning_count()
        self.t_ns = 0
        self.steps = 0
        for d in self.drivers:
            d.reset(rng, 0)
        settle = int(round(self.config.settle_ms * 1e6)) // self.physics_step_ns
        self._physics(settle)
        self.block_start_pos = scene.block_pos(*self.task.block)
        self.observation = self.synchronizer.observe(self.t_ns)
        return self._to_gym(self.observation), self._info(False, None)

    def _warning_count(self) -> int:
        mj = self.scene.mujoco
        w = self.scene.data.warning
        return sum(
            int(w[int(k)].number)
            for k in (
                mj.mjtWarning.mjWARN_BADQACC,
                mj.mjtWarning.mjWARN_BADQPOS,
                mj.mjtWarning.mjWARN_BADQVEL,
            )
        )

    def _physics(self, n: int) -> str | None:
        """Run ``n`` physics steps, polling the drivers; returns a reason on a blow-up."""
        scene = self.scene
        m, d = scene.model, scene.data
        step = scene.mujoco.mj_step
        drivers = self.drivers
        dt = self.physics_step_ns
        for _ in range(n):
            step(m, d)
            self.t_ns += dt
            for drv in drivers:
                drv.poll(scene, self.t_ns)
        # MuJoCo resets the data itself when the state goes bad and counts a warning
        if self._warning_count() != self._nan_warnings or not np.isfinite(d.qacc).all():
            return "physics blow-up: non-finite or huge state, MuJoCo reset the data"
        return None

    def step(self, action: Any) -> tuple[dict[str, Any], float, bool, bool, dict[str, Any]]:
        if self.task is None or self.observation is None:
            raise LifecycleError("TabletopEnv.step() called before reset()")
        a = np.asarray(action, dtype=np.float64).reshape(-1)
        if a.shape != (7,):
            raise ValueError(f"action must have 7 elements, got shape {np.shape(action)}")
        if not np.isfinite(a).all():
            raise ValueError(f"action has non-finite values: {a}")
        a = np.clip(a, self.action_space.low, self.action_space.high)
        scene = self.scene
        if self.config.action_mode == "ee_delta":
            scene.command_delta_pose(a[:6])
        else:
            scene.command_joints(a[:6])
        scene.command_gripper(a[6])
        reason = self._physics(self.n_substeps)
        self.steps += 1
        if reason is None and not np.isfinite(scene.data.qpos).all():
            reason = "physics blow-up: non-finite joint positions"
        self.observation = self.synchronizer.observe(self.t_ns)
        if reason is not None:
            return self._to_gym(self.observation), 0.0, False, True, self._info(False, reason)
        success = is_success(scene, self.task)
        limit = self.config.max_steps or self.task.max_steps
        truncated = not success and self.steps >= limit
        info = self._info(success, "time limit" if truncated else None)
        return self._to_gym(self.observation), float(success), success, truncated, info

    def _info(self, success: bool, reason: str | None) -> dict[str, Any]:
        assert self.task is not None
        info: dict[str, Any] = {
            "instruction": self.instruction,
            "task": self.task.format(),
            "is_success": bool(success),
            "t_ns": self.t_ns,
        }
        if reason is not None:
            info["truncated_reason"] = reason
        return info

    # ------------------------------------------------------------------ rendering
    def render(self) -> np.ndarray | None:
        """(render_size, render_size, 3) uint8 frame of the scene camera."""
        if self.render_mode is None:
            return None
        if self._render_renderer is None:
            n = self.config.render_size
            self._render_renderer = self.scene.renderer(n, n)
        self._render_renderer.update_scene(self.scene.data, camera="scene_cam")
        return self._render_renderer.render()

    def close(self) -> None:
        for d in self.drivers:
            close = getattr(d, "close", None)
            if close:
                close()
        if self._render_renderer is not None:
            self._render_renderer.close()
        self._render_renderer = None
        self.scene.close()
        super().close()


_ = os
