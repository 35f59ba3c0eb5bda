"""ClockModel: map a device's clock to the host clock, online.

Each received sample gives a pair (device time d, host receive time h) with
``h = d + offset + drift * (d - d_ref) + delay`` and ``delay >= 0``: transport delay is
one-sided and heavy-tailed (USB scheduling, the OS, a busy reader). The host-receive stamp
is therefore late by the delay, and by how much varies from sample to sample. The
*minimum-delay envelope* (Olson 2010, "A passive solution to the sensor synchronization
problem", IROS) fits the line under all points that hugs them most tightly: the samples that
happened to travel fastest define it, so the estimate is as good as the best-case delay,
not the average one.

This implementation keeps a bounded window (so the model follows drift that changes with
temperature): device time is cut into buckets, only each bucket's fastest pair is kept, and
the lower convex hull of those points gives the line. Among the hull's edges it takes the
one spanning the window's mean device time, which minimizes the summed residuals (Olson's
linear program). Between refits a pair below the line pulls the line down at once. A jump of
the device clock (reboot, counter reset) resets the model.

The fixed part of the transport latency (the minimum delay) is not observable this way; the
rig file's ``latency_ns`` for the stream corrects it.
"""

from __future__ import annotations

import operator
from collections import deque

__all__ = ["ClockModel"]


class ClockModel:
    """Online estimate of a device clock's offset and drift relative to the host clock.

    Args:
        window_ns: device-time span of pairs the fit uses (older buckets are dropped).
        bucket_ns: device-time span of one bucket; only its fastest pair is kept.
        jump_threshold_ns: a pair that disagrees with the model by more than this (arrived
            "before" it was measured, or later than this for ``jump_count`` pairs in a row),
            or a device clock that goes backwards, resets the model.
        jump_count: consecutive late pairs that count as a jump.

    Example:
        >>> cm = ClockModel()
        >>> cm.update(device_ns=1_000, host_receive_ns=5_000_300)
        >>> cm.to_host(1_000)
        5000300
    """

    def __init__(
        self,
        window_ns: int = 30_000_000_000,
        bucket_ns: int = 250_000_000,
        jump_threshold_ns: int = 100_000_000,
        jump_count: int = 5,
    ) -> None:
        if not 0 < bucket_ns <= window_ns:
            raise ValueError(f"need 0 < bucket_ns <= window_ns, got {bucket_ns} and {window_ns}")
        self.window_ns = operator.index(window_ns)
        self.bucket_ns = operator.index(bucket_ns)
        self.jump_threshold_ns = operator.index(jump_threshold_ns)
        self.jump_count = jump_count
        self.resets = 0
        self._clear()

    def _clear(self) -> None:
        # closed buckets: (device_ns, host_minus_device_ns) of each bucket's fastest pair
        self._points: deque[tuple[int, int]] = deque()
        self._bucket_id: int | None = None
        self._bucket_best: tuple[int, int] | None = None
        self._last_device: int | None = None
        self._late_run = 0
        # model: host = device + offset_ref + drift * (device - device_ref)
        self._device_ref = 0
        self._offset_ref = 0.0
        self._drift = 0.0
        self.n_updates = 0

    @property
    def ready(self) -> bool:
        """True once at least one pair has been seen."""
        return self.n_updates > 0

    @property
    def drift_ppm(self) -> float:
        """Estimated drift of the host clock relative to the device clock, in ppm."""
        return self._drift * 1e6

    def offset_at(self, device_ns: int) -> float:
        """Estimated host minus device time at ``device_ns``, in ns."""
        return self._offset_ref + self._drift * (device_ns - self._device_ref)

    def reset(self) -> None:
        """Forget everything (the device rebooted or was replaced)."""
        self.resets += 1
        self._clear()

    def update(self, device_ns: int, host_receive_ns: int) -> None:
        """Feed one (device time, host receive time) pair, in arrival order."""
        d = operator.index(device_ns)
        diff = operator.index(host_receive_ns) - d
        if self.n_updates:
            residual = diff - self.offset_at(d)
            went_back = self._last_device is not None and d < self._last_device
            self._late_run = self._late_run + 1 if residual > self.jump_threshold_ns else 0
            if went_back or residual < -self.jump_threshold_ns or self._late_run >= self.jump_count:
                self.reset()
            elif residual < 0:
                # This pair travelled faster than the model allows: lower the line to it now.
                self._offset_ref += residual
        self._last_device = d
        self.n_updates += 1
        bucket = d // self.bucket_ns
        if self._bucket_id is None or self._bucket_best is None:
            self._bucket_id, self._bucket_best = bucket, (d, diff)
            if len(self._points) == 0:
                self._device_ref, self._offset_ref, self._drift = d, float(diff), 0.0
            return
        if bucket != self._bucket_id:
            self._points.append(self._bucket_best)
            while self._points and self._points[0][0] < d - self.window_ns:
                self._points.popleft()
            self._bucket_id, self._bucket_best = bucket, (d, diff)
            self._refit()
        elif diff < self._bucket_best[1]:
            self._bucket_best = (d, diff)

    def to_host(self, device_ns: int) -> int:
        """Host-clock time of device time ``device_ns`` (the measurement instant)."""
        d = operator.index(device_ns)
        return d + round(self.offset_at(d))

    def _refit(self) -> None:
        points = list(self._points)
        if self._bucket_best is not None:
            points.append(self._bucket_best)
        if len(points) == 1:
            self._device_ref, self._offset_ref, self._drift = points[0][0], float(points[0][1]), 0.0
            return
        hull = _lower_hull(points)
        mean_d = sum(p[0] for p in points) / len(points)
        # The hull edge spanning the mean device time minimizes the summed residuals.
        edges = list(zip(hull, hull[1:]))
        (d0, o0), (d1, o1) = next((e for e in edges if e[1][0] >= mean_d), edges[-1])
        self._drift = (o1 - o0) / (d1 - d0)
        self._device_ref, self._offset_ref = d0, float(o0)


def _lower_hull(points: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """Lower convex hull of points sorted by x (Andrew's monotone chain), exact in ints."""
    hull: list[tuple[int, int]] = []
    for p in points:
        while len(hull) >= 2:
            (x0, y0), (x1, y1) = hull[-2], hull[-1]
            # drop hull[-1] unless it lies strictly below the segment hull[-2] -> p
            if (x1 - x0) * (p[1] - y0) - (y1 - y0) * (p[0] - x0) <= 0:
                hull.pop()
            else:
                break
        hull.append(p)
    return hull
