"""``mmrobot plot RUN``: loss, token accuracy and evaluation success of a run, as a PNG.

``mmrobot plot RESULTS.json``: the attribution shares of one episode of ``mmrobot eval
--explain`` or ``mmrobot run --explain`` over the episode's time (:func:`plot_attribution`).
"""

from __future__ import annotations

import json
from pathlib import Path

from mmrobot.core.deps import require
from mmrobot.core.errors import ConfigError
from mmrobot.train.run_dir import read_metrics

__all__ = ["plot_attribution", "plot_run", "read_metrics"]


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


def plot_attribution(
    results_json: str | Path, episode: int = 0, out: str | Path | None = None
) -> Path:
    """Draw one explained episode's attribution shares over its control ticks.

    Args:
        results_json: an ``mmrobot eval --explain --json`` or ``mmrobot run --explain --json``
            file (its ``episodes`` carry ``attribution``).
        episode: index among the episodes that carry an attribution.
        out: PNG path (default: next to the JSON, ``<stem>_attribution_<episode>.png``).

    Returns:
        The PNG path.
    """
    path = Path(results_json)
    doc = json.loads(path.read_text(encoding="utf-8"))
    episodes = doc if isinstance(doc, list) else doc.get("episodes", [])  # run: a list
    explained = [e for e in episodes if e.get("attribution")]
    if not explained:
        raise FileNotFoundError(
            f"{path}: no episode carries an attribution; write it with `mmrobot eval --explain "
            "--json FILE` or `mmrobot run --explain --json FILE`"
        )
    if not 0 <= episode < len(explained):
        raise ConfigError(
            f"--episode {episode} out of range: {path} has {len(explained)} explained episodes"
        )
    ep = explained[episode]
    att = ep["attribution"]
    matplotlib = require("matplotlib", "mmrobot plot")
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(9, 3.8))
    shares = list(zip(*att["shares"]))  # one series per group
    ax.stackplot(att["steps"], shares, labels=att["groups"], alpha=0.85)
    ax.set(xlabel="control tick", ylabel="share of attention", ylim=(0, 1))
    ax.set_xlim(att["steps"][0], max(att["steps"][-1], att["steps"][0] + 1))
    ax.legend(loc="center left", bbox_to_anchor=(1.01, 0.5), fontsize=8)
    ax.grid(alpha=0.3)
    outcome = "success" if ep.get("success") else ep.get("reason") or "fail"
    where = " | ".join(str(p) for p in (ep.get("split"), ep.get("task"), outcome) if p)
    ax.set_title(f"{ep.get('instruction', '')}\n{where}", fontsize=9)
    fig.tight_layout()
    out = Path(out) if out else path.with_name(f"{path.stem}_attribution_{episode}.png")
    fig.savefig(out, dpi=100)
    plt.close(fig)
    return out
