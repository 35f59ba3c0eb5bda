import mmrobot.launch.doctor as doctor
from mmrobot.cli import main


def test_every_check_reports_a_status_and_a_fix_when_not_ok():
    results = doctor.run_checks()
    assert [r.name for r in results] == [
        "python",
        "extras",
        "open3d",
        "rendering",
        "serial ports",
        "cameras",
        "accelerators",
        "realtime",
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


def test_extras_lists_what_is_present_and_a_missing_extra_is_no_failure(monkeypatch):
    import mmrobot.core.extras as extras

    real = extras.is_present
    monkeypatch.setattr(extras, "is_present", lambda m: m not in ("torch", "open3d") and real(m))
    r = doctor.check_extras()
    assert r.status == "ok"
    # the later extras (tensorboard, viz, lerobot) are listed as this machine has them
    assert r.found.startswith("present: core, robot, sim")
    assert "; not installed: train (no torch); pointcloud (no open3d)" in r.found
    assert 'pip install "mmrobot[train]"' in r.fix and 'pip install "mmrobot[pointcloud]"' in r.fix


def test_a_gap_in_the_core_install_fails(monkeypatch):
    import mmrobot.core.extras as extras

    real = extras.is_present
    monkeypatch.setattr(extras, "is_present", lambda m: m != "onnxruntime" and real(m))
    r = doctor.check_extras()
    assert r.status == "fail" and "core modules missing: onnxruntime" in r.found


def test_accelerators_lists_the_onnxruntime_providers_and_the_default_choice():
    r = doctor.check_accelerators()
    assert r.status == "ok"
    assert "CPUExecutionProvider" in r.found
    assert "an ONNX policy runs on" in r.found


def test_realtime_says_whether_sched_fifo_is_granted_here():
    import os

    from mmrobot.launch.doctor import check_realtime

    c = check_realtime()
    assert "shared memory available" in c.found  # this machine has a writable /dev/shm
    try:  # the same request, made by this test in a child process
        pid = os.fork()
    except OSError:  # pragma: no cover
        return
    if pid == 0:
        try:
            os.sched_setscheduler(0, os.SCHED_FIFO, os.sched_param(50))
            os._exit(0)
        except OSError:
            os._exit(1)
    granted = os.waitpid(pid, 0)[1] == 0
    assert ("SCHED_FIFO granted" in c.found) == granted
    assert (c.status == "ok") == granted and (c.fix == "") == granted
    cpus = sorted(os.sched_getaffinity(0))
    assert str(cpus) in c.found
    if len(cpus) >= 2:  # the pinning it suggests keeps the last CPU for the loop alone
        assert f"loop.cpu_affinity = [{cpus[-1]}]" in c.found
        assert f"loop.driver_cpu_affinity = {cpus[:-1]}" in c.found
