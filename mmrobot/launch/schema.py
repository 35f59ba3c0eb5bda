"""Launch files (``launch/*.toml``): one file composes a robot or a simulation, a policy, the
control loop, the safety limits and a mode (``collect``, ``train``, ``eval``, ``run``).

A launch file is validated completely before anything is opened: an unknown key, a wrong
type, a missing file, a serial port that does not exist, inconsistent rates or a safety
limit looser than its bound (:mod:`mmrobot.launch.validate`) is an error naming the file,
the key path and what is expected. Any key can be overridden from the command line
(``mmrobot launch FILE loop.rate_hz=50``). The safety section sets limits; there is no key
that turns the safety layer off, and no value that loosens a limit past the hardware's.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from mmrobot.core._toml import tomllib
from mmrobot.core.errors import ConfigError
from mmrobot.core.overrides import parse_override
from mmrobot.deploy.safety_bounds import watchdog_problem

if TYPE_CHECKING:
    from mmrobot.deploy.loop import LoopConfig
    from mmrobot.deploy.safety import SafetyConfig

__all__ = ["LaunchFile", "load_launch", "apply_overrides"]


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class SimSection(_Section):
    """The simulated robot: the MuJoCo tabletop with simulated sensor drivers."""

    scene: str | None = None  # an MJCF file; default: the packaged tabletop scene
    visuals: Literal["fast", "pretty"] = "fast"
    randomize: bool = False
    seed: int = 0
    image_size: int = Field(default=96, ge=16, le=512)


class RigSection(_Section):
    """A real (or emulated) robot: a rig file of drivers and the arm's actuator."""

    file: str
    actuator: str = Field(description="name of the arm's actuator entry in the rig file")
    kinematics: str | None = None  # MJCF of the arm for inverse kinematics; default: packaged


class PolicySection(_Section):
    """Exactly one of a torch checkpoint folder or an exported ONNX model (an empty string
    counts as not given, so ``policy.checkpoint="" policy.onnx=out/export`` switches a launch
    file to an export from the command line)."""

    checkpoint: str | None = None
    onnx: str | None = None
    device: str = "cpu"
    # CPU threads for the network (torch threads, or ONNX Runtime intra-op threads, which never
    # spin-wait here). One is fastest at batch 1 on a busy machine: more threads compete with
    # the sensor and control threads.
    threads: int = Field(default=1, ge=1)
    # ONNX Runtime execution providers in order of preference (ONNX exports only); default
    # TensorRT, CUDA, CPU, of those the installed onnxruntime has (docs/deploy.md).
    providers: list[str] | None = Field(default=None, min_length=1)

    @field_validator("checkpoint", "onnx", mode="before")
    @classmethod
    def _empty_is_none(cls, value: Any) -> Any:
        return None if value == "" else value

    @model_validator(mode="after")
    def _one_source(self) -> PolicySection:
        if (self.checkpoint is None) == (self.onnx is None):
            raise ValueError("give exactly one of policy.checkpoint or policy.onnx")
        if self.providers is not None and self.onnx is None:
            raise ValueError(
                "policy.providers chooses ONNX Runtime execution providers; it needs "
                "policy.onnx (a torch checkpoint runs on policy.device)"
            )
        return self


class LoopSection(_Section):
    """Rates of the control loop; the watchdog is at most ``MAX_WATCHDOG_S`` of wall time.
    On a robot: where the policy runs (``policy_worker``), where the sensor drivers run
    (``driver_worker``), and what the loop thread asks of Linux (see :class:`mmrobot.deploy.loop.LoopConfig`). Simulation runs the policy inline,
    in simulated time."""

    rate_hz: float = Field(default=20.0, gt=0, allow_inf_nan=False)
    policy_rate_hz: float = Field(default=20.0, gt=0, allow_inf_nan=False)
    ensemble_decay: float | None = Field(default=0.1, ge=0, allow_inf_nan=False)
    watchdog_periods: int = Field(default=5, ge=1)
    policy_worker: Literal["inline", "thread", "process"] = "thread"
    realtime_priority: int = Field(default=0, ge=0, le=99)
    cpu_affinity: list[int] = []
    policy_cpu_affinity: list[int] = []
    gc_freeze: bool = True
    # "process": the rig's sensor drivers (cameras, lidar, F/T) run in a process of their own
    # and write shared memory, so their reader threads never hold the loop's GIL; the joint
    # reader stays here, on the actuator's bus (mmrobot.drivers.host.hostable_drivers).
    driver_worker: Literal["thread", "process"] = "thread"
    # With driver_worker = "process": CPUs that process and its reader threads are pinned to
    # (e.g. the policy's, so the loop's CPU stays free); empty: any.
    driver_cpu_affinity: list[int] = []

    def loop_config(self, simulated: bool = False) -> LoopConfig:
        """The :class:`LoopConfig` this section describes; ``simulated``: in simulated time,
        where the policy always runs inline (a tick may take as long as it needs)."""
        from mmrobot.deploy.loop import LoopConfig

        return LoopConfig(
            rate_hz=self.rate_hz,
            policy_rate_hz=self.policy_rate_hz,
            ensemble_decay=self.ensemble_decay,
            watchdog_periods=self.watchdog_periods,
            policy_worker="inline" if simulated else self.policy_worker,
            realtime_priority=self.realtime_priority,
            cpu_affinity=tuple(self.cpu_affinity),
            policy_cpu_affinity=tuple(self.policy_cpu_affinity),
            gc_freeze=self.gc_freeze,
        )

    @model_validator(mode="after")
    def _rates(self) -> LoopSection:
        ratio = self.rate_hz / self.policy_rate_hz
        if abs(ratio - round(ratio)) > 1e-9 or round(ratio) < 1:
            raise ValueError(
                f"loop.rate_hz = {self.rate_hz:g} is not a whole multiple of "
                f"loop.policy_rate_hz = {self.policy_rate_hz:g}; e.g. 100 Hz commands with a "
                "20 Hz policy"
            )
        problem = watchdog_problem(self.rate_hz, self.watchdog_periods)
        if problem:
            raise ValueError(problem)
        if self.driver_cpu_affinity and self.driver_worker != "process":
            raise ValueError(
                "loop.driver_cpu_affinity pins the driver process; it needs "
                'loop.driver_worker = "process" (with the default "thread" the drivers\' '
                "reader threads run in the loop's process, on any CPU)"
            )
        return self


class SafetySection(_Section):
    """Limits; each may tighten, none loosen past :mod:`mmrobot.deploy.safety_bounds`
    (checked against the arm model and the rig when the launch file is loaded). Joint limits
    default to the arm model's joint ranges."""

    joint_low_rad: list[float] | None = None
    joint_high_rad: list[float] | None = None
    max_velocity_rad_s: float | list[float] = 2.0
    max_acceleration_rad_s2: float | list[float] = 20.0
    workspace_low_m: tuple[float, float, float] = (-0.2, -0.7, 0.015)
    workspace_high_m: tuple[float, float, float] = (0.9, 0.7, 0.9)
    max_gripper_force_n: float = 25.0
    required_streams: list[str] = ["joints"]

    def to_config(self) -> SafetyConfig:
        """The same limits as a :class:`~mmrobot.deploy.safety.SafetyConfig` (what
        ``mmrobot eval`` takes and writes to its results JSON)."""
        from mmrobot.deploy.safety import SafetyConfig

        def value(v: Any) -> Any:
            return tuple(v) if isinstance(v, list) else v

        return SafetyConfig(**{k: value(v) for k, v in self.model_dump().items()})


class RunSection(_Section):
    """What ``mmrobot run`` executes: instructions one after another."""

    instructions: list[str] = []
    max_seconds: float = Field(default=20.0, gt=0, allow_inf_nan=False)
    video: str | None = None
    timing_png: str | None = None
    results_json: str | None = None


class CollectSection(_Section):
    tasks: list[str] = []
    episodes: int = Field(default=50, ge=1)
    out: str = "data/demos.h5"
    workers: int = Field(default=1, ge=0)
    seed: int = 0


class TrainSection(_Section):
    config: str = "policies/train_default.toml"
    overrides: list[str] = []


class EvalSection(_Section):
    splits: list[str] = ["train", "heldout"]
    episodes: int = Field(default=5, ge=1)
    workers: int = Field(default=1, ge=0)
    results_json: str | None = None


class LaunchFile(_Section):
    """A validated launch file. Paths are resolved against the file's folder's parent
    (the project root, where ``launch/`` lives) unless absolute."""

    mode: Literal["collect", "train", "eval", "run"]
    description: str = ""
    sim: SimSection | None = None
    rig: RigSection | None = None
    policy: PolicySection | None = None
    loop: LoopSection = LoopSection()
    safety: SafetySection = SafetySection()
    run: RunSection = RunSection()
    collect: CollectSection = CollectSection()
    train: TrainSection = TrainSection()
    eval: EvalSection = EvalSection()
    source: str = "<launch>"
    root: str = "."

    @model_validator(mode="after")
    def _consistent(self) -> LaunchFile:
        if self.sim is not None and self.rig is not None:
            raise ValueError("give either [sim] or [rig], not both")
        if self.mode in ("run", "eval") and self.policy is None:
            raise ValueError(f"mode {self.mode!r} needs a [policy] section")
        if self.mode == "run" and self.sim is None and self.rig is None:
            raise ValueError("mode 'run' needs a [sim] or a [rig] section")
        if self.mode in ("collect", "eval") and self.rig is not None:
            raise ValueError(f"mode {self.mode!r} runs in simulation; use [sim], not [rig]")
        if self.sim is not None and self.loop.driver_worker == "process":
            raise ValueError(
                'loop.driver_worker = "process" runs a [rig]\'s sensor drivers in a process of '
                "their own; a [sim] run's sensors are the simulation's, stepped with it: remove "
                'the key or set loop.driver_worker = "thread"'
            )
        return self

    def path(self, value: str) -> Path:
        p = Path(value)
        return p if p.is_absolute() else Path(self.root) / p

    def extras(self) -> list[str]:
        """The install extras (:mod:`mmrobot.core.extras`) this file's mode needs beyond core:
        ``robot`` for a rig (the arm's kinematics), ``sim`` for the simulation, ``train``
        for a torch checkpoint or training. An ONNX policy on a rig needs ``robot`` only."""
        needs = []
        if self.rig is not None:
            needs.append("robot")
        if self.mode in ("collect", "eval") or (self.mode == "run" and self.sim is not None):
            needs.append("sim")
        if self.mode == "train" or (
            self.mode in ("run", "eval") and self.policy is not None and self.policy.checkpoint
        ):
            needs.append("train")
        return needs


def apply_overrides(data: dict[str, Any], overrides: list[str], source: str) -> dict[str, Any]:
    """Set ``a.b.c=value`` keys in the raw table (values parsed as TOML; bare words are strings)."""
    for item in overrides:
        key, value = parse_override(item)
        node = data
        parts = key.split(".")
        for part in parts[:-1]:
            child = node.setdefault(part, {})
            if not isinstance(child, dict):
                raise ConfigError(f"override {item!r}: {part!r} in {source} is not a table")
            node = child
        node[parts[-1]] = value
    return data


def _format_error(e: ValidationError, source: str) -> str:
    lines = [f"{source}: invalid launch file"]
    for err in e.errors():
        loc = ".".join(str(x) for x in err["loc"]) or "(top level)"
        got = err.get("input")
        got_s = "" if isinstance(got, dict) else f" (got {got!r})"
        msg = err["msg"].removeprefix("Value error, ")
        lines.append(f"  {loc}: {msg}{got_s}")
    return "\n".join(lines)


def load_launch(
    path: str | Path, overrides: list[str] | None = None, check_files: bool = True
) -> LaunchFile:
    """Read, override and validate a launch file (nothing is opened).

    Raises:
        FileNotFoundError: the file does not exist.
        ConfigError: invalid TOML, keys or values; with ``check_files``, missing files
            and ports, or limits past the hardware's bounds. The message names the file and
            the key path.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(
            f"launch file {str(path)!r} not found (launch files live in launch/)"
        )
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"{path}: not valid TOML: {e}") from e
    data = apply_overrides(data, list(overrides or []), str(path))
    for reserved in ("source", "root"):
        if reserved in data:
            raise ConfigError(f"{path}: {reserved!r} is not a launch-file key")
    root = path.resolve().parent.parent
    try:
        launch = LaunchFile(**data, source=str(path), root=str(root))
    except ValidationError as e:
        raise ConfigError(_format_error(e, str(path))) from None
    if check_files:
        from mmrobot.launch.validate import check_launch

        check_launch(launch)
    return launch
