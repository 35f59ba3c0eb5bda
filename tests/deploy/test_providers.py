"""ONNX Runtime execution providers: TensorRT, then CUDA, then the CPU, of those present.

This machine has no GPU, so TensorRT and CUDA never run here: the choice is tested on
provider lists (:func:`plan_providers`), and the fallback on a real session whose GPU
providers are made to fail the ways they do on a GPU machine (an exception while the session
is created; a provider silently left out of the session when its libraries do not load)."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
import torch

from mmrobot.core.errors import ConfigError
from mmrobot.deploy import OnnxPolicy, OrtConfig, export_onnx
from mmrobot.deploy.onnx_policy import DEFAULT_PROVIDERS, plan_providers
from mmrobot.launch.policy_loader import load_launch_policy
from mmrobot.launch.schema import load_launch
from mmrobot.policies import FusionPolicyModel, save_checkpoint

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "policies"))
from policy_testlib import random_observation, tiny_config  # noqa: E402

TRT, CUDA, CPU = DEFAULT_PROVIDERS
KNOWN = ort.get_all_providers()


def test_defaults_prefer_tensorrt_then_cuda_then_cpu():
    assert DEFAULT_PROVIDERS == (
        "TensorrtExecutionProvider",
        "CUDAExecutionProvider",
        "CPUExecutionProvider",
    )
    assert OrtConfig().providers == DEFAULT_PROVIDERS


@pytest.mark.parametrize(
    "available,order",
    [
        ([TRT, CUDA, CPU], (TRT, CUDA, CPU)),  # onnxruntime-gpu with TensorRT, a Jetson
        ([CUDA, CPU], (CUDA, CPU)),  # onnxruntime-gpu without TensorRT
        (["AzureExecutionProvider", CPU], (CPU,)),  # the CPU wheel (this machine)
        ([CPU], (CPU,)),
    ],
)
def test_the_default_order_keeps_the_providers_this_build_has(available, order):
    plan = plan_providers(DEFAULT_PROVIDERS, available, KNOWN)
    assert plan.order == order
    assert set(plan.skipped) == set(DEFAULT_PROVIDERS) - set(order)
    for reason in plan.skipped.values():
        assert reason.startswith("not in this onnxruntime build (onnxruntime-gpu")


def test_cpu_is_always_the_last_fallback_and_ends_the_list():
    assert plan_providers([CUDA], [CUDA, CPU], KNOWN).order == (CUDA, CPU)
    plan = plan_providers([CPU, CUDA], [CUDA, CPU], KNOWN)
    assert plan.order == (CPU,)
    assert plan.skipped[CUDA] == f"listed after {CPU}, which runs every node"
    assert plan_providers([CUDA, CUDA, CPU], [CUDA, CPU], KNOWN).order == (CUDA, CPU)


def test_an_unknown_provider_name_is_a_config_error():
    with pytest.raises(ConfigError, match=r"\['CudaExecutionProvider'\] are not onnxruntime"):
        plan_providers(["CudaExecutionProvider", CPU], [CPU], KNOWN)
    with pytest.raises(ConfigError, match="non-empty list"):
        OrtConfig(providers=())


@pytest.fixture(scope="module")
def export_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("providers")
    torch.manual_seed(0)
    save_checkpoint(FusionPolicyModel(tiny_config()).eval(), root / "ckpt")
    export_onnx(root / "ckpt", root / "export")
    return root / "export"


def test_on_this_machine_the_default_runs_on_the_cpu_and_says_why(export_dir):
    policy = OnnxPolicy(export_dir)
    assert policy.provider == CPU and policy.providers == (CPU,)
    report = policy.provider_report()
    assert report.startswith("ONNX Runtime runs policy.onnx (fp32) on CPUExecutionProvider; ")
    assert f"{TRT}: not in this onnxruntime build" in report
    assert f"{CUDA}: not in this onnxruntime build" in report


@pytest.fixture
def gpu_build(monkeypatch):
    """onnxruntime as a GPU build whose TensorRT raises while the session is created and whose
    CUDA is left out of the session (libraries missing): the CPU really runs the model."""
    real = ort.InferenceSession

    def session(path, sess_options=None, providers=()):
        if providers[0] == TRT:
            raise RuntimeError("TensorRT EP failed: libnvinfer.so.10: cannot open shared object")
        return real(path, sess_options=sess_options, providers=[p for p in providers if p == CPU])

    monkeypatch.setattr(ort, "get_available_providers", lambda: [TRT, CUDA, CPU])
    monkeypatch.setattr(ort, "InferenceSession", session)


def test_a_gpu_provider_that_fails_falls_back_and_the_report_says_why(export_dir, gpu_build):
    policy = OnnxPolicy(export_dir)
    assert policy.provider == CPU
    assert "libnvinfer.so.10" in policy.provider_errors[TRT]
    assert "left it out of the session" in policy.provider_errors[CUDA]
    report = policy.provider_report()
    assert report.index(TRT) < report.index(CUDA)  # in the order of preference
    obs = random_observation(policy.config.streams, np.random.default_rng(0))
    chunk = policy.act(obs, "lift the red block")  # the fallback runs the model
    assert np.all(np.isfinite(chunk.actions))


def test_an_fp16_export_on_the_cpu_says_a_gpu_is_what_it_is_for(export_dir, tmp_path):
    export_onnx(export_dir.parent / "ckpt", tmp_path / "fp16", quantize="fp16")
    report = OnnxPolicy(tmp_path / "fp16" / "policy.onnx").provider_report()
    assert "(fp16) on CPUExecutionProvider" in report
    assert "an FP16 export is meant for GPUs" in report


def _launch(tmp_path, export, policy_lines: str):
    f = tmp_path / "launch" / "l.toml"
    f.parent.mkdir(exist_ok=True)
    f.write_text(f'mode = "run"\n[sim]\n[policy]\nonnx = "{export}"\n{policy_lines}')
    return f


def test_the_launch_file_sets_the_providers(export_dir, tmp_path, gpu_build):
    f = _launch(tmp_path, export_dir, f'providers = ["{CUDA}", "{CPU}"]\n')
    policy = load_launch_policy(load_launch(f, check_files=False))
    assert policy.runtime.providers == (CUDA, CPU)
    assert policy.provider == CPU and TRT not in policy.provider_errors
    assert "left it out of the session" in policy.provider_errors[CUDA]


def test_launch_file_providers_are_checked(export_dir, tmp_path):
    from mmrobot.launch.validate import launch_problems

    f = _launch(tmp_path, export_dir, 'providers = ["CudaExecutionProvider"]\n')
    problems = launch_problems(load_launch(f, check_files=False))
    assert problems[0].startswith(
        "policy.providers: ['CudaExecutionProvider'] are not onnxruntime providers; known: "
    )
    with pytest.raises(ConfigError, match="policy.providers chooses ONNX Runtime"):
        f.write_text(f'mode = "run"\n[sim]\n[policy]\ncheckpoint = "c"\nproviders = ["{CPU}"]\n')
        load_launch(f, check_files=False)
    with pytest.raises(ConfigError, match="policy.providers"):
        load_launch(_launch(tmp_path, export_dir, "providers = []\n"), check_files=False)


def test_an_empty_checkpoint_switches_a_launch_file_to_an_onnx_export(export_dir):
    root = Path(__file__).resolve().parents[2]
    launch = load_launch(
        root / "launch" / "hil.toml",
        ["policy.checkpoint=", f'policy.onnx="{export_dir}"'],
        check_files=False,
    )
    assert launch.policy.checkpoint is None and launch.policy.onnx == str(export_dir)
    assert launch.extras() == ["robot"]  # an ONNX policy on a rig: no torch


def test_the_launch_file_threads_reach_onnx_runtime_without_spinning(export_dir, tmp_path):
    f = _launch(tmp_path, export_dir, "threads = 2\n")
    policy = load_launch_policy(load_launch(f, check_files=False))
    opts = policy.session.get_session_options()
    assert opts.intra_op_num_threads == 2 and opts.inter_op_num_threads == 1
    assert opts.get_session_config_entry("session.intra_op.allow_spinning") == "0"
    default = load_launch_policy(load_launch(_launch(tmp_path, export_dir, ""), check_files=False))
    assert default.session.get_session_options().intra_op_num_threads == 1  # policy.threads = 1
