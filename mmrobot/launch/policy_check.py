"""The policy a launch file names, against the streams its robot provides.

Cheap by design, so that ``mmrobot launch FILE --check`` and ``mmrobot run`` can call it before
anything opens: a checkpoint is its ``config.json`` (kind, format version, the validated
:class:`~mmrobot.policies.PolicyConfig`) and the header of ``model.safetensors`` (readable and
covering the whole file); an ONNX export is its sidecar ``policy.json`` and the model file's
recorded size and SHA-256. No network is built and no runtime starts: whether the weights fit
the network the config builds is checked when the run loads the policy (the error then names
both files).

The streams the policy declares (its observation spec) are compared with the streams the
simulation or the rig provides, by name, shape, history and dtype. A stream the policy marks
optional may be absent (the policy sees the validity mask); one it needs may not.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

from mmrobot.core.errors import ConfigError
from mmrobot.core.types import StreamSpec

__all__ = [
    "describe_stream",
    "policy_problems",
    "policy_source",
    "read_policy_config",
    "stream_problems",
]


def policy_source(launch: Any) -> tuple[str, str]:
    """``("policy.checkpoint", value)`` or ``("policy.onnx", value)`` of a launch file."""
    p = launch.policy
    if p is None:
        raise ConfigError(f"{launch.source}: no [policy] section")
    return ("policy.checkpoint", p.checkpoint) if p.checkpoint else ("policy.onnx", p.onnx)


def read_policy_config(launch: Any) -> Any:
    """The :class:`~mmrobot.policies.PolicyConfig` of the launch file's policy, read cheaply.

    Raises:
        FileNotFoundError: a file of the checkpoint or export is missing (names it).
        ConfigError: a file is corrupt, truncated, of another kind or of a newer format
            version (names it).
    """
    key, value = policy_source(launch)
    path = launch.path(value)
    if key == "policy.checkpoint":
        from mmrobot.policies.checkpoint import CONFIG_FILE, WEIGHTS_FILE, read_checkpoint_config

        if not path.is_dir():
            raise ConfigError(
                f"{str(path)!r} is not a checkpoint folder ({CONFIG_FILE} + {WEIGHTS_FILE}); an "
                "exported model goes in policy.onnx"
            )
        with _names_the_file(path / CONFIG_FILE):
            config, _ = read_checkpoint_config(path)
        _check_weights(path / WEIGHTS_FILE)
        return config
    from mmrobot.deploy.sidecar import SIDECAR_FILE, Sidecar

    folder = path.parent if path.suffix == ".onnx" else path
    with _names_the_file(folder / SIDECAR_FILE if folder.is_dir() else folder):
        sidecar = Sidecar.read(folder)  # the folder, or the sidecar file itself
    sidecar.verify_model_file(folder)
    return sidecar.config


@contextlib.contextmanager
def _names_the_file(path: Path) -> Iterator[None]:
    """Errors of a damaged file that do not name it (a JSON document of the wrong shape)
    become a :class:`ConfigError` that does."""
    try:
        yield
    except (ConfigError, OSError):
        raise
    except (AttributeError, TypeError, KeyError, ValueError) as e:
        raise ConfigError(f"{path}: cannot be read ({e!r}); the file is corrupt") from e


def _check_weights(path: Path) -> None:
    """``model.safetensors`` exists and its header is readable and covers the file."""
    from mmrobot.core.deps import require

    if not path.is_file():
        raise FileNotFoundError(
            f"no {path.name} in {str(path.parent)!r}; a checkpoint folder holds config.json "
            f"and {path.name}"
        )
    safetensors = require("safetensors", "checking policy checkpoints")
    try:
        with safetensors.safe_open(str(path), framework="numpy") as f:
            f.keys()
    except Exception as e:  # safetensors raises its own error type for a damaged file
        raise ConfigError(
            f"{path}: cannot read the weights ({e}); the file is corrupt or truncated"
        ) from e


def policy_problems(launch: Any, provided: Sequence[StreamSpec] | None, provider: str) -> list[str]:
    """Everything that stops the launch file's policy from running on ``provided`` streams
    (None: the streams are unknown here, e.g. an unreadable rig file), one line each, each
    starting with the policy's key and value. In ``eval`` mode the simulation is built for
    the policy, so only streams it cannot produce at all are problems."""
    key, value = policy_source(launch)
    where = f"{key} = {value!r}"
    try:
        config = read_policy_config(launch)
    except (ConfigError, OSError) as e:
        return [f"{where}: {e}"]
    if launch.mode == "eval":
        from mmrobot.train.eval import env_config_for_policy

        try:
            env_config_for_policy(config.streams)
        except ConfigError as e:
            return [f"{where}: {e}"]
        return []
    if provided is None:
        return []
    return [f"{where}: {p}" for p in stream_problems(config.streams, provided, provider)]


def describe_stream(spec: StreamSpec) -> str:
    """``uint8 (96, 96, 3)``, ``float32 (7,), history 10``."""
    history = f", history {spec.history}" if spec.history > 1 else ""
    return f"{spec.dtype} {spec.shape}{history}"


def stream_problems(
    wanted: Iterable[StreamSpec], provided: Iterable[StreamSpec], provider: str
) -> list[str]:
    """Each stream of ``wanted`` (a policy's observation spec) that ``provided`` lacks (when
    the policy needs it) or gives in another shape, history or dtype, one line each naming
    the stream, what the policy expects and what ``provider`` (``"the simulation"``,
    ``"the rig drivers/arm.toml"``) provides."""
    have = {s.name: s for s in provided}
    problems = []
    for s in wanted:
        got = have.get(s.name)
        if got is None:
            if not s.optional:
                problems.append(
                    f"stream {s.name!r}: the policy expects {describe_stream(s)}, {provider} "
                    f"provides no such stream (it has {sorted(have)})"
                )
        elif got.obs_shape != s.obs_shape or got.dtype != s.dtype:
            problems.append(
                f"stream {s.name!r}: the policy expects {describe_stream(s)}, {provider} "
                f"provides {describe_stream(got)}"
            )
    return problems
