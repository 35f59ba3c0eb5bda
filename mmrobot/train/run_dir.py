"""A training run's folder: what marks one, and the rule that nothing overwrites one silently.

``mmrobot train`` into a folder that holds a run (a checkpoint, training state or metrics)
continues it with ``--resume``, replaces it with ``--overwrite``, and is refused otherwise.
``--overwrite`` removes only the files a run writes (listed in :data:`RUN_OUTPUTS`), never
the folder itself or anything else in it, and only once the dataset has been read.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from mmrobot.core.errors import ConfigError, OutputExistsError

__all__ = [
    "METRICS",
    "RUN_OUTPUTS",
    "STATE_JSON",
    "STATE_TENSORS",
    "check_run_dir",
    "clear_run_dir",
    "run_outputs",
]

STATE_JSON = "train_state.json"
STATE_TENSORS = "train_state.safetensors"
METRICS = "metrics.jsonl"
#: What a training run writes into its folder (``curves.png`` by ``mmrobot plot``).
RUN_OUTPUTS = (
    "checkpoint",
    "best",
    "dagger",
    STATE_JSON,
    STATE_TENSORS,
    METRICS,
    STATE_JSON + ".tmp",
    STATE_TENSORS + ".tmp",
    "curves.png",
)


def run_outputs(run_dir: str | Path) -> list[str]:
    """Names of the run outputs present in ``run_dir`` (empty: no run there)."""
    d = Path(run_dir)
    return [name for name in RUN_OUTPUTS if (d / name).exists()]


def check_run_dir(run_dir: str | Path, resume: bool, overwrite: bool) -> None:
    """Refuse to train into a folder holding a run unless told to continue or replace it.

    Raises:
        ConfigError: both ``resume`` and ``overwrite``.
        OutputExistsError: ``run_dir`` holds a run and neither is given.
    """
    if resume and overwrite:
        raise ConfigError("--resume continues a run and --overwrite replaces it; give one")
    found = run_outputs(run_dir)
    if found and not resume and not overwrite:
        raise OutputExistsError(
            f"{str(run_dir)!r} already holds a training run ({', '.join(found)}); pass "
            "--resume to continue it, --overwrite to replace it, or set out=OTHER_FOLDER"
        )


def clear_run_dir(run_dir: str | Path) -> None:
    """Remove the run outputs in ``run_dir`` (see :data:`RUN_OUTPUTS`); keep the rest."""
    d = Path(run_dir)
    for name in run_outputs(d):
        path = d / name
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        else:
            path.unlink()
