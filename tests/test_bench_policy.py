"""benchmarks/bench_policy.py measures a config and, with --variant, a changed copy of it in
the same run."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "benchmarks" / "bench_policy.py"


def _run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(SCRIPT), "--quick", "--threads", "1", *args],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=ROOT,
    )


def test_variant_is_measured_beside_the_config_with_ratios(tmp_path):
    from mmrobot.policies import load_policy_config

    # the per-pixel FiLM switched the other way from the default config: its layers come or go
    on = not load_policy_config(ROOT / "policies" / "default.toml").camera.pixel_film
    change = f"camera.pixel_film={'true' if on else 'false'}"
    out = tmp_path / "bench.json"
    proc = _run("--variant", change, "--json", str(out))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    data = json.loads(out.read_text())
    c = data["variant"]
    assert c["overrides"] == [change]
    assert c["base"]["params"] == data["params"]  # the config itself, as measured above
    assert (c["variant"]["params"] > c["base"]["params"]) == on
    for k in ("base", "variant"):
        assert c[k]["train_samples_per_s"] > 0 and c[k]["latency_parallel"]["median_ms"] > 0
    expected = c["variant"]["train_samples_per_s"] / c["base"]["train_samples_per_s"]
    assert c["train_ratio"] == expected
    assert "ratio" in proc.stdout


def test_a_variant_that_is_not_a_policy_key_is_refused():
    proc = _run("--variant", "camera.no_such_key=1")
    assert proc.returncode != 0
    assert "--variant camera.no_such_key=1" in proc.stderr and "no_such_key" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_compiled_training_step_computes_the_eager_step(monkeypatch):
    """--compile times the same step as eager: the same seed gives the same losses."""
    import importlib.util

    monkeypatch.syspath_prepend(str(ROOT / "tests" / "policies"))
    from policy_testlib import tiny_config

    spec = importlib.util.spec_from_file_location("bench_policy", SCRIPT)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    cfg = tiny_config()
    eager, bs = bench.training_step(cfg, seed=3)
    compiled, _ = bench.training_step(cfg, seed=3, compiled=True)
    assert bs == 64
    for _ in range(3):  # the weights move: each step's loss follows the same optimizer path
        a, b = eager(), compiled()
        assert abs(a - b) < 1e-4 * max(1.0, abs(a)), (a, b)
