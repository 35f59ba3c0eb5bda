from pathlib import Path

from mmrobot.cli import main
from mmrobot.policies import load_checkpoint

ROOT = Path(__file__).resolve().parents[2]


def test_policy_init_and_info(tmp_path, capsys):
    out = tmp_path / "ckpt"
    assert (
        main(
            [
                "policy",
                "init",
                "--config",
                str(ROOT / "policies" / "default.toml"),
                "--out",
                str(out),
            ]
        )
        == 0
    )
    model = load_checkpoint(out)
    assert model.config.model.width == 128
    capsys.readouterr()
    assert main(["policy", "info", str(out)]) == 0
    text = capsys.readouterr().out
    assert f"parameters {model.num_parameters():,}" in text
    assert "stream lidar" in text and " 8 tokens" in text
    assert "token budget per decision: 69 = 16 instruction + 45 observation + 8 action" in text


def test_policy_info_missing_file_is_bad_input(tmp_path, capsys):
    assert main(["policy", "info", str(tmp_path / "missing.toml")]) == 2
    assert "not found" in capsys.readouterr().err
