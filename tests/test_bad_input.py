"""Bad input on the command line: a clear message, exit 2, no traceback, nothing written.

Each row goes in through ``mmrobot.cli.main`` (what the ``mmrobot`` command runs) in a fresh
working folder; the test asserts the exit code, the message, and that no file in the working
folder or the data folder was created, changed or removed.
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import pytest

from mmrobot.cli import main

ROOT = Path(__file__).resolve().parents[1]
SIM_DEMO = str(ROOT / "launch" / "sim_demo.toml")
sys.path.insert(0, str(ROOT / "tests" / "train"))
from test_trainer import write_dataset, write_policy_toml  # noqa: E402


def damage_a_chunk(good: Path, out: Path) -> Path:
    """``good`` with bytes in the middle of the first episode's camera chunk overwritten."""
    import h5py

    with h5py.File(good, "r") as f:
        info = f["episodes/000000/obs/values/cam"].id.get_chunk_info(0)
    data = bytearray(good.read_bytes())
    start = info.byte_offset + info.size // 4
    data[start : start + 200] = b"\xaa" * 200
    out.write_bytes(bytes(data))
    return out


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    """A folder of inputs: a policy, a good dataset and broken ones, train configs, a run
    folder that holds a run, instruction files."""
    d = tmp_path_factory.mktemp("inputs")
    policy = write_policy_toml(d / "policy.toml")
    good = write_dataset(d / "demos.h5")
    raw = good.read_bytes()
    (d / "truncated.h5").write_bytes(raw[: len(raw) // 2])
    (d / "garbage.h5").write_bytes(b"these are not the bytes of an HDF5 file\n" * 50)
    damage_a_chunk(good, d / "chunk.h5")
    for name in ("demos", "truncated", "garbage", "chunk"):
        (d / f"train_{name}.toml").write_text(
            f'[train]\npolicy = "{policy}"\ndataset = "{d / name}.h5"\nout = "{d / "run"}"\n'
            "steps = 2\nbatch_size = 2\nwarmup_steps = 1\nthreads = 1\ncompile = false\n"
        )
    run = d / "existing_run"
    (run / "checkpoint").mkdir(parents=True)
    (run / "checkpoint" / "config.json").write_text("{}")
    (run / "metrics.jsonl").write_text('{"kind": "train", "step": 1}\n')
    (d / "train_existing.toml").write_text(
        (d / "train_demos.toml").read_text().replace(str(d / "run"), str(run))
    )
    (d / "latin1.txt").write_bytes(
        "put the red block in the bin\nhebe den roten Würfel\n".encode("latin-1")
    )
    (d / "blank.txt").write_text("\n   \n\t\n")
    return d


def snapshot(*folders: Path) -> dict[str, tuple[int, int]]:
    """Every file and folder under ``folders``: (size, modification time)."""
    out = {}
    for folder in folders:
        for p in folder.rglob("*"):
            st = p.stat()
            out[str(p)] = (st.st_size if p.is_file() else -1, st.st_mtime_ns)
    return out


def cli(argv: list[str]) -> int:
    """``mmrobot ARGV`` in process; argparse's own errors exit through SystemExit."""
    try:
        return main(argv)
    except SystemExit as e:
        return int(e.code or 0)


LONG = "put the red block in the bin, and please do it slowly and carefully without knocking"

# (id, argv with {d} for the data folder, pattern the error output must match)
BAD_INPUT = [
    (
        "train-truncated-hdf5",
        ["train", "{d}/train_truncated.toml"],
        r"truncated\.h5' is not a readable HDF5 file \(.*truncated file.*\); it is truncated "
        r"or corrupt: collect it again",
    ),
    (
        "train-garbage-hdf5",
        ["train", "{d}/train_garbage.toml"],
        r"garbage\.h5' is not a readable HDF5 file \(.*file signature not found",
    ),
    (
        "train-corrupt-chunk",
        ["train", "{d}/train_chunk.toml"],
        r"chunk\.h5': episode 0 cannot be read \(.*\); the file is corrupt: collect it again",
    ),
    (
        "train-into-an-existing-run",
        ["train", "{d}/train_existing.toml"],
        r"existing_run' already holds a training run \(checkpoint, metrics\.jsonl\); pass "
        r"--resume to continue it, --overwrite to replace it",
    ),
    (
        "train-resume-and-overwrite",
        ["train", "{d}/train_existing.toml", "--resume", "--overwrite"],
        r"--resume continues a run and --overwrite replaces it; give one",
    ),
    (
        "collect-onto-an-existing-file",
        ["collect", "--tasks", "reach", "--episodes", "1", "--out", "{d}/demos.h5"],
        r"dataset '.*demos\.h5' exists; pass --overwrite to replace it",
    ),
    (
        "collect-perturb-rate-above-one",
        [
            "collect",
            "--tasks",
            "reach",
            "--episodes",
            "1",
            "--out",
            "{d}/new.h5",
            "--perturb",
            "1.5",
        ],
        r"perturbation rate must be in \[0, 1\], got 1\.5",
    ),
    (
        "release-perturb-rate-negative",
        [
            "release",
            str(ROOT / "policies" / "release.toml"),
            "collect.perturb_rate=-0.1",
            "--out",
            "{d}/rel",
        ],
        r"perturb_rate.*a number in \[0, 1\]",
    ),
    (
        "release-grasp-miss-above-one",
        [
            "release",
            str(ROOT / "policies" / "release.toml"),
            "collect.grasp_miss=1.5",
            "--out",
            "{d}/rel",
        ],
        r"grasp_miss.*a number in \[0, 1\]",
    ),
    (
        "run-file-not-utf8",
        ["run", SIM_DEMO, "--file", "{d}/latin1.txt"],
        r"latin1\.txt' is not UTF-8 text: byte 0xfc on line 2 \(invalid start byte\)",
    ),
    (
        "run-file-only-blank-lines",
        ["run", SIM_DEMO, "--file", "{d}/blank.txt"],
        r"blank\.txt' holds no instruction",
    ),
    (
        "run-empty-instruction",
        ["run", SIM_DEMO, "-i", ""],
        r"instruction 1 of 1: instruction '' is empty; say what to do",
    ),
    (
        "run-blank-instruction",
        ["run", SIM_DEMO, "-i", "put the red block in the bin", "-i", " \t "],
        r"instruction 2 of 2: instruction ' \\t ' is empty",
    ),
    (
        "run-instruction-longer-than-the-policy-reads",
        ["run", SIM_DEMO, "-i", LONG],
        r"instruction 1 of 1: instruction 'put the red block in the bin, and please\.\.\.' is "
        r"84 bytes; the policy reads 62 \(language\.max_len 64 tokens, BOS and EOS included\) "
        r"and would see only 'put the red block in the bin, and please do it slowly and "
        r"care'; shorten it",
    ),
    (
        "run-dry-run-too-long",
        ["run", SIM_DEMO, "-i", LONG, "--dry-run"],
        r"1 of 1 instructions cannot be read",
    ),
    (
        "launch-bad-override-after-an-option",
        ["launch", SIM_DEMO, "--check", "loop.ensemble_decay=-1"],
        r"loop\.ensemble_decay: Input should be greater than or equal to 0 \(got -1\)",
    ),
    (
        "launch-unknown-option",
        ["launch", SIM_DEMO, "--check", "--bogus"],
        r"unrecognized arguments: --bogus",
    ),
]


@pytest.mark.parametrize(
    ("argv", "message"), [row[1:] for row in BAD_INPUT], ids=[row[0] for row in BAD_INPUT]
)
def test_bad_input_exits_2_with_a_message_and_writes_nothing(
    argv, message, data, tmp_path, monkeypatch, capsys
):
    monkeypatch.chdir(tmp_path)  # anything written relative to the working folder lands here
    before = snapshot(data, tmp_path)
    code = cli([a.format(d=data) for a in argv])
    captured = capsys.readouterr()
    output = captured.out + captured.err
    assert code == 2, output
    assert re.search(message, output), output
    assert "Traceback" not in output
    assert snapshot(data, tmp_path) == before


@pytest.mark.parametrize(
    "argv",
    [
        ["launch", SIM_DEMO, "--check", "loop.ensemble_decay=0.5"],
        ["launch", SIM_DEMO, "loop.ensemble_decay=0.5", "--check", "run.max_seconds=2"],
        ["run", SIM_DEMO, "-i", "lift the red block", "--dry-run", "run.max_seconds=2"],
    ],
)
def test_overrides_are_accepted_anywhere_on_the_command_line(argv, capsys):
    assert cli(argv) == 0, capsys.readouterr()


def test_train_overwrite_replaces_an_existing_run(data, tmp_path):
    import shutil

    run = data / "existing_run"
    keep = tmp_path / "run"
    shutil.copytree(run, keep)
    config = tmp_path / "train.toml"
    config.write_text((data / "train_existing.toml").read_text().replace(str(run), str(keep)))
    (keep / "notes.txt").write_text("mine")  # not a run output: kept
    assert cli(["train", str(config), "--overwrite", "--no-progress"]) == 0
    rows = (keep / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(r)["step"] for r in rows] == [2]  # the new run's last step only
    assert (keep / "checkpoint" / "model.safetensors").is_file()
    assert (keep / "notes.txt").read_text() == "mine"
