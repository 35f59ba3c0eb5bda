"""A launch file against what it names: files, serial ports, the arm and the rig.

:func:`check_launch` runs when a launch file is loaded (``mmrobot launch FILE --check``,
``mmrobot run``), before anything opens. It first checks that the install extras the file
needs are present (a rig needs ``[robot]``, a simulation ``[sim]``, a torch checkpoint or
training ``[train]``: :meth:`~mmrobot.launch.schema.LaunchFile.extras`), then reports every
problem at once:

- ``policy.providers`` are onnxruntime execution provider names;
- the policy, scene, training config, rig and kinematics files exist; the rig has the
  actuator named in ``[rig]``, with one servo per arm joint and a gripper servo last;
- each serial port of the rig exists and is a character device;
- in simulation, ``loop.rate_hz`` is the simulation's control rate;
- every ``[safety]`` limit is finite, positive and within its bound
  (:mod:`mmrobot.deploy.safety_bounds`: the arm model's joint range and reach, the rig's
  servo ranges and speeds, mmrobot's ceilings);
- the required streams exist, and on a rig they include its joint stream;
- in ``run`` and ``eval`` mode, the policy's checkpoint or ONNX export can be read and its
  streams match what the simulation or the rig provides (:mod:`mmrobot.launch.policy_check`);
- with ``instructions``, each of ``[run] instructions`` passes the checks ``mmrobot run``
  makes before it starts (:func:`mmrobot.launch.runner.instruction_problems`): not blank,
  no longer than the policy reads, and in simulation readable as one task.
"""

from __future__ import annotations

from typing import Any

from mmrobot.core.errors import ConfigError
from mmrobot.core.extras import require_extras
from mmrobot.launch.schema import LaunchFile

__all__ = ["check_launch", "launch_problems"]


def check_launch(launch: LaunchFile, instructions: bool = False) -> None:
    """Raise one :class:`ConfigError` listing every problem of :func:`launch_problems`.

    Raises:
        DependencyNotInstalled: first, when an install extra the file needs
            (:meth:`LaunchFile.extras`) is missing, with the pip command that adds it.
        ConfigError: the problems, one per line.
    """
    require_extras(launch.extras(), f"{launch.source} ({launch.mode} mode)")
    problems = launch_problems(launch, instructions)
    if problems:
        lines = [p.replace("\n", "\n    ") for p in problems]
        raise ConfigError(f"{launch.source}:\n  " + "\n  ".join(lines))


def launch_problems(launch: LaunchFile, instructions: bool = False) -> list[str]:
    """Everything wrong with ``launch`` that would stop (or loosen) a run, one line each
    (with ``instructions``, also each of ``[run] instructions`` that a run refuses)."""
    problems: list[str] = []
    policy_found = launch.policy is not None
    if launch.policy is not None:
        for key in ("checkpoint", "onnx"):
            value = getattr(launch.policy, key)
            if value is not None and not launch.path(value).exists():
                problems.append(f"policy.{key} = {value!r} does not exist")
                policy_found = False
    if launch.policy is not None and launch.policy.providers:
        problems += _provider_problems(launch.policy.providers)
    arm_known = True  # whether the arm model (and the rig's arm) can be read
    if launch.sim is not None and launch.sim.scene and not launch.path(launch.sim.scene).is_file():
        problems.append(f"sim.scene = {launch.sim.scene!r} does not exist")
        arm_known = False
    if launch.mode == "train" and not launch.path(launch.train.config).is_file():
        problems.append(f"train.config = {launch.train.config!r} does not exist")
    rig, servos = None, ()
    if launch.rig is not None:
        rig_path = launch.path(launch.rig.file)
        kin = launch.rig.kinematics
        if kin is not None and not launch.path(kin).is_file():
            problems.append(f"rig.kinematics = {kin!r} does not exist")
            arm_known = False
        if not rig_path.is_file():
            problems.append(f"rig.file = {launch.rig.file!r} does not exist")
            arm_known = False
        else:
            from mmrobot.drivers.rig import load_rig

            rig = load_rig(rig_path)
            by_name = {a.name: a for a in rig.actuators}
            if launch.rig.actuator not in by_name:
                problems.append(
                    f"rig.actuator = {launch.rig.actuator!r} is not in {rig_path} "
                    f"(has {list(by_name)})"
                )
                arm_known = False
            else:
                servos = tuple(getattr(by_name[launch.rig.actuator], "servos", ()))
            problems += rig.port_problems()
    specs, provider = _provided_streams(launch, rig)
    if arm_known:
        problems += _hardware_problems(launch, rig, servos, specs)
    if policy_found and launch.mode in ("run", "eval"):
        from mmrobot.launch.policy_check import policy_problems

        problems += policy_problems(launch, specs, provider)
    if instructions:
        from mmrobot.launch.runner import instruction_limit, instruction_problems

        limit = instruction_limit(launch) if policy_found else None
        problems += [f"run.{p}" for p in instruction_problems(launch, limit)]
    return problems


def _provider_problems(providers: list[str]) -> list[str]:
    """Names in ``policy.providers`` that onnxruntime does not know (a typo; a known provider
    this build lacks is skipped at run time, not an error)."""
    from mmrobot.core.deps import require

    known = require("onnxruntime", "ONNX policies").get_all_providers()
    unknown = [p for p in providers if p not in known]
    if not unknown:
        return []
    return [f"policy.providers: {unknown} are not onnxruntime providers; known: {sorted(known)}"]


def _provided_streams(launch: LaunchFile, rig: Any) -> tuple[list[Any] | None, str]:
    """The streams the robot provides (None: unknown, the rig file is unreadable), and who
    provides them, for messages."""
    if launch.rig is not None:
        if rig is None:
            return None, "the rig"
        return [s for d in rig.build_drivers() for s in d.specs], f"the rig {rig.source}"
    from mmrobot.envs.sensors import SensorSuiteConfig

    image_size = launch.sim.image_size if launch.sim is not None else 96
    specs = list(SensorSuiteConfig(image_size=image_size).stream_specs())
    return specs, f"the simulation (sim.image_size = {image_size})"


def _arm_model(launch: LaunchFile) -> tuple[Any, str]:
    """The MuJoCo model of the arm the limits are for, and its path."""
    from mmrobot.core.deps import require
    from mmrobot.envs.scene import DEFAULT_SCENE_PATH

    mujoco = require("mujoco", "checking safety limits against the arm model")
    if launch.rig is not None and launch.rig.kinematics:
        path = launch.path(launch.rig.kinematics)
    elif launch.sim is not None and launch.sim.scene:
        path = launch.path(launch.sim.scene)
    else:
        path = DEFAULT_SCENE_PATH
    try:
        return mujoco.MjModel.from_xml_path(str(path)), str(path)
    except ValueError as e:
        raise ConfigError(f"arm model {str(path)!r} does not load: {e}") from e


def _hardware_problems(
    launch: LaunchFile, rig: Any, servos: tuple[Any, ...], specs: list[Any] | None
) -> list[str]:
    from mmrobot.deploy.safety_bounds import bounds_for_model, safety_problems

    problems: list[str] = []
    model, path = _arm_model(launch)
    try:
        bounds = bounds_for_model(model, source=path)
    except KeyError as e:
        return [f"arm model {path!r} lacks an element mmrobot.envs.names expects: {e}"]
    n = len(bounds.joint_names)
    actuator = launch.rig.actuator if launch.rig is not None else ""
    if servos:
        g = servos[-1]
        if len(servos) != n + 1:
            problems.append(
                f"rig.actuator = {actuator!r} has {len(servos) - 1} joint servos before the "
                f"gripper; the arm model {path} has {n} joints"
            )
        elif g.min is None or g.max is None or g.min >= g.max:
            problems.append(
                f"rig.actuator = {actuator!r}: the gripper servo (id {g.id}, last) needs "
                "`min` (closed) < `max` (open) in the rig file"
            )
        else:  # the servos' ranges and speeds narrow the bounds
            bounds = bounds_for_model(model, servos[:-1], path)
    problems += safety_problems(launch.safety, bounds)
    required = list(launch.safety.required_streams)
    specs = specs or []
    if rig is not None:
        joints = [s.name for s in specs if s.modality == "joints"]
        if not joints:
            problems.append(
                f"{rig.source} has no joints stream (arm joints + gripper); the arm's "
                "Dynamixel [[driver]] entry provides it"
            )
        for name in joints:
            if name not in required:
                problems.append(
                    f"safety.required_streams = {required!r}: a rig must require its joint "
                    f"stream {name!r} (the arm holds when it goes stale); the bound is at least "
                    f"[{name!r}]"
                )
    else:
        from mmrobot.envs.tabletop import EnvConfig

        control_hz = EnvConfig().control_hz
        if launch.mode == "run" and abs(launch.loop.rate_hz - control_hz) > 1e-9:
            problems.append(
                f"loop.rate_hz = {launch.loop.rate_hz:g}: the simulation's control rate is "
                f"{control_hz:g} Hz; a simulated run ticks at that rate"
            )
    names = sorted(s.name for s in specs)
    for name in required:
        if name not in names:
            problems.append(
                f"safety.required_streams = {required!r}: {name!r} is not a stream of the "
                f"robot (it has {names}); the arm would hold forever"
            )
    return problems
