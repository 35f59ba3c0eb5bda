import sys
from pathlib import Path

import pytest

# Make the shared helper module importable from every test file of this folder.
sys.path.insert(0, str(Path(__file__).parent))


@pytest.fixture(autouse=True)
def _one_torch_thread():
    """Tiny models run fastest on one thread, and do not stall when other jobs share the CPU."""
    try:
        import torch
    except ImportError:  # pragma: no cover - the numpy-only tests do not need torch
        yield
        return
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
