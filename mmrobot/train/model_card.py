"""The release's model card: rendered from ``eval.json``, ``metrics.jsonl`` and
``release.json`` alone (:func:`render_model_card`), and checked against them
(:func:`check_model_card`), so every number in the card is one those files hold.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from mmrobot.core.errors import MmrobotError
from mmrobot.train.release_config import (
    CARD_FILE,
    CURVES_FILE,
    EVAL_FILE,
    METRICS_FILE,
    RECORD_FILE,
)
from mmrobot.train.reliance import reliance_table
from mmrobot.train.run_dir import read_metrics

__all__ = ["ModelCardMismatch", "check_model_card", "render_model_card"]

# --------------------------------------------------------------------------- the model card


class ModelCardMismatch(MmrobotError, ValueError):
    """MODEL_CARD.md does not say what eval.json, metrics.jsonl and release.json hold."""


def _pct(x: float | None) -> str:
    return "-" if x is None else f"{100 * x:.0f} %"


def _cell(r: Mapping[str, Any]) -> str:
    """``7/10, 70 % [40–89]`` from an eval.json results entry."""
    if not r["episodes"]:
        return "-"
    lo, hi = r["ci95"]
    return f"{r['successes']}/{r['episodes']}, {_pct(r['rate'])} [{100 * lo:.0f}–{100 * hi:.0f}]"


def _table(name: str, header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """A markdown table between markers that :func:`check_model_card` finds it by."""
    lines = [f"<!-- table: {name} -->", "| " + " | ".join(header) + " |"]
    lines.append("| " + " | ".join("---" for _ in header) + " |")
    lines += ["| " + " | ".join(str(c) for c in r) + " |" for r in rows]
    lines.append("<!-- /table -->")
    return "\n".join(lines)


def _eval_tables(doc: Mapping[str, Any]) -> list[str]:
    splits, tasks = doc["splits"], doc["tasks"]
    res, safety = doc["results"], doc["safety"]
    rows = [
        [f"**{k}**" if k == "all" else k, *(_cell(res[s][k]) for s in splits)]
        for k in (*tasks, "all")
    ]
    out = [_table("eval-success", ["task", *splits], rows)]
    rows = [
        [
            f"**{k}**" if k == "all" else k,
            *(
                f"{safety[s][k]['events_per_episode']:.1f} / "
                f"{safety[s][k]['held_ticks_per_episode']:.1f}"
                for s in splits
            ),
        ]
        for k in (*tasks, "all")
    ]
    out.append(_table("eval-safety", ["task", *splits], rows))
    reasons: dict[str, int] = {}
    for s in splits:
        for r, n in safety[s]["all"]["by_reason"].items():
            reasons[r] = reasons.get(r, 0) + n
    order = sorted(reasons, key=lambda r: (-reasons[r], r))
    rows = [[r, *(str(safety[s]["all"]["by_reason"].get(r, 0)) for s in splits)] for r in order]
    if not rows:
        rows = [["(none)", *("0" for _ in splits)]]
    out.append(_table("eval-safety-reasons", ["reason", *splits], rows))
    return out


def _onnx_table(doc: Mapping[str, Any]) -> str | None:
    exports = doc.get("exports") or {}
    if not exports:
        return None
    header = ["split", "task", "torch"]
    for name in exports:
        header += [name.replace("_", " "), "vs torch (points)"]
    rows = []
    for s in next(iter(exports.values()))["splits"]:
        for k in (*doc["tasks"], "all"):
            torch_r = doc["results"][s][k]
            row = [s, f"**{k}**" if k == "all" else k, _cell(torch_r)]
            for e in exports.values():
                r = e["results"][s][k]
                diff = (
                    "-"
                    if r["rate"] is None or torch_r["rate"] is None
                    else f"{100 * (r['rate'] - torch_r['rate']):+.0f}"
                )
                row += [_cell(r), diff]
            rows.append(row)
    return _table("eval-onnx", header, rows)


def _minutes(s: float) -> str:
    return f"{s / 60:.1f}"


def _load(x: Sequence[float] | None) -> str:
    return "-" if not x else f"{x[0]:.2f}"


def render_model_card(release_dir: str | Path) -> str:
    """MODEL_CARD.md from ``eval.json``, ``metrics.jsonl`` and ``release.json`` alone."""
    d = Path(release_dir)
    ev = json.loads((d / EVAL_FILE).read_text(encoding="utf-8"))
    rec = json.loads((d / RECORD_FILE).read_text(encoding="utf-8"))
    metrics = read_metrics(d)  # the release folder holds the run's metrics.jsonl
    train_rows = [r for r in metrics if r.get("kind") == "train"]
    eval_rows = [r for r in metrics if r.get("kind") == "eval"]
    dagger_rows = [r for r in metrics if r.get("kind") == "dagger"]
    cfg = rec["config"]["release"]
    tc = rec["train_config"]
    data, held, tr, pol = rec["data"], rec["heldout"], rec["training"], rec["policy"]
    settings = ev["settings"]
    toy = rec["toy"]
    src = rec["source"]
    commit = (
        "unknown commit"
        if not src.get("commit")
        else f"commit {src['commit'][:12]}" + (" with uncommitted changes" if src["dirty"] else "")
    )
    p: list[str] = []
    title = f"mmrobot released policy {rec['version']}"
    if toy:
        title = "mmrobot release: toy run (a smoke test of the release command, not a policy)"
    p.append(f"# {title}\n")
    p.append(
        "<!-- Generated by `mmrobot release` from eval.json, metrics.jsonl and release.json in "
        "this folder; `mmrobot release --check DIR` verifies that it still matches them. -->\n"
    )
    p.append(
        f"Reproduce it from scratch with `{rec['command']}` (mmrobot {rec['mmrobot_version']}, "
        f"{commit}). Every figure below was measured by that command and is read from the "
        "files next to this card: `eval.json` (evaluation), `metrics.jsonl` (training log, "
        "drawn in `curves.png`) and `release.json` (data, timing, machine).\n"
    )
    # summary
    res = ev["results"]
    summary = [
        [f"success, {s} (all tasks)", _cell(res[s]["all"])]
        for s in ev["splits"]
        if s in ("train", "heldout", "instruction_swap")
    ]
    summary += [
        [
            "wall time (all stages)",
            f"{_minutes(rec['total_s'])} min (budget {rec['budget_min']:g} min)",
        ],
        [
            "checkpoint",
            f"{pol['parameters']:,} parameters, {pol['weights_bytes'] / 1e6:.1f} MB",
        ],
    ]
    p.append("## Summary\n")
    p.append(_table("summary", ["", ""], summary) + "\n")
    # model
    p.append("## Model\n")
    p.append(
        f"{pol['fusion']} fusion, {pol['decoding']} decoding, width {pol['width']}, "
        f"depth {pol['depth']}, {pol['heads']} attention heads; inputs: "
        + ", ".join(f"`{s}`" for s in pol["streams"])
        + f"; {pol['horizon']} x 7 action tokens, {pol['bins']} bins per dimension"
        + (f"; training-only heads: {', '.join(pol['aux_heads'])}" if pol["aux_heads"] else "")
        + (
            f"; a WordNet lexicon reads {lex['entries']:,} other words as the "
            f"{lex['vocabulary']} training words (`mmrobot policy lexicon`)"
            if (lex := pol.get("lexicon"))
            else "; no lexicon: instructions are read as typed"
            if "lexicon" in pol  # releases before the lexicon existed say nothing of it
            else ""
        )
        + f". Policy config `{tc['policy']}`"
        + (" shrunk to a toy network" if toy else "")
        + "; `config.json` holds all of it, `model.safetensors` the weights.\n"
    )
    # data
    c = cfg["collect"]
    p.append("## Data\n")
    rows = [
        [
            name,
            str(x["episodes"]),
            f"{x['samples']:,}",
            f"{x['seeds'][0]}–{x['seeds'][1]}",
            ", ".join(f"{t} {n}" for t, n in x["per_task"].items()),
            str(x["attempts"]),
        ]
        for name, x in (("demonstrations (trained on)", data), ("held-out slice", held))
    ]
    p.append(
        _table("data", ["set", "episodes", "samples", "seeds", "per task", "expert attempts"], rows)
        + "\n"
    )
    p.append(
        f"Scripted-expert episodes of the tasks {', '.join(f'`{t}`' for t in c['tasks'])}, "
        f"{data['image_size']} px cameras, {c['settle_steps']} settle steps after each success, "
        f"domain randomization {'on' if c['randomize'] else 'off'}, training phrasings; only "
        "successful episodes are kept.\n"
    )
    # training
    p.append("## Training\n")
    ov = cfg["train"]["overrides"]
    p.append(
        f"Train config `{cfg['train']['config']}`"
        + (f" with {', '.join(f'`{o}`' for o in ov)}" if ov else "")
        + f": {tr['steps']:,} steps in all ({tc['steps']:,} of behaviour cloning"
        + (
            f", then {tr['dagger_rounds']} DAgger round(s) of {tc['dagger']['steps']:,} steps "
            f"each, {tc['dagger']['episodes']} rollouts per round, beta {tc['dagger']['beta']:g} "
            f"decaying by {tc['dagger']['beta_decay']:g} per round"
            if tr["dagger_rounds"]
            else ", no DAgger"
        )
        + f"), batch {tc['batch_size']}, AdamW lr {tc['lr']:g}, precision {tc['precision']}, "
        f"seed {tc['seed']}.\n"
    )
    if dagger_rows:
        rows = [
            [
                str(r["round"]),
                f"{r['beta']:.2f}",
                str(r.get("episodes", "-")),
                f"{r.get('steps', 0):,}",
                _pct(r.get("success_rate")),
                f"{r.get('seconds', 0):.0f}",
            ]
            for r in dagger_rows
        ]
        header = ["round", "beta", "episodes", "labelled states", "policy success", "seconds"]
        p.append(_table("dagger", header, rows) + "\n")
    if eval_rows:
        rows = [
            [str(r["step"]), _pct(r["success"]), str(r["episodes_per_task"]), f"{r['seconds']:.0f}"]
            for r in eval_rows
        ]
        p.append("Closed-loop success during training (train phrasings, safety layer on):\n")
        p.append(
            _table("train-eval", ["step", "success", "episodes per task", "seconds"], rows) + "\n"
        )
    within = tr.get("keep_within")  # absent before eval.keep_within (up to v21): the best
    rule = "the best by closed-loop success"
    if within:
        rule = f"the latest within {100 * within:.0f} points of the best closed-loop success"
    elif within is not None:
        rule += " (ties to the later check)"
    chosen = (
        f"{rule} during training (step {tr['checkpoint_step']}, {_pct(tr['checkpoint_success'])})"
        if tr["selected"] == "best"
        else f"the last (step {tr['checkpoint_step']})"
    )
    last = train_rows[-1] if train_rows else {}
    p.append(
        f"Released checkpoint: {chosen}. Last training loss {last.get('loss', float('nan')):.3f}"
        f" (action-token cross-entropy), token accuracy "
        f"{last.get('token_accuracy', float('nan')):.3f}.\n"
    )
    p.append(f"![loss, accuracy and success curves]({CURVES_FILE})\n")
    # timing
    p.append("## Wall time\n")
    rows = [
        [
            f"{s['name']} ({s['attempts']} attempts, {s['interrupted_s']:.1f} s before the last)"
            if s.get("attempts", 1) > 1
            else s["name"],
            f"{s['seconds']:.1f}",
            _minutes(s["seconds"]),
            f"{_load(s['load_average_start'])} → {_load(s['load_average_end'])}",
        ]
        for s in rec["stages"]
    ]
    rows.append(["**total**", f"{rec['total_s']:.1f}", _minutes(rec["total_s"]), ""])
    p.append(
        _table("timing", ["stage", "seconds", "minutes", "load average (1 min), start → end"], rows)
        + "\n"
    )
    within = rec["total_s"] <= 60 * rec["budget_min"]
    dag_s = sum(r.get("seconds", 0) for r in dagger_rows)
    ev_s = sum(r.get("seconds", 0) for r in eval_rows)
    m = rec["machine"]
    p.append(
        f"Total {_minutes(rec['total_s'])} min, {'within' if within else 'over'} the budget of "
        f"{rec['budget_min']:g} min (the sum of the stages, each timed with "
        f"`time.perf_counter`). Of the training stage, "
        + (
            f"DAgger collection took {dag_s:.0f} s and evaluation during training {ev_s:.0f} s. "
            if dagger_rows
            else f"evaluation during training took {ev_s:.0f} s. "
        )
        + (
            f"The stages ran in {runs} invocations (`--resume`); the total is the sum of their "
            "times. "
            if (runs := len({s["invocation"] for s in rec["stages"]})) > 1
            else ""
        )
        + f"Machine: {m['cpu']}, {m['cores_available']} cores available, Python "
        f"{m['python']}, {m['platform']}; started {rec['started']}, finished "
        f"{rec['finished']}.\n"
    )
    # evaluation
    p.append("## Evaluation\n")
    p.append(
        f"`mmrobot eval` in the same run: {settings['episodes']} episode(s) per task per split, "
        f"episode k reset with seed {settings['seed']} + k (never a training seed), "
        + (
            f"at most {settings['max_steps']} ticks, "
            if settings["max_steps"]
            else "each task's time limit, "
        )
        + f"safety layer {'on' if settings['safety'] else 'OFF'} as in `mmrobot run`, temporal "
        f"ensembling decay {settings['ensemble_decay']}, a new chunk every "
        f"{settings['replan_every']} tick(s). Success: successes/episodes, rate "
        f"[95 % Wilson interval].\n"
    )
    succ, safe, reasons = _eval_tables(ev)
    p.append(succ + "\n")
    if ev["errors"]:
        p.append(f"{ev['errors']} episode(s) crashed and count as failures (see eval.json).\n")
    p.append(
        "Safety layer per episode (mean): events (every clamp or hold, one per joint or axis "
        "and tick) / ticks held:\n"
    )
    p.append(safe + "\n")
    p.append("Safety events by reason (total over all episodes):\n")
    p.append(reasons + "\n")
    onnx = _onnx_table(ev)
    if onnx:
        p.append("### ONNX exports\n")
        p.append(
            "The checkpoint exported with `mmrobot export` and evaluated through ONNX Runtime "
            "on the same episodes; the difference to torch is in percentage points:\n"
        )
        p.append(onnx + "\n")
    # reliance
    rel = rec["reliance"]
    columns, rows = reliance_table(rel["results"])
    p.append("## Modality reliance\n")
    p.append(
        f"Action-token loss on {rel['samples']} samples of the held-out slice "
        f"({rel['episodes']} episodes never trained on), with one input removed at a time "
        "(the stream marked invalid, as a missing sensor is) or the instructions shuffled "
        "across the batch (`mmrobot.train.reliance`, also "
        "`benchmarks/modality_reliance.py`). An input whose removal barely raises the loss is "
        "one the policy does not use."
        + (
            " The last column is how far the policy's `block_rel` head places the named "
            "block from where it is: an input the policy looks for the block with raises it."
            if len(columns) > 4
            else ""
        )
        + "\n"
    )
    p.append(_table("reliance", columns, rows) + "\n")
    return "\n".join(p)


def _tables(text: str) -> dict[str, list[str]]:
    """Marked tables of a card: name -> its lines."""
    out: dict[str, list[str]] = {}
    name: str | None = None
    for line in text.splitlines():
        if line.startswith("<!-- table: ") and line.endswith(" -->"):
            name = line[len("<!-- table: ") : -len(" -->")]
            out[name] = []
        elif line == "<!-- /table -->":
            name = None
        elif name is not None:
            out[name].append(line)
    return out


def _eval_consistency(name: str, doc: Mapping[str, Any]) -> list[str]:
    """Problems where an evaluation's tables disagree with its own episode list."""
    from mmrobot.train.eval import wilson_interval

    problems = []
    eps = doc.get("episodes", [])
    for s in doc["splits"]:
        for k in (*doc["tasks"], "all"):
            mine = [e for e in eps if e["split"] == s and (k == "all" or e["key"] == k)]
            n, ok = len(mine), sum(bool(e["success"]) for e in mine)
            r = doc["results"][s][k]
            lo, hi = wilson_interval(ok, n)
            rate = ok / n if n else None
            same = (
                r["episodes"] == n
                and r["successes"] == ok
                and (r["rate"] is None) == (rate is None)
                and (rate is None or abs(r["rate"] - rate) < 1e-9)
                and abs(r["ci95"][0] - lo) < 1e-9
                and abs(r["ci95"][1] - hi) < 1e-9
            )
            if not same:
                problems.append(
                    f"eval.json {name}: results[{s}][{k}] says {r['successes']}/{r['episodes']} "
                    f"(rate {r['rate']}, ci95 {r['ci95']}); its episodes give {ok}/{n}"
                )
            sf = doc["safety"][s][k]
            events = sum(sum(e["safety_events"].values()) for e in mine)
            held = sum(e["holds"] for e in mine)
            if sf["events"] != events or sf["held_ticks"] != held:
                problems.append(
                    f"eval.json {name}: safety[{s}][{k}] says {sf['events']} events, "
                    f"{sf['held_ticks']} held ticks; its episodes give {events}, {held}"
                )
    return problems


def check_model_card(release_dir: str | Path) -> None:
    """Check that MODEL_CARD.md says what the files next to it hold.

    Each evaluation in ``eval.json`` (torch and every export) is checked against its own
    episode list (successes, Wilson intervals, safety counts, per split and task), and the
    card is rendered again from ``eval.json``, ``metrics.jsonl`` and ``release.json`` and
    compared with the one on disk, table by table, then line by line.

    Raises:
        ModelCardMismatch: what differs, by file, table, row.
        FileNotFoundError: a file is missing.
    """
    d = Path(release_dir)
    for f in (CARD_FILE, EVAL_FILE, RECORD_FILE, METRICS_FILE):
        if not (d / f).is_file():
            raise FileNotFoundError(f"{d / f} not found; is {str(d)!r} a release folder?")
    ev = json.loads((d / EVAL_FILE).read_text(encoding="utf-8"))
    problems = _eval_consistency("torch", ev)
    for name, doc in (ev.get("exports") or {}).items():
        problems += _eval_consistency(name, doc)
    card = (d / CARD_FILE).read_text(encoding="utf-8")
    expected = render_model_card(d)
    have, want = _tables(card), _tables(expected)
    for name, rows in want.items():
        if name not in have:
            problems.append(f"{CARD_FILE}: table {name!r} is missing")
            continue
        for i in range(max(len(rows), len(have[name]))):
            a = have[name][i] if i < len(have[name]) else "(no row)"
            b = rows[i] if i < len(rows) else "(no row)"
            if a != b:
                problems.append(
                    f"{CARD_FILE} table {name!r}, line {i + 1}: card {a!r}, files {b!r}"
                )
    for name in sorted(set(have) - set(want)):
        problems.append(f"{CARD_FILE}: table {name!r} is not one the files give")
    if not problems and card != expected:
        for i, (a, b) in enumerate(zip(card.splitlines(), expected.splitlines()), 1):
            if a != b:
                problems.append(f"{CARD_FILE} line {i}: card {a!r}, files {b!r}")
                break
        else:
            problems.append(f"{CARD_FILE}: its length differs from the card the files give")
    if problems:
        raise ModelCardMismatch(
            f"{d / CARD_FILE} does not match the files next to it:\n  " + "\n  ".join(problems)
        )
