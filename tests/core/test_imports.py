import subprocess
import sys


def test_core_and_sync_import_numpy_only():
    code = (
        "import sys, mmrobot, mmrobot.core, mmrobot.sync, mmrobot.cli\n"
        "heavy = {'torch', 'mujoco', 'open3d', 'cv2', 'onnxruntime', 'gymnasium', 'serial'}\n"
        "print(sorted(heavy & set(sys.modules)))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_cli_version_and_help():
    out = subprocess.run(
        [sys.executable, "-m", "mmrobot.cli", "--version"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert out.stdout.startswith("mmrobot 0.")
    out = subprocess.run(
        [sys.executable, "-m", "mmrobot.cli", "--help"], capture_output=True, text=True, check=True
    )
    assert "usage: mmrobot" in out.stdout
