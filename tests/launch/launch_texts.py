"""Launch-file texts the launch tests share (imported by name: pytest puts this folder on
sys.path, as it does for every test folder without an ``__init__.py``)."""


def run_launch(checkpoint, max_seconds: float = 0.5, run_extra: str = "") -> str:
    """A minimal simulated ``run`` launch file: scene seed 3, 20 Hz, ``max_seconds`` per
    instruction, ``run_extra`` lines appended to its ``[run]`` section."""
    return (
        f'mode = "run"\n[sim]\nseed = 3\n[policy]\ncheckpoint = "{checkpoint}"\n'
        f"[loop]\nrate_hz = 20.0\n[run]\nmax_seconds = {max_seconds}\n{run_extra}"
    )
