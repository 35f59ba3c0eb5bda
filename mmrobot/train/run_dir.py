"""A training run's folder: what marks one, and the rule that nothing overwrites one silently.

``mmrobot train`` into a folder that holds a run (a checkpoint, training state or metrics)
continues it with ``--resume``, replaces it with ``--overwrite``, and is refused otherwise.
``--overwrite`` removes only the files a run writes (listed in :data:`RUN_OUTPUTS`), never
the folder itself or anything else in it, and only once the dataset has been read.
"""

from __future__ import annotations

import json
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
    "read_metrics",
    "run_outputs",
    "truncate_metrics",
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


def read_metrics(run_dir: str | Path) -> list[dict[str, object]]:
    """The lines of ``RUN/metrics.jsonl``; a torn last line (a killed run) is skipped."""
    path = Path(run_dir) / METRICS
    if not path.is_file():
        raise FileNotFoundError(
            f"{path} not found; is {str(run_dir)!r} a run folder of `mmrobot train`?"
        )
    rows = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return rows


def truncate_metrics(run_dir: Path, step: int) -> list[dict[str, object]]:
    """Keep the ``metrics.jsonl`` rows up to ``step`` (rows without a step stay) and drop a
    torn last line; returns the rows kept. A resumed run logs again what its stopped attempt
    logged after the state it resumes from, so its record stays one history; a new run (no
    file) starts empty."""
    path = Path(run_dir) / METRICS
    rows = read_metrics(run_dir) if path.is_file() else []
    kept = [r for r in rows if int(r.get("step", 0)) <= step]  # type: ignore[call-overload]
    path.write_text("".join(json.dumps(r) + "\n" for r in kept), encoding="utf-8")
    return kept
