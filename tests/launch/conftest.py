from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    """A freshly initialized fusion policy over the simulation's default observation spec."""
    import torch

    from mmrobot.envs import default_stream_specs
    from mmrobot.policies import FusionPolicyModel, PolicyConfig, save_checkpoint

    torch.manual_seed(0)
    cfg = PolicyConfig.from_dict(
        {
            "model": {"width": 32, "depth": 1, "heads": 2},
            "language": {"max_len": 64},  # the default policy's: typed instructions fit
            "camera": {"stem_channels": [8, 8], "grid": 2},
            "lidar": {"groups": 8, "group_size": 8, "hidden": 16},
            "vector": {"hidden": 32},
            "streams": [s.to_dict() for s in default_stream_specs()],
        }
    )
    return save_checkpoint(FusionPolicyModel(cfg), tmp_path_factory.mktemp("ckpt") / "policy")


@pytest.fixture
def robot(tmp_path, checkpoint):
    """launch/robot_example.toml with `checkpoint`, on a copy of its rig (tmp_path/rig.toml)
    whose serial ports are /dev/null (a character device): it passes --check as it is."""
    rig = tmp_path / "rig.toml"
    text = (ROOT / "drivers" / "robot_example.toml").read_text()
    rig.write_text(
        "\n".join(
            'port = "/dev/null"' if line.startswith("port = ") else line
            for line in text.splitlines()
        )
    )
    launch = tmp_path / "launch" / "robot.toml"
    launch.parent.mkdir(exist_ok=True)
    launch.write_text(
        (ROOT / "launch" / "robot_example.toml")
        .read_text()
        .replace('file = "drivers/robot_example.toml"', f'file = "{rig}"')
        .replace('kinematics = "envs/', f'kinematics = "{ROOT}/envs/')
        .replace('checkpoint = "policies/release"', f'checkpoint = "{checkpoint}"')
    )
    return launch


@pytest.fixture
def sim(tmp_path, checkpoint):
    """launch/sim_demo.toml with `checkpoint`: it passes --check as it is."""
    launch = tmp_path / "launch" / "sim.toml"
    launch.parent.mkdir(exist_ok=True)
    launch.write_text(
        (ROOT / "launch" / "sim_demo.toml")
        .read_text()
        .replace('checkpoint = "policies/release"', f'checkpoint = "{checkpoint}"')
    )
    return launch
