import mmrobot.launch.doctor as doctor
from mmrobot.cli import main


def test_every_check_reports_a_status_and_a_fix_when_not_ok():
    results = doctor.run_checks()
    assert [r.name for r in results] == [
        "python",
        "packages",
        "open3d",
        "rendering",
        "serial ports",
        "cameras",
        "accelerators",
    ]
    for r in results:
        assert r.status in ("ok", "warn", "fail")
        assert r.status == "ok" or r.fix, f"{r.name} is {r.status} without a fix"


def test_a_check_that_raises_is_a_failure_and_sets_exit_code(monkeypatch, capsys):
    def check_broken():
        raise OSError("boom")

    monkeypatch.setattr(doctor, "CHECKS", (doctor.check_python, check_broken))
    results = doctor.run_checks()
    assert (
        results[1].name == "broken" and results[1].status == "fail" and "boom" in results[1].found
    )
    assert main(["doctor"]) == 1
    assert "boom" in capsys.readouterr().out
