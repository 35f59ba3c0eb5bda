""":class:`OnnxPolicy`: the :class:`~mmrobot.policies.Policy` interface on ONNX Runtime.

Never imports torch: the collation and the tokenizers come from the numpy-only modules of
:mod:`mmrobot.policies`, so a robot or an edge board needs only numpy and onnxruntime.

Execution providers: by default TensorRT, then CUDA, then the CPU, of those the installed
onnxruntime build has (:data:`DEFAULT_PROVIDERS`, :func:`plan_providers`). A provider that
fails to start is dropped and the next one tried; :meth:`OnnxPolicy.provider_report` says
which provider runs and why each one before it does not.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mmrobot.core.deps import require
from mmrobot.core.errors import ConfigError
from mmrobot.core.types import ActionChunk, Observation
from mmrobot.deploy.sidecar import SIDECAR_FORMAT_VERSION, Sidecar
from mmrobot.policies.base import Policy
from mmrobot.policies.collate import collate
from mmrobot.policies.tokenizers import ActionTokenizer, ByteTokenizer

__all__ = ["DEFAULT_PROVIDERS", "OrtConfig", "OnnxPolicy", "ProviderPlan", "plan_providers"]

_MODEL_VERSION_KEY = "mmrobot_onnx_format_version"
CPU_PROVIDER = "CPUExecutionProvider"
#: Execution providers in order of preference when none are configured: the fastest that
#: this onnxruntime build has runs the model (TensorRT, CUDA: onnxruntime-gpu or a Jetson's
#: onnxruntime wheel), the CPU always last.
DEFAULT_PROVIDERS = ("TensorrtExecutionProvider", "CUDAExecutionProvider", CPU_PROVIDER)
_GPU_BUILD_HINT = {
    "TensorrtExecutionProvider": "onnxruntime-gpu with TensorRT, or a Jetson's onnxruntime wheel",
    "CUDAExecutionProvider": "onnxruntime-gpu, or a Jetson's onnxruntime wheel",
}


@dataclass(frozen=True)
class ProviderPlan:
    """The execution providers to ask onnxruntime for, and why the others are left out.

    Attributes:
        order: providers to try, preferred first; ``CPUExecutionProvider`` is always last.
        skipped: requested provider -> why it is not in ``order``.
    """

    order: tuple[str, ...]
    skipped: Mapping[str, str]


def plan_providers(
    requested: Sequence[str], available: Sequence[str], known: Sequence[str]
) -> ProviderPlan:
    """Which of ``requested`` to try, given onnxruntime's lists (no session is made).

    Args:
        requested: providers in order of preference (a launch file's ``policy.providers``,
            or :data:`DEFAULT_PROVIDERS`).
        available: ``onnxruntime.get_available_providers()``: what this build can run.
        known: ``onnxruntime.get_all_providers()``: every provider name onnxruntime knows.

    Raises:
        ConfigError: a requested name onnxruntime does not know (a typo), naming the known ones.
    """
    unknown = [p for p in requested if p not in known]
    if unknown:
        raise ConfigError(
            f"execution provider(s) {unknown} are not onnxruntime providers; known: {sorted(known)}"
        )
    order = [p for p in dict.fromkeys(requested) if p in available]
    skipped = {}
    for p in dict.fromkeys(requested):
        if p not in available:
            hint = _GPU_BUILD_HINT.get(p)
            skipped[p] = "not in this onnxruntime build" + (f" ({hint} has it)" if hint else "")
    if CPU_PROVIDER not in order:
        order.append(CPU_PROVIDER)  # always there: the fallback that runs everything
    else:  # the CPU runs every node: providers after it would never be used
        for p in order[order.index(CPU_PROVIDER) + 1 :]:
            skipped[p] = f"listed after {CPU_PROVIDER}, which runs every node"
        order = order[: order.index(CPU_PROVIDER) + 1]
    return ProviderPlan(tuple(order), skipped)


@dataclass(frozen=True)
class OrtConfig:
    """ONNX Runtime session settings (a launch file sets ``policy.providers``).

    Attributes:
        providers: execution providers in order of preference (default
            :data:`DEFAULT_PROVIDERS`: TensorRT, CUDA, CPU). Providers this onnxruntime build
            lacks are skipped; ``CPUExecutionProvider`` is always the last fallback.
        intra_op_threads: threads inside one operator (0 = onnxruntime's default).
        inter_op_threads: threads across operators (0 = default).
        graph_optimization: ``"disable"``, ``"basic"``, ``"extended"`` or ``"all"``.
        allow_spinning: whether idle intra-op threads spin-wait (lowest latency on cores of
            their own; set False when other processes share the cores).
    """

    providers: tuple[str, ...] = DEFAULT_PROVIDERS
    intra_op_threads: int = 0
    inter_op_threads: int = 0
    graph_optimization: str = "all"
    allow_spinning: bool = True

    def __post_init__(self) -> None:
        if (
            isinstance(self.providers, str)
            or not self.providers
            or not all(isinstance(p, str) for p in self.providers)
        ):
            raise ConfigError(
                f"onnxruntime.providers must be a non-empty list of names, got {self.providers!r}"
            )
        object.__setattr__(self, "providers", tuple(self.providers))
        for name in ("intra_op_threads", "inter_op_threads"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 0:
                raise ConfigError(f"onnxruntime.{name} must be an int >= 0, got {v!r}")
        if not isinstance(self.allow_spinning, bool):
            raise ConfigError(
                f"onnxruntime.allow_spinning must be true or false, got {self.allow_spinning!r}"
            )
        levels = ("disable", "basic", "extended", "all")
        if self.graph_optimization not in levels:
            raise ConfigError(
                f"onnxruntime.graph_optimization is {self.graph_optimization!r}; expected one of {levels}"
            )

    @classmethod
    def from_dict(cls, data: Mapping[str, object]) -> OrtConfig:
        known = {
            "providers",
            "intra_op_threads",
            "inter_op_threads",
            "graph_optimization",
            "allow_spinning",
        }
        unknown = sorted(set(data) - known)
        if unknown:
            raise ConfigError(
                f"onnxruntime: unknown key(s) {unknown}; expected some of {sorted(known)}"
            )
        return cls(**data)  # type: ignore[arg-type]


class OnnxPolicy(Policy):
    """An exported policy (``mmrobot export``) run by ONNX Runtime.

    Args:
        path: the export folder (or its ``policy.json`` or ``.onnx`` file).
        runtime: session settings; providers fall back in order, then to the CPU.

    Attributes:
        providers: the providers the session uses, the one that runs the model first.
        provider_errors: requested provider -> why it does not run the model.

    Raises:
        FileNotFoundError: the sidecar or the model file is missing.
        ConfigError: a file is truncated or corrupt, or of a newer format version, or a
            provider name is unknown to onnxruntime.
    """

    def __init__(self, path: str | Path, runtime: OrtConfig | None = None) -> None:
        ort = require("onnxruntime", "running exported policies")
        self.runtime = runtime or OrtConfig()
        path = Path(path)
        if path.suffix == ".onnx":  # the model file: its sidecar lies beside it
            path = path.parent
        self.sidecar = Sidecar.read(path)
        model_path = self.sidecar.verify_model_file(path)
        self.config = self.sidecar.config
        self.tokenizer = ByteTokenizer.from_config(self.config.language)
        self.action_tokenizer = ActionTokenizer.from_config(self.config.action)

        opts = ort.SessionOptions()
        opts.intra_op_num_threads = self.runtime.intra_op_threads
        opts.inter_op_num_threads = self.runtime.inter_op_threads
        if not self.runtime.allow_spinning:
            opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
            opts.add_session_config_entry("session.inter_op.allow_spinning", "0")
        opts.graph_optimization_level = {
            "disable": ort.GraphOptimizationLevel.ORT_DISABLE_ALL,
            "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
            "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
            "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
        }[self.runtime.graph_optimization]
        self.session, self.provider_errors = self._open(ort, str(model_path), opts)
        self.providers = tuple(self.session.get_providers())
        meta = self.session.get_modelmeta().custom_metadata_map
        version = meta.get(_MODEL_VERSION_KEY)
        if version is None or not version.isdigit() or int(version) > SIDECAR_FORMAT_VERSION:
            raise ConfigError(
                f"ONNX model {model_path} has mmrobot format version {version!r}; this mmrobot "
                f"runs versions 1..{SIDECAR_FORMAT_VERSION} (upgrade mmrobot or re-export)"
            )
        names = tuple(i.name for i in self.session.get_inputs())
        if names != self.sidecar.input_names:
            raise ConfigError(
                f"ONNX model inputs {names} differ from the sidecar's {self.sidecar.input_names}; "
                "the model and policy.json come from different exports"
            )

    def _open(self, ort, model_path: str, opts) -> tuple[object, dict[str, str]]:  # noqa: ANN001
        known = getattr(ort, "get_all_providers", ort.get_available_providers)()
        plan = plan_providers(self.runtime.providers, ort.get_available_providers(), known)
        errors = dict(plan.skipped)
        order = list(plan.order)
        # Try the preferred provider list, then drop providers from the front on failure.
        for i in range(len(order)):
            try:
                session = ort.InferenceSession(model_path, sess_options=opts, providers=order[i:])
            except Exception as e:  # onnxruntime raises its own exception types
                if order[i] == CPU_PROVIDER:
                    raise ConfigError(
                        f"ONNX Runtime cannot load {model_path}: {e}. The file is corrupt or "
                        "truncated, or not an mmrobot export; re-run `mmrobot export`"
                    ) from e
                errors[order[i]] = f"failed to start ({e})"
                continue
            # A GPU provider whose libraries (CUDA, cuDNN, TensorRT) do not load is left out
            # of the session with only a log line; say so here.
            used = set(session.get_providers())
            for p in order[i:]:
                if p not in used:
                    errors[p] = (
                        "failed to start: onnxruntime left it out of the session (its "
                        "libraries did not load; onnxruntime's log says which)"
                    )
            return session, errors
        raise ConfigError(f"no execution provider could load {model_path}: {errors}")  # unreachable

    @property
    def provider(self) -> str:
        """The execution provider that runs the model (the CPU runs the nodes it cannot)."""
        return self.providers[0]

    def provider_report(self) -> str:
        """One line: which provider runs the model, and why each one preferred to it does not."""
        line = f"ONNX Runtime runs {self.sidecar.model_file} ({self.sidecar.precision}) on {self.provider}"
        ahead = [p for p in self.runtime.providers if p in self.provider_errors]
        if ahead:
            line += "; " + "; ".join(f"{p}: {self.provider_errors[p]}" for p in ahead)
        if self.provider == CPU_PROVIDER and self.sidecar.precision == "fp16":
            line += (
                "; an FP16 export is meant for GPUs: on the CPU an FP32 or INT8 export is faster"
            )
        return line

    def run(self, batch: Mapping[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        """Run the graph on collated inputs: logits (B, H, D, bins) float32, tokens (B, H, D) int64."""
        feeds = {name: batch[name] for name in self.sidecar.input_names}
        logits, tokens = self.session.run(list(self.sidecar.output_names), feeds)
        return logits, tokens

    def act_batch(
        self, observations: Sequence[Observation], instructions: Sequence[str]
    ) -> list[ActionChunk]:
        """One chunk per observation, in one graph call."""
        batch = collate(observations, instructions, self.config.streams, self.tokenizer)
        logits, tokens = self.run(batch)
        actions = self.action_tokenizer.decode_logits(logits, self.config.action.decode)
        out = []
        for i, obs in enumerate(observations):
            lg = logits[i].astype(np.float64)
            p = np.exp(lg - lg.max(-1, keepdims=True))
            conf = float((1.0 / p.sum(-1)).mean())  # mean probability of the argmax token
            out.append(
                ActionChunk(
                    t_ns=obs.t_ns,
                    actions=actions[i],
                    period_ns=self.config.action.period_ns,
                    tokens=tokens[i].astype(np.int64),
                    info={"mean_token_prob": conf if math.isfinite(conf) else 0.0},
                )
            )
        return out

    def act(self, observation: Observation, instruction: str) -> ActionChunk:
        return self.act_batch([observation], [instruction])[0]

    def reset(self) -> None:
        """Stateless between calls; nothing to forget."""
