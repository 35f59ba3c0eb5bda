import pytest


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
