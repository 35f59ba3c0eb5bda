"""`mmrobot emulate` and `mmrobot rig` from the command line."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np

from mmrobot.cli import main
from mmrobot.drivers import parse_rig

ROOT = Path(__file__).resolve().parents[2]


def test_emulate_prints_the_port_and_serves_a_driver(tmp_path):
    link = tmp_path / "ft"
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "mmrobot.cli",
            "emulate",
            "ft300",
            "--link",
            str(link),
            "--duration",
            "20",
            "--wrench",
            "1,2,3,0.1,0.2,0.3",
            "--noise",
            "0",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        first = proc.stdout.readline()
        assert first.startswith("ft300: /dev/pts/") and f"(link {link})" in first
        (drv,) = parse_rig(
            {"driver": [{"kind": "ft300", "name": "ft", "port": str(link)}]}
        ).build_drivers()
        with drv:
            assert drv.wait_for_samples(5)
            _, w = drv.latest()
        assert np.allclose(w, [1, 2, 3, 0.1, 0.2, 0.3], atol=1e-3)
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def test_rig_command_lists_streams_and_rejects_bad_files(tmp_path, capsys):
    # lists the streams, then refuses the absent serial ports as `launch --check` does
    assert main(["rig", str(ROOT / "drivers" / "robot_example.toml")]) == 2
    out, err = capsys.readouterr()
    assert "joints" in out and "shape=(7,)" in out and "lidar" in out and "shape=(360, 3)" in out
    assert err.count("does not exist; plug the device in") == 4 and "Traceback" not in err
    bad = tmp_path / "arm.toml"
    bad.write_text(
        '[[driver]]\nkind = "ft300"\nname = "ft"\nport = "/dev/x"\nbaud = 3\n', encoding="utf-8"
    )
    assert main(["rig", str(bad)]) == 2
    err = capsys.readouterr().err
    assert "arm.toml" in err and "`baud`" in err


def test_rig_run_fails_clearly_when_a_port_is_missing(tmp_path, capsys):
    rig = tmp_path / "arm.toml"
    rig.write_text(
        '[[driver]]\nkind = "ft300"\nname = "ft"\nport = "/dev/ttyUSB93"\n', encoding="utf-8"
    )
    assert main(["rig", str(rig), "--run", "0.1"]) == 2  # checked before anything opens
    err = capsys.readouterr().err
    assert "port '/dev/ttyUSB93' of 'ft' in" in err and "arm.toml" in err
    assert "does not exist; plug the device in" in err


def test_emulate_rejects_bad_options():
    assert main(["emulate", "dynamixel", "--servos", "1-3", "--duration", "0"]) == 2
    assert main(["emulate", "ft300", "--wrench", "1,2", "--duration", "0"]) == 2
