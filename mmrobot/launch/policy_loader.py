"""The launch file's ``[policy]`` as a :class:`~mmrobot.policies.Policy`, for a run session.

An ONNX export runs on :class:`~mmrobot.deploy.OnnxPolicy` with the file's
``policy.providers`` (default: TensorRT, CUDA, CPU, of those onnxruntime has) and
``policy.threads`` intra-op threads that never spin-wait, and imports no torch; a checkpoint
folder runs on torch with ``policy.device`` and ``policy.threads``.
"""

from __future__ import annotations

from typing import Any

from mmrobot.core.errors import ConfigError
from mmrobot.launch.schema import LaunchFile

__all__ = ["load_launch_policy"]


def load_launch_policy(launch: LaunchFile) -> Any:
    """Load ``launch.policy``.

    Raises:
        ConfigError: the launch file has no ``[policy]``, or the model cannot be read.
        FileNotFoundError: the checkpoint or export does not exist.
    """
    p = launch.policy
    if p is None:
        raise ConfigError(f"{launch.source}: a run needs a [policy] section")
    if p.onnx:
        from mmrobot.deploy.onnx_policy import OnnxPolicy, OrtConfig

        # policy.threads intra-op threads and no spin-waiting: ONNX Runtime's defaults (a
        # thread per core, spinning after each run) take the cores the control loop needs
        threads = {"intra_op_threads": p.threads, "inter_op_threads": 1, "allow_spinning": False}
        runtime = OrtConfig(**({"providers": tuple(p.providers)} if p.providers else {}), **threads)
        path = launch.path(p.onnx)
        if not path.exists():
            raise FileNotFoundError(
                f"policy.onnx = {p.onnx!r} not found; give an export folder (`mmrobot export`)"
            )
        return OnnxPolicy(path, runtime)
    import torch

    from mmrobot.train.eval import load_policy

    torch.set_num_threads(p.threads)
    return load_policy(launch.path(p.checkpoint or ""), device=p.device)
