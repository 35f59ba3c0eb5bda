"""mmrobot release: the toy run end to end, the model card check, resume, config validation."""

from __future__ import annotations

import importlib.util
import json
import shutil
from pathlib import Path

import pytest

from mmrobot.envs.scene import choose_gl_backend

choose_gl_backend()  # before mujoco is first imported: headless EGL (or OSMesa) rendering

from mmrobot.cli import main  # noqa: E402
from mmrobot.core.errors import ConfigError  # noqa: E402
from mmrobot.train.release import (  # noqa: E402
    CARD_FILE,
    EVAL_FILE,
    RECORD_FILE,
    TOY_OVERRIDES,
    ModelCardMismatch,
    check_model_card,
    load_release_config,
)

ROOT = Path(__file__).resolve().parents[2]
CONFIG = ROOT / "policies" / "release.toml"
TRAIN_CONFIG = ROOT / "policies" / "train_default.toml"
HAVE_DAGGER = importlib.util.find_spec("mmrobot.train.dagger") is not None
HAVE_ONNX = all(importlib.util.find_spec(m) for m in ("onnx", "onnxruntime"))
# every toy run here (and its resumes): the late-turning expert, whose DAgger round must label
# with it too (test_toy_release_ran_a_dagger_round)
TOY_EXTRA = [
    "collect.expert_turn=over_block",
    *([] if HAVE_DAGGER else ["train.dagger.rounds=0"]),
    *([] if HAVE_ONNX else ["evaluate.onnx=[]"]),
]


# --------------------------------------------------------------------------- the toy run


@pytest.fixture(scope="module")
def toy(tmp_path_factory):
    """One toy release (about half a minute), shared by the tests that read its files."""
    pytest.importorskip("mujoco")
    pytest.importorskip("torch")
    out = tmp_path_factory.mktemp("release")
    # positionals (config, overrides) together: argparse takes them in one run
    rc = main(["release", str(CONFIG), *TOY_EXTRA, "--toy", "--out", str(out), "--no-progress"])
    assert rc == 0
    return out


def test_toy_release_writes_every_file(toy):
    for name in (CARD_FILE, EVAL_FILE, RECORD_FILE, "metrics.jsonl", "curves.png"):
        assert (toy / name).is_file(), name
    assert (toy / "config.json").is_file() and (toy / "model.safetensors").is_file()
    ev = json.loads((toy / EVAL_FILE).read_text())
    assert ev["splits"] == list(load_release_config(CONFIG).evaluate.splits)
    assert ev["tasks"] == ["reach", "pick"]
    assert ev["settings"]["safety"] is True
    assert all(ev["results"][s]["all"]["episodes"] == 2 for s in ev["splits"])
    if HAVE_ONNX:
        assert set(ev["exports"]) == {"onnx_fp32", "onnx_int8"}
    rec = json.loads((toy / RECORD_FILE).read_text())
    assert rec["toy"] is True
    names = [s["name"] for s in rec["stages"]]
    assert names[:5] == ["collect", "heldout", "train", "checkpoint", "evaluate"]
    assert names[-2:] == ["reliance", "report"]
    assert rec["total_s"] == pytest.approx(sum(s["seconds"] for s in rec["stages"]))
    assert rec["data"]["episodes"] == 4 and rec["heldout"]["episodes"] == 2
    reliance = rec["reliance"]["results"]
    assert "all inputs" in reliance
    # the default policy has a block_rel head: how far it places the block, per input removed
    assert all(r["block_rms_cm"] >= 0 for r in reliance.values())
    card = (toy / CARD_FILE).read_text()
    assert "toy run" in card and "mmrobot release" in card


def test_model_card_matches_eval_json(toy):
    check_model_card(toy)  # raises ModelCardMismatch otherwise
    assert main(["release", "--check", str(toy)]) == 0


def test_the_shipped_release_card_matches_its_files():
    """policies/release as committed: its card's tables are its eval.json's and release.json's
    (a change to how cards are written must still read the releases made before it)."""
    shipped = ROOT / "policies" / "release"
    check_model_card(shipped)  # raises ModelCardMismatch otherwise
    assert main(["release", "--check", str(shipped)]) == 0


def _copy_release(src: Path, dst: Path) -> Path:
    dst.mkdir(parents=True, exist_ok=True)
    for f in src.iterdir():
        if f.is_file():
            shutil.copyfile(f, dst / f.name)
    return dst


def test_tampered_eval_json_fails_the_check(toy, tmp_path):
    d = _copy_release(toy, tmp_path / "release")
    ev = json.loads((d / EVAL_FILE).read_text())
    ev["results"]["train"]["reach"]["successes"] += 1  # a success that no episode had
    (d / EVAL_FILE).write_text(json.dumps(ev))
    with pytest.raises(ModelCardMismatch, match=r"results\[train\]\[reach\]") as e:
        check_model_card(d)
    assert "eval-success" in str(e.value)  # the card's table no longer matches either
    assert main(["release", "--check", str(d)]) == 1


def test_tampered_card_fails_the_check(toy, tmp_path):
    d = _copy_release(toy, tmp_path / "release")
    card = (d / CARD_FILE).read_text()
    row = next(line for line in card.splitlines() if line.startswith("| **all** | 0/2, 0 %"))
    (d / CARD_FILE).write_text(card.replace(row, row.replace("0/2, 0 %", "2/2, 100 %", 1), 1))
    with pytest.raises(ModelCardMismatch, match="eval-success"):
        check_model_card(d)


def test_toy_release_ran_a_dagger_round(toy):
    if not HAVE_DAGGER:
        pytest.skip(
            "mmrobot.train.dagger (DAgger collection) is not in this tree yet; the toy release "
            "ran with train.dagger.rounds=0"
        )
    rows = [json.loads(x) for x in (toy / "metrics.jsonl").read_text().splitlines() if x]
    dagger = [r for r in rows if r.get("kind") == "dagger"]
    assert [r["round"] for r in dagger] == [1]
    assert "<!-- table: dagger -->" in (toy / CARD_FILE).read_text()
    # the steps the policy drove are flagged, so training keeps only their own labels there
    from mmrobot.envs.dataset import DemoDataset

    (path,) = toy.rglob("round_01.h5")
    ds = DemoDataset(path)
    assert ds.expert_turn == "over_block"  # labelled by the demonstrations' expert
    flags = [ds.perturbed(e) for e in range(len(ds))]
    assert all(f.shape == (ds.info(e).n_steps,) for e, f in enumerate(flags))
    assert any(f.any() for f in flags)  # the expert acts on only 30 % of the ticks


def test_resume_skips_completed_stages(toy, tmp_path, capsys):
    d = tmp_path / "release"
    shutil.copytree(toy, d)
    flags = ["--toy", "--out", str(d), "--resume", "--no-progress"]
    assert main(["release", str(CONFIG), *TOY_EXTRA, *flags]) == 0
    out = capsys.readouterr().out
    assert out.count("skipped: done in an earlier run") == len(
        json.loads((toy / RECORD_FILE).read_text())["stages"]
    )
    check_model_card(d)
    # a resumed run of another config would mix two runs' outputs: refused, naming the key
    assert main(["release", str(CONFIG), *TOY_EXTRA, "collect.episodes_per_task=3", *flags]) == 2
    assert "collect.episodes_per_task" in capsys.readouterr().err
    # another evaluation of the same checkpoint: training kept, evaluation and later run again
    before = json.loads((d / RECORD_FILE).read_text())
    trained = {s["name"]: s for s in before["stages"]}
    splits = 'evaluate.splits=["train", "randomized"]'
    assert main(["release", str(CONFIG), *TOY_EXTRA, splits, *flags]) == 0
    out = capsys.readouterr().out
    assert "from 'evaluate' on run again" in out and "release.evaluate.splits" in out
    rec = json.loads((d / RECORD_FILE).read_text())
    stages = {s["name"]: s for s in rec["stages"]}
    for name in ("collect", "heldout", "train", "checkpoint"):
        assert stages[name] == trained[name]
    assert stages["evaluate"]["invocation"] > trained["evaluate"]["invocation"]
    assert json.loads((d / EVAL_FILE).read_text())["splits"] == ["train", "randomized"]
    check_model_card(d)
    # a longer training: the demonstrations are kept, training starts over (not resumed)
    steps = rec["training"]["steps"]  # behaviour cloning and DAgger
    longer = f"train.steps={rec['train_config']['steps'] + 2}"
    assert main(["release", str(CONFIG), *TOY_EXTRA, splits, longer, *flags]) == 0
    assert "from 'train' on run again" in capsys.readouterr().out
    rec = json.loads((d / RECORD_FILE).read_text())
    stages = {s["name"]: s for s in rec["stages"]}
    for name in ("collect", "heldout"):
        assert stages[name] == trained[name]
    assert stages["train"]["invocation"] > trained["train"]["invocation"]
    assert rec["training"]["steps"] == steps + 2
    check_model_card(d)


def test_stage_clock_keeps_the_time_of_an_interrupted_stage(tmp_path):
    import time

    from mmrobot.train.release_state import StageClock, interrupted

    path = tmp_path / "running.json"
    with StageClock(path, "train", 1, carried=5.0, attempt=2, every=0.02):
        deadline = time.monotonic() + 5.0
        while interrupted(path, "train")[0] < 5.02 and time.monotonic() < deadline:
            time.sleep(0.01)
        on_disk, attempts = interrupted(path, "train")
        assert 5.02 <= on_disk < 10.0  # beats while the stage runs, from the carried time
        assert attempts == 2  # the attempt it is: one before it
        assert interrupted(path, "evaluate") == (0.0, 0)  # another stage's file
    assert not path.exists()  # completed: nothing to carry
    with pytest.raises(KeyboardInterrupt), StageClock(path, "train", 2, every=60.0):
        time.sleep(0.05)
        raise KeyboardInterrupt
    on_disk, attempts = interrupted(path, "train")  # Ctrl-C: written on the way out
    assert 0.05 <= on_disk < 1.0 and attempts == 1


def test_resumed_training_counts_the_interrupted_attempts_time(toy, tmp_path, capsys):
    """A run killed during training leaves the stage's time so far on disk (the stage clock's
    file); --resume continues the trainer's run and adds that time to the stage, unless the
    training starts over (another train config), whose earlier attempt is not part of it."""
    from mmrobot.train.release_config import STATE_FILE
    from mmrobot.train.release_state import RUNNING_FILE

    d = tmp_path / "release"
    shutil.copytree(toy, d)
    flags = ["--toy", "--out", str(d), "--resume", "--no-progress"]

    def kill_during_training(seconds: float) -> None:
        state_path = d / "work" / STATE_FILE
        state = json.loads(state_path.read_text())
        del state["stages"]["train"]  # the train stage never completed
        state_path.write_text(json.dumps(state))
        clock = {"stage": "train", "invocation": 1, "attempt": 2, "seconds": seconds}
        (d / "work" / RUNNING_FILE).write_text(json.dumps(clock))

    kill_during_training(1000.0)  # two attempts killed, 1000 s between them
    assert main(["release", str(CONFIG), *TOY_EXTRA, *flags]) == 0
    assert "continues 2 interrupted attempt(s) that ran 1000.0 s" in capsys.readouterr().out
    stages = {s["name"]: s for s in json.loads((d / RECORD_FILE).read_text())["stages"]}
    assert stages["train"]["interrupted_s"] == 1000.0 and stages["train"]["attempts"] == 3
    assert stages["train"]["seconds"] > 1000.0
    assert not (d / "work" / RUNNING_FILE).exists()  # removed when the stage completed
    check_model_card(d)
    card = (d / CARD_FILE).read_text()
    assert "| train (3 attempts, 1000.0 s before the last) |" in card

    kill_during_training(1000.0)
    longer = f"train.steps={json.loads((d / RECORD_FILE).read_text())['train_config']['steps'] + 1}"
    assert main(["release", str(CONFIG), *TOY_EXTRA, longer, *flags]) == 0
    stages = {s["name"]: s for s in json.loads((d / RECORD_FILE).read_text())["stages"]}
    assert "interrupted_s" not in stages["train"] and "attempts" not in stages["train"]
    assert stages["train"]["seconds"] < 1000.0


# --------------------------------------------------------------------------- config


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "release.toml"
    path.write_text(f'[train]\nconfig = "{TRAIN_CONFIG}"\n' + text)
    return path


def test_shipped_config_loads_and_toy_overrides_apply():
    config = load_release_config(CONFIG)
    assert config.train_config().total_steps > 0
    toy = config.with_overrides(TOY_OVERRIDES)
    assert toy.collect.episodes_per_task == 2
    tc = toy.train_config()
    assert tc.dagger.rounds == 1 and tc.dagger.episodes == 2 and tc.steps == 4
    # a later value of a train key replaces the earlier one in the list
    assert [o for o in toy.train.overrides if o.startswith("steps=")] == ["steps=4"]


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ("[collect]\nepisodes = 3\n", r"\[collect\]: unknown key\(s\) \['episodes'\]"),
        ("[evaluate]\nonnx_precision = 'int8'\n", r"unknown key\(s\) \['onnx_precision'\]"),
        ("[bogus]\nx = 1\n", r"unknown table\(s\) \['bogus'\]"),
        ("[evaluate]\nsplits = ['train', 'nope']\n", r"evaluate\.splits"),
        ("[evaluate]\nonnx = ['int4']\n", r"evaluate\.onnx"),
        ("[collect]\nepisodes_per_task = 0\n", r"collect\.episodes_per_task = 0"),
        ("[collect]\ntasks = ['fly']\n", r"collect\.tasks"),
        ("[collect]\nexpert_turn = 'late'\n", r"collect\.expert_turn = 'late'; expected one of"),
        ("[evaluate]\ntasks = ['reach colour=red']\n", r"evaluate\.tasks"),
        ("[evaluate]\nsplits = ['train']\nonnx_splits = ['heldout']\n", r"onnx_splits"),
        ("[release]\nbudget_min = -1\n", r"release\.budget_min"),
        ("[collect]\nseed = 0\n", r"overlap"),  # the demonstrations' seeds are evaluated
    ],
)
def test_config_errors_name_the_key(tmp_path, text, match):
    with pytest.raises(ConfigError, match=match):
        load_release_config(_write(tmp_path, text))


def test_train_overrides_are_checked(tmp_path):
    path = tmp_path / "release.toml"
    path.write_text(f'[train]\nconfig = "{TRAIN_CONFIG}"\noverrides = ["stepz=3"]\n')
    with pytest.raises(ConfigError, match="stepz"):
        load_release_config(path)
    path.write_text(f'[train]\nconfig = "{TRAIN_CONFIG}"\noverrides = ["dataset=x.h5"]\n')
    with pytest.raises(ConfigError, match="'dataset'"):
        load_release_config(path)


def test_command_line_overrides(tmp_path):
    config = load_release_config(_write(tmp_path, ""))
    assert config.with_overrides(["evaluate.episodes=5"]).evaluate.episodes == 5
    assert config.with_overrides(["train.dagger.rounds=3"]).train_config().dagger.rounds == 3
    with pytest.raises(ConfigError, match=r"collect\.bogus"):
        config.with_overrides(["collect.bogus=1"])
    with pytest.raises(ConfigError, match="dagger.bogus"):
        config.with_overrides(["train.dagger.bogus=1"])
    with pytest.raises(ConfigError, match="SECTION.KEY"):
        config.with_overrides(["episodes=1"])


def test_cli_missing_config_is_bad_input(tmp_path):
    assert main(["release", str(tmp_path / "none.toml")]) == 2


def test_toy_release_reads_unseen_words_through_a_wordnet_lexicon(toy):
    from mmrobot.policies import load_checkpoint
    from mmrobot.policies.wordnet import find_wordnet

    try:
        find_wordnet()
    except ConfigError:
        pytest.skip("WordNet 3.0 is not installed (apt-get install wordnet-base)")
    lex = json.loads((toy / RECORD_FILE).read_text())["policy"]["lexicon"]
    assert lex["entries"] > 100 and lex["skipped"] == 0
    language = load_checkpoint(toy).config.language
    assert len(language.vocabulary) == lex["vocabulary"]
    assert len(language.lexicon) == lex["entries"]
    assert "WordNet lexicon" in (toy / CARD_FILE).read_text()


def test_source_ignores_the_release_folder_it_writes(tmp_path, monkeypatch):
    """release.json's source is "dirty" for a changed tracked file anywhere but the release
    folder, which the release itself has just rewritten."""
    import subprocess

    from mmrobot.train.release_state import _source

    def git(*args):
        subprocess.run(["git", *args], cwd=tmp_path, check=True, capture_output=True)

    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "card.md").write_text("old\n")
    (tmp_path / "code.py").write_text("x = 1\n")
    git("init", "-q")
    git("add", ".")
    git("-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "init")
    monkeypatch.chdir(tmp_path)
    assert _source(tmp_path / "out")["dirty"] is False
    (tmp_path / "out" / "card.md").write_text("new\n")
    assert _source(tmp_path / "out")["dirty"] is False
    assert _source()["dirty"] is True
    (tmp_path / "code.py").write_text("x = 2\n")
    assert _source(tmp_path / "out")["dirty"] is True


def test_source_reads_paths_git_would_quote_and_renames(tmp_path, monkeypatch):
    """A release folder whose name has a space (porcelain quotes it without -z) and a rename
    inside it (two paths in one entry) are still the release's own changes."""
    import subprocess

    from mmrobot.train.release_state import _source

    def git(*args):
        subprocess.run(["git", *args], cwd=tmp_path, check=True, capture_output=True)

    out = tmp_path / "my release"
    out.mkdir()
    (out / "card.md").write_text("old\n")
    (tmp_path / "code.py").write_text("x = 1\n")
    git("init", "-q")
    git("add", ".")
    git("-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "init")
    monkeypatch.chdir(tmp_path)
    (out / "card.md").write_text("new\n")
    git("mv", "my release/card.md", "my release/MODEL CARD.md")
    assert _source(out)["dirty"] is False
    assert _source(tmp_path / "other")["dirty"] is True
    git("mv", "code.py", "my release/code.py")  # a rename out of the tree counts
    assert _source(out)["dirty"] is True
