"""[log] tensorboard = true: the training and evaluation rows of metrics.jsonl, read back from
the event files with TensorBoard's own EventAccumulator."""

import json
from pathlib import Path

import pytest
from test_trainer import config, write_dataset, write_policy_toml

from mmrobot.core import ConfigError
from mmrobot.core.errors import DependencyNotInstalled
from mmrobot.train.config import LogConfig, load_train_config
from mmrobot.train.tensorboard import row_scalars

TRAIN_TAGS = {"train/loss", "train/token_accuracy", "train/lr", "train/samples_per_s"}


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    d = tmp_path_factory.mktemp("tb")
    return write_policy_toml(d / "policy.toml"), write_dataset(d / "demos.h5", episodes=2), d


def _rows(run_dir: Path, kind: str) -> list[dict]:
    lines = (run_dir / "metrics.jsonl").read_text().splitlines()
    return [r for r in map(json.loads, lines) if r["kind"] == kind]


def _scalars(run_dir: Path) -> dict[str, list[tuple[int, float]]]:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(run_dir / "tensorboard"))
    acc.Reload()
    return {t: [(e.step, e.value) for e in acc.Scalars(t)] for t in acc.Tags()["scalars"]}


def test_the_log_table_is_validated(tmp_path, files):
    path = tmp_path / "t.toml"
    path.write_text('[train]\nsteps = 3\n[log]\ntensorboard = "yes"\n')
    with pytest.raises(ConfigError, match=r"log.tensorboard = 'yes'; expected true or false"):
        load_train_config(path)
    path.write_text("[train]\nsteps = 3\n[log]\nwandb = true\n")
    with pytest.raises(ConfigError, match=r"\[log\]: unknown key\(s\) \['wandb'\]"):
        load_train_config(path)
    path.write_text("[train]\nsteps = 3\n[log]\ntensorboard = true\n")
    assert load_train_config(path).log == LogConfig(tensorboard=True)
    c = config(files, tmp_path).with_overrides(["log.tensorboard=true"])
    assert c.log.tensorboard is True and config(files, tmp_path).log.tensorboard is False


def test_row_scalars_maps_train_and_eval_rows_and_skips_the_rest():
    train = {"kind": "train", "step": 7, "loss": 2.5, "token_accuracy": 0.5, "lr": 1e-3}
    train |= {"aux_block_rel": 0.25, "samples_per_s": 40.0, "elapsed_s": 3.0}
    assert row_scalars(train) == [
        ("train/loss", 2.5, 7),
        ("train/token_accuracy", 0.5, 7),
        ("train/lr", 1e-3, 7),
        ("train/samples_per_s", 40.0, 7),
        ("train/aux/block_rel", 0.25, 7),
    ]
    ev = {"kind": "eval", "step": 9, "success": 0.5, "per_task": {"stack": 0.0, "pick": 1.0}}
    assert row_scalars(ev) == [
        ("eval/success", 0.5, 9),
        ("eval/success/pick", 1.0, 9),
        ("eval/success/stack", 0.0, 9),
    ]
    assert row_scalars({"kind": "dagger", "round": 1, "success_rate": 0.3}) == []


def test_a_tiny_run_writes_the_metrics_rows_as_tensorboard_scalars(files, tmp_path, monkeypatch):
    pytest.importorskip("tensorboard")
    import mmrobot.train.eval as train_eval
    from mmrobot.train import train

    calls = []

    def fake_success(checkpoint, tasks, episodes, seed, workers):
        # the closed-loop rollouts are tests/train/test_evaluate's; here only the row matters
        calls.append(tasks)
        rate = 0.25 * len(calls)
        return {"mean": rate, "per_task": {t: rate for t in tasks}}

    monkeypatch.setattr(train_eval, "quick_success", fake_success)
    c = config(files, tmp_path / "run", steps=4, log_every=2, save_every=4)
    c = c.with_overrides(["log.tensorboard=true", "eval.every=2", "eval.workers=0"])
    run = train(c, progress=False)

    scalars = _scalars(run.run_dir)
    assert set(scalars) == TRAIN_TAGS | {"eval/success", "eval/success/reach"}
    rows = _rows(run.run_dir, "train")
    assert [r["step"] for r in rows] == [2, 4]
    keys = {"train/loss": "loss", "train/token_accuracy": "token_accuracy", "train/lr": "lr"}
    keys["train/samples_per_s"] = "samples_per_s"
    for tag, key in keys.items():
        assert [s for s, _ in scalars[tag]] == [2, 4], tag
        assert [v for _, v in scalars[tag]] == pytest.approx([r[key] for r in rows], rel=1e-6)
    assert scalars["eval/success"] == [(2, 0.25), (4, 0.5)]
    assert scalars["eval/success/reach"] == [(2, 0.25), (4, 0.5)]
    assert [r["success"] for r in _rows(run.run_dir, "eval")] == [0.25, 0.5]

    # A resumed run appends: one point per step, no step twice.
    monkeypatch.setattr(train_eval, "quick_success", fake_success)
    more = train(c.replace(steps=6), resume=True, progress=False)
    scalars = _scalars(more.run_dir)
    assert [s for s, _ in scalars["train/loss"]] == [2, 4, 6]
    assert [s for s, _ in scalars["eval/success"]] == [2, 4, 6]


def test_without_the_extra_training_stops_before_it_starts(files, tmp_path, monkeypatch):
    import mmrobot.core.extras as extras
    from mmrobot.train import train

    real = extras.is_present
    monkeypatch.setattr(extras, "is_present", lambda m: m != "tensorboard" and real(m))
    c = config(files, tmp_path / "run", steps=2).with_overrides(["log.tensorboard=true"])
    with pytest.raises(DependencyNotInstalled, match=r'pip install "mmrobot\[tensorboard\]"'):
        train(c, progress=False)
    assert not (tmp_path / "run").exists()
