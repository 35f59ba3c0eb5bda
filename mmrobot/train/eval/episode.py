"""The episode runner: one evaluation episode, run as the deployed control loop runs it
(see :mod:`mmrobot.train.eval`)."""

from __future__ import annotations

from collections.abc import Callable, Generator, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from mmrobot.core.errors import ConfigError
from mmrobot.core.types import ActionChunk, Attribution, Observation
from mmrobot.deploy.safety import SafetyConfig
from mmrobot.policies.base import Policy
from mmrobot.train.eval.settings import SWAP_SPLIT

if TYPE_CHECKING:
    from mmrobot.deploy.safety import SimSafety

__all__ = [
    "AttributionTrace",
    "EpisodeResult",
    "episode_steps",
    "run_episode",
    "run_lockstep",
    "swap_instruction_target",
]

_ACTION_DIM = 7  # [dx, dy, dz, droll, dpitch, dyaw, gripper]


@dataclass(frozen=True)
class EpisodeResult:
    """What happened in one evaluation episode.

    Attributes:
        split: the evaluation split.
        key: the row it counts under (task spec as given, or task name for an
            instructions file).
        task: the resolved task spec of the episode (every parameter); in
            ``instruction_swap``, the instruction's task, which success is counted against.
        instruction: the instruction the policy was given.
        seed: the reset seed.
        success: the env's success detector fired.
        steps: control ticks run.
        reason: why it ended (``success``, ``time limit``, a physics blow-up, an error).
        policy_calls: chunks requested.
        rejected_chunks: chunks refused for non-finite actions.
        holds: ticks the arm held still: no valid action covered the tick, or the safety
            layer held (non-finite command, stale required stream).
        safety: whether the episode ran through the safety layer.
        safety_events: safety events per reason (``kind:where``, e.g. ``velocity_limit:j1``,
            ``workspace:z_low``, ``hold``), see :class:`~mmrobot.deploy.safety.SafetyEvent`.
        layout_task: ``instruction_swap`` only: the task the scene was laid out for.
        layout_task_success: ``instruction_swap`` only: whether that task (the block the
            instruction did not name) was accomplished instead: habit, not grounding.
        line: 1-based line of the instructions file, if any.
        error: the exception text when the episode crashed (counted as a failure).
        video: file written for this episode, if any.
        attribution: with ``explain``, what the policy attended to (see
            :class:`AttributionTrace`, :meth:`AttributionTrace.to_dict`), else None.
    """

    split: str
    key: str
    task: str
    instruction: str
    seed: int
    success: bool
    steps: int
    reason: str
    policy_calls: int = 0
    rejected_chunks: int = 0
    holds: int = 0
    safety: bool = False
    safety_events: dict[str, int] = field(default_factory=dict)
    layout_task: str | None = None
    layout_task_success: bool | None = None
    line: int | None = None
    error: str | None = None
    video: str | None = None
    attribution: dict[str, Any] | None = None

    @property
    def n_safety_events(self) -> int:
        return sum(self.safety_events.values())


class AttributionTrace:
    """The attributions of an episode's policy calls, for its JSON and its plot.

    Rows are policy calls (every tick with ``replan_every = 1``), each with the control
    tick it was made on and the share of every input group.
    """

    def __init__(self) -> None:
        self.steps: list[int] = []
        self.rows: list[Attribution] = []

    def add(self, step: int, attribution: Attribution) -> None:
        self.steps.append(step)
        self.rows.append(attribution)

    def to_dict(self, digits: int = 4) -> dict[str, Any] | None:
        """``{"groups", "modalities", "steps", "shares": [[share per group] per call],
        "mean_shares", "mean_camera_maps", "mean_keypoint_shares"}``; None without rows."""
        if not self.rows:
            return None
        first = self.rows[0]
        groups = list(first.shares)
        shares = np.array([[a.shares[g] for g in groups] for a in self.rows])
        maps = {
            c: np.mean([a.camera_maps[c] for a in self.rows], axis=0, dtype=np.float64)
            for c in first.camera_maps
        }
        return {
            "method": first.method,
            "groups": groups,
            "modalities": [first.modalities[g] for g in groups],
            "steps": list(self.steps),
            "shares": np.round(shares, digits).tolist(),
            "mean_shares": dict(zip(groups, np.round(shares.mean(0), digits).tolist())),
            "mean_camera_maps": {c: np.round(m, digits).tolist() for c, m in maps.items()},
            "mean_keypoint_shares": {
                c: round(float(np.mean([a.keypoint_shares[c] for a in self.rows])), digits)
                for c in first.keypoint_shares
            },
        }


def swap_instruction_target(env: Any, seed: int | None, split: str = "train") -> tuple[str, str]:
    """Retarget a freshly reset episode to another block on the table (``instruction_swap``).

    The scene stays as reset (the task's layout); one of the other blocks on the table
    (drawn from ``seed``, never the task's block or a stack's base) becomes the task's block,
    the env's success detector follows it, and the instruction names it.

    Args:
        env: a :class:`~mmrobot.envs.tabletop.TabletopEnv` (or wrapper) just after ``reset``.
        seed: the episode's seed (the choice of block and phrasing is drawn from it).
        split: phrasing set of the instruction.

    Returns:
        (the instruction's complete task spec, the instruction).
    """
    from mmrobot.envs.instructions import make_instruction
    from mmrobot.envs.tasks import TaskSpec

    base = env.unwrapped
    spec = base.task
    taken = set(spec.blocks)
    others = [b for b in base.scene.blocks_on_table() if b not in taken]
    if not others:
        raise ConfigError(
            f"{SWAP_SPLIT}: no other block on the table in this episode of {spec.format()!r} "
            f"(EnvConfig.n_distractors is {base.config.n_distractors}; it needs >= 1)"
        )
    rng = np.random.default_rng(None if seed is None else [int(seed), 0x5A4D])
    color, size = others[int(rng.integers(len(others)))]
    swapped = TaskSpec(spec.task, {**spec.params, "color": color, "size": size})
    text = make_instruction(swapped, rng, split)  # type: ignore[arg-type]
    # The env has no reset option for this (a target other than the layout's task): set the
    # task its success detector reads, the instruction its info reports, and the named
    # block's start position (the pick goal and the privileged targets are relative to it).
    base.task = swapped
    base.instruction = text
    if hasattr(base, "block_start_pos"):
        base.block_start_pos = base.scene.block_pos(color, size)
    return swapped.format(), text


def run_episode(
    env: Any, policy: Policy, *, explain: bool = False, **options: Any
) -> EpisodeResult:
    """Run ``policy`` closed-loop for one episode of a tabletop env, one call at a time.

    ``options`` (``task``, ``seed``, ``max_steps``, ``safety``, ...) and ``explain`` are
    :func:`episode_steps`'s, which says how an episode runs.

    Returns:
        The :class:`EpisodeResult` (``error`` is None; exceptions propagate).
    """
    steps = episode_steps(env, policy, explain=explain, **options)
    try:
        request = next(steps)
        while True:
            obs, text = request
            chunk = policy.act(obs, text, explain=True) if explain else policy.act(obs, text)
            request = steps.send(chunk)
    except StopIteration as done:
        return done.value  # type: ignore[no-any-return]


def run_lockstep(
    episodes: Sequence[Generator[tuple[Observation, str], ActionChunk, EpisodeResult]],
    policy: Policy,
) -> list[EpisodeResult | Exception]:
    """Run episodes side by side, one batched policy call per round (:meth:`Policy.act_batch`).

    Args:
        episodes: :func:`episode_steps` generators, each on an env of its own.
        policy: a policy without per-episode state (a torch or ONNX policy), shared by all.

    Returns:
        per episode, its result or the exception that ended it (the others run on).
    """
    out: list[EpisodeResult | Exception | None] = [None] * len(episodes)
    pending: dict[int, tuple[Observation, str]] = {}

    def advance(k: int, chunk: ActionChunk | None) -> None:
        try:
            pending[k] = next(episodes[k]) if chunk is None else episodes[k].send(chunk)
        except StopIteration as done:
            pending.pop(k, None)
            out[k] = done.value
        except Exception as e:  # one failed episode must not end the others
            pending.pop(k, None)
            out[k] = e

    for k in range(len(episodes)):
        advance(k, None)
    while pending:
        keys = list(pending)
        try:
            chunks = policy.act_batch([pending[k][0] for k in keys], [pending[k][1] for k in keys])
        except Exception as e:  # the batch failed: so did each of its episodes
            for k in keys:
                pending.pop(k)
                out[k] = e
            break
        for k, chunk in zip(keys, chunks):
            advance(k, chunk)
    return out  # type: ignore[return-value]


def episode_steps(
    env: Any,
    policy: Policy,
    *,
    task: str | None = None,
    instruction: str | None = None,
    seed: int | None = None,
    replan_every: int = 1,
    ensemble_decay: float | None = 0.1,
    max_steps: int | None = None,
    video: Any = None,
    on_step: Callable[[Observation, np.ndarray], None] | None = None,
    split: str = "",
    key: str = "",
    safety: SimSafety | SafetyConfig | None = None,
    swap_instruction: bool = False,
    explain: bool = False,
) -> Generator[tuple[Observation, str], ActionChunk, EpisodeResult]:
    """One episode as a generator: it yields ``(observation, instruction)`` whenever it needs
    a chunk, takes the chunk by ``send``, and returns the :class:`EpisodeResult`
    (``StopIteration``'s value). ``policy`` is only reset here (and says whether it
    explains); the caller acts (:func:`run_episode`, :func:`run_lockstep`).

    The env's action mode chooses the path to the arm: an env that takes joint targets (the
    default of :func:`env_config_for_policy`) gets each action through ``mmrobot run``'s
    Cartesian controller and safety layer (:class:`~mmrobot.deploy.safety.SimSafety`); an
    ``ee_delta`` env applies the actions itself, with no safety layer.

    Args:
        env: a :class:`~mmrobot.envs.tabletop.TabletopEnv` (or a Gymnasium wrapper of one).
        policy: any :class:`Policy`; ``policy.reset()`` is called first.
        task: task spec text for ``reset`` (None: the env's default or a random task).
        instruction: the instruction (None: generated from the env's phrasing split).
        seed: reset seed.
        replan_every: request a new chunk every this many control ticks (>= 1).
        ensemble_decay: :class:`~mmrobot.deploy.loop.TemporalEnsembler` decay (None: newest
            chunk only).
        max_steps: stop after this many ticks (default: the env's own time limit).
        video: a :class:`~mmrobot.train.video.VideoRecorder`-like object with
            ``add(frame, step, status)`` fed ``env.render()`` frames, or None.
        on_step: called each tick with (the observation the policy saw, the (7,)
            end-effector action the tick executed; zero motion and the last gripper command
            on a tick that no action covers).
        split, key: copied into the result.
        safety: for a joint-target env, the path to reuse (a ``SimSafety`` of this env) or
            the limits to build one with (default: ``SafetyConfig()``); must be None for an
            ``ee_delta`` env.
        swap_instruction: reset with ``task``'s scene, then name another block on the table
            in the instruction and count success against it (:func:`swap_instruction_target`).
        explain: ask the policy to explain each call (``act(..., explain=True)``, a policy
            whose ``explains`` is True); the result's ``attribution`` holds the shares, and
            the video draws them beside each frame with the camera heatmaps.
    """
    from mmrobot.deploy.loop import TemporalEnsembler
    from mmrobot.deploy.safety import SimSafety

    if replan_every < 1:
        raise ConfigError(f"replan_every must be >= 1, got {replan_every}")
    if swap_instruction and instruction:
        raise ConfigError("swap_instruction makes the instruction; do not give one")
    if explain and not policy.explains:
        raise ConfigError(
            f"explain needs a policy that can explain its decisions (a torch checkpoint); "
            f"{type(policy).__name__} cannot (an ONNX export has no attribution output)"
        )
    base = env.unwrapped
    path: SimSafety | None = None
    if base.config.action_mode == "joint":
        path = safety if isinstance(safety, SimSafety) else SimSafety(env, safety)
    elif safety is not None:
        raise ConfigError(
            "the safety path needs an env that takes joint targets, as `mmrobot run`'s does: "
            "build it from env_config_for_policy(..., safety=True) or "
            "EnvConfig(action_mode='joint')"
        )
    options: dict[str, Any] = {}
    if task:
        options["task"] = task
    if instruction:
        options["instruction"] = instruction
    _, info = env.reset(seed=seed, options=options or None)
    text = str(info["instruction"])
    layout_task: str | None = None
    if swap_instruction:
        layout_task = str(info["task"])
        _, text = swap_instruction_target(env, seed)
    if video is not None:
        video.instruction = text
        video.add(env.render(), 0)
    policy.reset()
    ensembler = TemporalEnsembler(ensemble_decay)
    gripper = 1.0  # start open, as the env resets
    steps = calls = rejected = holds = 0
    trace = AttributionTrace() if explain else None
    shown: tuple[Attribution, Observation] | None = None  # drawn on the video frames
    success, reason = False, ""
    if path is not None:
        path.start(base.observation)
    while True:
        obs: Observation = base.observation
        action = ensembler.action_at(obs.t_ns)
        if steps % replan_every == 0 or action is None:
            chunk = yield obs, text
            calls += 1
            if trace is not None and chunk.attribution is not None:
                trace.add(steps, chunk.attribution)
                shown = (chunk.attribution, obs)
            acts = np.asarray(chunk.actions)
            if acts.ndim != 2 or acts.shape[1] != _ACTION_DIM:
                raise ConfigError(
                    f"the policy returned actions of shape {acts.shape}; the tabletop env takes "
                    f"(H, {_ACTION_DIM}) actions [dx, dy, dz, droll, dpitch, dyaw, gripper]"
                )
            if np.isfinite(acts).all():
                ensembler.add(chunk)
            else:
                rejected += 1
                if path is not None:  # the loop records it too
                    path.layer.record(obs.t_ns, "rejected_chunk", "non-finite action in chunk")
            action = ensembler.action_at(obs.t_ns)
        # mmrobot run's path: controller, then the safety layer (which holds when no action
        # covers the tick); without it the env applies the action itself
        command = None if path is None else path.command(obs.t_ns, action, obs)
        if action is None:  # nothing valid covers this tick: no motion, last gripper command
            holds += path is None  # (the layer counts its own holds)
            action = np.zeros(_ACTION_DIM)
            action[-1] = gripper
        action = np.asarray(action, dtype=np.float32)
        gripper = float(action[-1])
        if on_step is not None:
            on_step(obs, action)
        _, _, terminated, truncated, info = env.step(action if command is None else command)
        steps += 1
        success = bool(info.get("is_success", False))
        if terminated or truncated or (max_steps is not None and steps >= max_steps):
            reason = "success" if success else str(info.get("truncated_reason", "time limit"))
            if video is not None:
                video.add(env.render(), steps, "success" if success else "fail", *_shown(shown))
            break
        if video is not None:
            video.add(env.render(), steps, "", *_shown(shown))
    layout_success: bool | None = None
    if layout_task is not None:
        from mmrobot.envs.tasks import TaskSpec, is_success

        layout_success = bool(is_success(base.scene, TaskSpec.parse(layout_task)))
    return EpisodeResult(
        split=split,
        key=key or str(info["task"]),
        task=str(info["task"]),
        instruction=text,
        seed=-1 if seed is None else int(seed),
        success=success,
        steps=steps,
        reason=reason,
        policy_calls=calls,
        rejected_chunks=rejected,
        holds=path.layer.n_holds if path is not None else holds,
        safety=path is not None,
        safety_events=path.layer.counts() if path is not None else {},
        layout_task=layout_task,
        layout_task_success=layout_success,
        attribution=trace.to_dict() if trace is not None else None,
    )


def _shown(shown: tuple[Attribution, Observation] | None) -> tuple[Any, ...]:
    """``video.add``'s extra arguments: the attribution and the camera images it explains."""
    if shown is None:
        return ()
    a, obs = shown
    return a, {c: obs.values[c] for c in a.camera_maps if obs.valid.get(c, False)}
