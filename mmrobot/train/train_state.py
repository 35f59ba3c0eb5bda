"""The training state on disk, what ``mmrobot train --resume`` continues from: the weights,
their moving average (EMA) and the optimizer state as safetensors, the step and the rest as
JSON (no pickle). Both files are written atomically (a temporary file, then a rename)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from mmrobot.core.errors import ConfigError
from mmrobot.policies import PolicyConfig
from mmrobot.train.run_dir import STATE_JSON, STATE_TENSORS

if TYPE_CHECKING:
    from mmrobot.policies import FusionPolicyModel

__all__ = [
    "TRAIN_STATE_VERSION",
    "load_train_state",
    "save_train_state",
    "saved_policy_config",
]

TRAIN_STATE_VERSION = 1


def _atomic_write_text(path: Path, text: str) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(path)


def save_train_state(
    run_dir: Path,
    model: FusionPolicyModel,
    ema: dict[str, torch.Tensor] | None,
    optimizer: torch.optim.Optimizer,
    step: int,
    train_config: dict[str, Any],
) -> None:
    """Write the state after ``step`` steps into ``run_dir`` (``train_config``: as JSON)."""
    from safetensors.torch import save_file

    tensors: dict[str, torch.Tensor] = {}
    names = {id(p): n for n, p in model.named_parameters()}
    opt_state = optimizer.state_dict()
    index_to_name = {}
    for group in optimizer.param_groups:
        for p in group["params"]:
            index_to_name[len(index_to_name)] = names[id(p)]
    scalars: dict[str, dict[str, float]] = {}
    for idx, st in opt_state["state"].items():
        pname = index_to_name[idx]
        for k, v in st.items():
            if torch.is_tensor(v) and v.ndim > 0:
                tensors[f"opt/{pname}/{k}"] = v.detach().cpu().contiguous()
            else:
                scalars.setdefault(pname, {})[k] = float(v)
    for k, v in model.state_dict().items():
        tensors[f"model/{k}"] = v.detach().cpu().contiguous()
    if ema is not None:
        for k, v in ema.items():
            tensors[f"ema/{k}"] = v.detach().cpu().contiguous()
    tmp = run_dir / (STATE_TENSORS + ".tmp")
    save_file(tensors, str(tmp))
    tmp.replace(run_dir / STATE_TENSORS)
    doc = {
        "version": TRAIN_STATE_VERSION,
        "step": step,
        "scalars": scalars,
        "policy_config": model.config.to_dict(),
        "train_config": train_config,
    }
    _atomic_write_text(run_dir / STATE_JSON, json.dumps(doc))


def load_train_state(
    run_dir: Path,
    model: FusionPolicyModel,
    ema: dict[str, torch.Tensor] | None,
    optimizer: torch.optim.Optimizer,
    device: torch.device,
) -> int:
    """Load the state in ``run_dir`` into ``model``, ``ema`` and ``optimizer``; the step."""
    from safetensors.torch import load_file

    doc = json.loads((run_dir / STATE_JSON).read_text(encoding="utf-8"))
    if doc.get("version") != TRAIN_STATE_VERSION:
        raise ConfigError(
            f"{run_dir / STATE_JSON}: training state version {doc.get('version')} "
            f"is not {TRAIN_STATE_VERSION}; start a new run"
        )
    tensors = load_file(str(run_dir / STATE_TENSORS))
    model.load_state_dict({k[6:]: v for k, v in tensors.items() if k.startswith("model/")})
    if ema is not None:
        ema.update({k[4:]: v.to(device) for k, v in tensors.items() if k.startswith("ema/")})
    names = {id(p): n for n, p in model.named_parameters()}
    state: dict[int, dict[str, torch.Tensor]] = {}
    idx = 0
    for group in optimizer.param_groups:
        for p in group["params"]:
            pname = names[id(p)]
            entry = {
                k.split("/")[-1]: v.to(device)
                for k, v in tensors.items()
                if k.startswith(f"opt/{pname}/")
            }
            entry.update({k: torch.tensor(v) for k, v in doc["scalars"].get(pname, {}).items()})
            if entry:
                state[idx] = entry
            idx += 1
    sd = optimizer.state_dict()
    sd["state"] = state
    optimizer.load_state_dict(sd)
    return int(doc["step"])


def saved_policy_config(run_dir: Path) -> PolicyConfig:
    """The policy config a run in ``run_dir`` trains (fitted to its data when it started)."""
    doc = json.loads((run_dir / STATE_JSON).read_text(encoding="utf-8"))
    return PolicyConfig.from_dict(doc["policy_config"])
