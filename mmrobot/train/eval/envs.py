"""The simulated environment of an evaluation: an env config whose sensors produce the
streams a policy expects, adjusted per split (phrasing set, a modality removed)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from mmrobot.core.errors import ConfigError
from mmrobot.core.types import StreamSpec
from mmrobot.train.eval.settings import MODALITY_SPLITS, RANDOMIZED_SPLIT, SPLIT_NAMES

if TYPE_CHECKING:
    from mmrobot.envs.tabletop import EnvConfig

__all__ = ["env_config_for_policy", "make_eval_env", "split_env_config"]


def env_config_for_policy(
    specs: Sequence[StreamSpec] | None,
    max_steps: int | None = None,
    render_size: int = 256,
    safety: bool = True,
) -> EnvConfig:
    """An :class:`EnvConfig` whose simulated sensors produce the streams ``specs`` expects.

    Camera size and lidar ray count are read from the specs; optional sim streams the policy
    names (depth, joint velocity) are switched on. A stream the simulator cannot produce in
    the expected shape is a :class:`ConfigError` naming it.

    With ``safety`` the env takes joint targets, as the arm of ``mmrobot run`` does, and
    :func:`run_episode` puts the policy's end-effector actions through the controller and
    the safety layer; without, the env applies the end-effector actions itself.
    """
    from mmrobot.envs.sensors import OPTIONAL_STREAM_NAMES, SensorSuiteConfig
    from mmrobot.envs.tabletop import EnvConfig

    suite = SensorSuiteConfig()
    if specs:
        cams = [s for s in specs if s.modality in ("camera", "depth")]
        lidar = next((s for s in specs if s.name == "lidar"), None)
        kw: dict[str, Any] = {}
        if cams:
            kw["image_size"] = int(cams[0].shape[0])
        if lidar is not None:
            kw["lidar_rays"] = int(lidar.shape[0])
        suite = SensorSuiteConfig(**kw)
        for s in specs:
            if s.name in OPTIONAL_STREAM_NAMES:
                suite = suite.with_sensor(s.name, enabled=True)
        have = {s.name: s for s in suite.stream_specs()}
        problems = []
        for s in specs:
            sim = have.get(s.name)
            if sim is None:
                if not s.optional:
                    problems.append(f"{s.name!r}: the simulator has no such stream")
            elif sim.obs_shape != s.obs_shape or sim.dtype != s.dtype:
                problems.append(
                    f"{s.name!r}: policy expects {s.dtype} {s.obs_shape}, the simulator gives "
                    f"{sim.dtype} {sim.obs_shape}"
                )
        if problems:
            raise ConfigError(
                "the policy's observation spec does not match the simulated rig: "
                + "; ".join(problems)
                + f". Simulated streams: {sorted(have)} (see mmrobot.envs.default_stream_specs)"
            )
    return EnvConfig(
        sensors=suite,
        max_steps=max_steps,
        render_size=render_size,
        action_mode="joint" if safety else "ee_delta",
    )


def split_env_config(base: EnvConfig, split: str) -> EnvConfig:
    """``base`` adjusted for an evaluation split (phrasing set, domain randomization on, or a
    modality removed; ``instruction_swap`` changes the episode, not the env: see
    :func:`run_episode`).

    Removing a modality sets ``dropout=1`` on every stream of that modality: the sim sensor
    delivers nothing, the buffer stays empty, the synchronizer marks the stream invalid.
    """
    if split not in SPLIT_NAMES:
        raise ConfigError(f"unknown split {split!r}; valid splits: {list(SPLIT_NAMES)}")
    if split == "heldout":
        return replace(base, instruction_split="heldout")
    cfg = replace(base, instruction_split="train")
    if split == RANDOMIZED_SPLIT:
        from mmrobot.envs.randomization import Randomization

        return replace(cfg, randomization=Randomization())
    modality = MODALITY_SPLITS.get(split)
    if modality is None:
        return cfg
    suite = cfg.sensors
    removed = [s.name for s in suite.stream_specs() if s.modality == modality]
    if not removed:
        raise ConfigError(f"split {split!r}: the simulated rig has no {modality} stream")
    for name in removed:
        suite = suite.with_sensor(name, dropout=1.0)
    return replace(cfg, sensors=suite)


def make_eval_env(config: EnvConfig) -> Any:
    """A :class:`~mmrobot.envs.tabletop.TabletopEnv` that can render frames for videos."""
    from mmrobot.envs.tabletop import TabletopEnv

    return TabletopEnv(config, render_mode="rgb_array")
