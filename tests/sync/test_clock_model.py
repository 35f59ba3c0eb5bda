import numpy as np

from mmrobot.sync import ClockModel

MS = 1_000_000
S = 1_000_000_000


def simulate(offset_ns, drift_ppm, rate_hz, seconds, seed=0, start_device=5 * S):
    rng = np.random.default_rng(seed)
    n = int(rate_hz * seconds)
    device = start_device + np.arange(n, dtype=np.int64) * int(S / rate_hz)
    true_host = device + offset_ns + ((device - start_device) * drift_ppm * 1e-6).astype(np.int64)
    delay = (0.2 * MS + rng.exponential(1 * MS, n)).astype(np.int64)
    return device, true_host, true_host + delay


def test_recovers_offset_and_drift_under_heavy_tailed_delay():
    device, true_host, host_rx = simulate(offset_ns=37 * MS, drift_ppm=50, rate_hz=200, seconds=40)
    cm = ClockModel()
    errors = []
    for d, h, rx in zip(device.tolist(), true_host.tolist(), host_rx.tolist()):
        cm.update(d, rx)
        errors.append(cm.to_host(d) - h)
    late = np.array(errors[len(errors) // 2 :])  # after convergence
    # The envelope sits on the minimum delay (0.2 ms), which the rig's latency corrects.
    assert abs(np.median(late) - 0.2 * MS) < 0.02 * MS
    assert np.percentile(np.abs(late - 0.2 * MS), 99) < 0.05 * MS
    assert abs(cm.drift_ppm - 50) < 2
    naive = (host_rx - true_host)[len(errors) // 2 :]
    assert np.percentile(naive, 99) > 4 * MS  # what host-receive stamps alone would give


def test_device_clock_jump_resets_the_model():
    cm = ClockModel()
    for i in range(100):
        cm.update(10 * S + i * 10 * MS, 50 * S + i * 10 * MS)
    assert cm.to_host(10 * S) == 50 * S
    # the device rebooted: its counter restarts near zero
    cm.update(1 * MS, 51 * S)
    assert cm.resets == 1
    assert cm.to_host(1 * MS) == 51 * S


def test_follows_a_change_of_drift_within_the_window():
    cm = ClockModel(window_ns=10 * S)
    t_dev, host = 0, 0
    for i in range(6000):  # 60 s at 100 Hz; drift +100 ppm for 30 s, then -100 ppm
        ppm = 100 if i < 3000 else -100
        t_dev += 10 * MS
        host += int(10 * MS * (1 + ppm * 1e-6))
        cm.update(t_dev, host + 200_000)
    assert abs(cm.drift_ppm - (-100)) < 5
