"""The numpy half of mmrobot.policies must work where torch cannot be imported (edge devices)."""

import subprocess
import sys
import textwrap
from pathlib import Path


def test_numpy_modules_do_not_import_torch():
    code = textwrap.dedent(
        """
        import sys
        class Block:
            def find_spec(self, name, path=None, target=None):
                if name == "torch" or name.startswith("torch."):
                    raise ImportError("torch is blocked in this test")
                return None
        sys.meta_path.insert(0, Block())
        import numpy as np
        from mmrobot.policies import ActionTokenizer, ByteTokenizer, Policy, collate, load_policy_config
        cfg = load_policy_config("policies/default.toml")
        ids, mask = ByteTokenizer(cfg.language.max_len).encode("open the drawer")
        tok = ActionTokenizer.from_config(cfg.action)
        assert tok.decode(tok.encode(np.zeros((8, 7)))).shape == (8, 7)
        assert "torch" not in sys.modules
        try:
            from mmrobot.policies import FusionPolicyModel
        except ImportError:
            print("OK")
        """
    )
    root = Path(__file__).resolve().parents[2]
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, cwd=root
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "OK"
