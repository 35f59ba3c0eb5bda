"""``mmrobot plot RUN``: loss, token accuracy and evaluation success of a run, as a PNG."""

from __future__ import annotations

import json
from pathlib import Path

from mmrobot.core.deps import require

__all__ = ["plot_run", "read_metrics"]


def read_metrics(run_dir: str | Path) -> list[dict[str, object]]:
    """The lines of ``RUN/metrics.jsonl``; a torn last line (a killed run) is skipped."""
    path = Path(run_dir) / "metrics.jsonl"
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


def plot_run(run_dir: str | Path, out: str | Path | None = None) -> Path:
    """Draw the run's curves; returns the PNG path."""
    matplotlib = require("matplotlib", "mmrobot plot")
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = read_metrics(run_dir)
    train = [r for r in rows if r.get("kind") == "train"]
    evals = [r for r in rows if r.get("kind") == "eval"]
    if not train:
        raise FileNotFoundError(f"{run_dir}: metrics.jsonl has no training lines yet")
    fig, axes = plt.subplots(1, 3 if evals else 2, figsize=(13 if evals else 9, 3.5))
    steps = [r["step"] for r in train]
    axes[0].plot(steps, [r["loss"] for r in train])
    axes[0].set(xlabel="step", ylabel="cross-entropy", title="loss", yscale="log")
    axes[1].plot(steps, [r["token_accuracy"] for r in train])
    axes[1].set(xlabel="step", ylabel="accuracy", title="action-token accuracy", ylim=(0, 1))
    if evals:
        axes[2].plot([r["step"] for r in evals], [r["success"] for r in evals], marker="o")
        axes[2].set(xlabel="step", ylabel="success rate", title="closed-loop success", ylim=(0, 1))
    for ax in axes:
        ax.grid(alpha=0.3)
    fig.suptitle(str(run_dir))
    fig.tight_layout()
    out = Path(out) if out else Path(run_dir) / "curves.png"
    fig.savefig(out, dpi=100)
    plt.close(fig)
    return out
