"""MuJoCo tabletop simulation: scene, simulated sensor drivers, tasks, instructions, experts,
Gymnasium environments and demonstration collection; the arm's forward kinematics
(:class:`ArmKinematics`, also for real rigs) and the privileged training targets
(:func:`privileged_state`).

Importing this package registers the Gymnasium ids ``mmrobot/Tabletop-v1`` (a task drawn per
episode) and ``mmrobot/Tabletop<Task>-v1`` for each task (``TabletopPick-v1``, ...). v1
(mmrobot 0.2) observes one more stream (``ee_pose``) through a scene camera framed on the
blocks; the v0 ids of mmrobot 0.1 are not registered any more, because their observations
cannot be reproduced by this scene.
MuJoCo is imported lazily by the modules that need it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from mmrobot.envs import names
from mmrobot.envs.experts import PHASES, ExpertPlan, ScriptedExpert, expert_plan
from mmrobot.envs.instructions import SPLITS, all_instructions, infer_task, make_instruction
from mmrobot.envs.kinematics import ArmKinematics
from mmrobot.envs.privileged import AUX_TARGETS, PrivilegedState, privileged_state
from mmrobot.envs.randomization import Randomization
from mmrobot.envs.reader import AmbiguousInstruction, Reading, read_instruction
from mmrobot.envs.scene import choose_gl_backend
from mmrobot.envs.sensors import SensorConfig, SensorSuiteConfig, default_stream_specs
from mmrobot.envs.tasks import TASKS, TaskSpec, list_tasks

# MUJOCO_GL must be set before mujoco is first imported; without a display pick EGL/OSMesa.
choose_gl_backend()

if TYPE_CHECKING:
    from mmrobot.envs.tabletop import EnvConfig, TabletopEnv

__all__ = [
    "AUX_TARGETS",
    "AmbiguousInstruction",
    "ArmKinematics",
    "ENV_IDS",
    "EnvConfig",
    "ExpertPlan",
    "PHASES",
    "PrivilegedState",
    "Randomization",
    "Reading",
    "SPLITS",
    "SensorConfig",
    "ScriptedExpert",
    "SensorSuiteConfig",
    "TASKS",
    "TabletopEnv",
    "TaskSpec",
    "all_instructions",
    "choose_gl_backend",
    "default_stream_specs",
    "expert_plan",
    "infer_task",
    "list_tasks",
    "make_instruction",
    "names",
    "privileged_state",
    "read_instruction",
    "register_envs",
]

ENV_VERSION = "v1"
ENV_IDS: tuple[str, ...] = (f"mmrobot/Tabletop-{ENV_VERSION}",) + tuple(
    f"mmrobot/Tabletop{t.capitalize()}-{ENV_VERSION}" for t in TASKS
)


def register_envs() -> None:
    """Register the Gymnasium ids (idempotent; runs on import)."""
    try:
        import gymnasium
    except ImportError:  # gymnasium missing: the ids appear once it is installed
        return
    registry = gymnasium.envs.registration.registry
    for env_id in ENV_IDS:
        if env_id in registry:
            continue
        task = env_id.removeprefix("mmrobot/Tabletop").removesuffix(f"-{ENV_VERSION}").lower()
        task = task or None
        gymnasium.register(
            id=env_id,
            entry_point="mmrobot.envs.tabletop:TabletopEnv",
            kwargs={"task": task} if task else {},
            max_episode_steps=None,
            disable_env_checker=True,
        )


def __getattr__(name: str) -> Any:
    if name in ("TabletopEnv", "EnvConfig"):
        from mmrobot.envs import tabletop

        return getattr(tabletop, name)
    raise AttributeError(f"module 'mmrobot.envs' has no attribute {name!r}")


register_envs()
