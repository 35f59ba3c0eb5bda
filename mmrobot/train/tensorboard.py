"""TensorBoard mirror of ``metrics.jsonl`` (``[log] tensorboard = true``, the ``tensorboard``
extra).

``metrics.jsonl`` stays the record: every row is written there first and then, when the
mirror is on, turned into scalars here by :func:`row_scalars`, the one mapping from a
metrics row to TensorBoard tags:

=========================  ===========================================================
tag                        from
=========================  ===========================================================
``train/loss``             ``kind = "train"`` rows: action-token cross-entropy
``train/token_accuracy``   the share of action tokens predicted exactly
``train/lr``               the learning rate of the step
``train/samples_per_s``    throughput since the previous row (all processes)
``train/aux/<name>``       each privileged auxiliary loss, when the policy has them
``eval/success``           ``kind = "eval"`` rows: mean closed-loop success
``eval/success/<task>``    the success of each task
=========================  ===========================================================

The step of every scalar is the optimizer step of its row. DAgger and DDP rows have no
scalar. Events go to ``<out>/tensorboard``; ``tensorboard --logdir runs/`` compares runs.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from mmrobot.core.extras import Need, require_extras

__all__ = ["TENSORBOARD_DIR", "TensorBoardMirror", "row_scalars"]

#: The event files' folder inside a run folder.
TENSORBOARD_DIR = "tensorboard"

_TRAIN_KEYS = {
    "loss": "train/loss",
    "token_accuracy": "train/token_accuracy",
    "lr": "train/lr",
    "samples_per_s": "train/samples_per_s",
}


def row_scalars(row: Mapping[str, Any]) -> list[tuple[str, float, int]]:
    """The ``(tag, value, step)`` scalars of one ``metrics.jsonl`` row (none for a row kind
    that has no step: DAgger rounds, DDP digests)."""
    kind, step = row.get("kind"), row.get("step")
    if not isinstance(step, int):
        return []
    out: list[tuple[str, float, int]] = []
    if kind == "train":
        for key, tag in _TRAIN_KEYS.items():
            if row.get(key) is not None:
                out.append((tag, float(row[key]), step))
        for key, value in row.items():
            if key.startswith("aux_") and value is not None:
                out.append((f"train/aux/{key[4:]}", float(value), step))
    elif kind == "eval":
        out.append(("eval/success", float(row["success"]), step))
        for task, rate in sorted(row.get("per_task", {}).items()):
            out.append((f"eval/success/{task}", float(rate), step))
    return out


class TensorBoardMirror:
    """Writes metrics rows as TensorBoard scalars (through :mod:`torch.utils.tensorboard`).

    Args:
        run_dir: the run folder; events go to ``run_dir / "tensorboard"``.
        start_step: the step a resumed run continues from (its checkpoint's): events an
            interrupted run wrote for later steps are dropped by TensorBoard
            (``purge_step``), as the steps themselves were.

    Raises:
        DependencyNotInstalled: without the ``tensorboard`` extra.
    """

    def __init__(self, run_dir: Path, start_step: int = 0) -> None:
        require_extras([Need("tensorboard")], "[log] tensorboard = true")
        from torch.utils.tensorboard import SummaryWriter

        self.log_dir = Path(run_dir) / TENSORBOARD_DIR
        self._writer = SummaryWriter(
            str(self.log_dir), purge_step=start_step + 1 if start_step else None
        )

    def write(self, row: Mapping[str, Any]) -> None:
        """Add the scalars of ``row`` (:func:`row_scalars`)."""
        for tag, value, step in row_scalars(row):
            self._writer.add_scalar(tag, value, step)
        if row.get("kind") == "eval":
            self._writer.flush()  # rare and wanted at once in the dashboard

    def close(self) -> None:
        self._writer.close()
