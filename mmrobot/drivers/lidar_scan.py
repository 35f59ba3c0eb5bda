"""Lidar returns into scans, with no I/O: revolutions assembled where the angle wraps,
spikes rejected, the RPLIDAR node pipeline from bytes to checked turns, and one turn binned
into an ``(N, 3)`` point cloud in the base frame (see :mod:`mmrobot.drivers.lidar` for the
frames and the line-noise rules).

Spec: Slamtec "RPLIDAR Interface Protocol and Application Notes" (LR001), section 4 (the
node format, decoded by :mod:`mmrobot.drivers.protocols.rplidar`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from mmrobot.drivers.config_models import Extrinsics
from mmrobot.drivers.protocols import rplidar as rp

__all__ = [
    "RevolutionAssembler",
    "RplidarNodeStats",
    "RplidarScanner",
    "scan_to_points",
    "spike_mask",
]


def scan_to_points(
    angle_deg: np.ndarray,
    distance_m: np.ndarray,
    n_bins: int,
    extrinsics: Extrinsics | None = None,
    *,
    min_range_m: float = 0.0,
    max_range_m: float = np.inf,
) -> np.ndarray:
    """One revolution -> ``(n_bins, 3) float32`` points in the base frame.

    Args:
        angle_deg: (M,) device angles, clockwise from the sensor's x axis.
        distance_m: (M,) ranges; 0 (or outside [min, max]) means no return.
        n_bins: N, the number of equal angular bins (bin k covers [k, k+1) * 360/N deg).
        extrinsics: sensor pose in the base frame (identity when None).

    Returns:
        (N, 3) float32; row k is the nearest return in bin k, zeros when the bin has none.
    """
    a = np.asarray(angle_deg, np.float64)
    d = np.asarray(distance_m, np.float64)
    ok = (d > max(min_range_m, 0.0)) & (d <= max_range_m) & np.isfinite(d) & np.isfinite(a)
    a, d = a[ok], d[ok]
    out = np.zeros((n_bins, 3), np.float32)
    if a.size == 0:
        return out
    bins = np.floor(np.mod(a, 360.0) * (n_bins / 360.0)).astype(np.int64) % n_bins
    order = np.lexsort((d, bins))
    b_sorted = bins[order]
    first = np.ones(order.size, bool)
    first[1:] = b_sorted[1:] != b_sorted[:-1]
    sel = order[first]
    rad = np.deg2rad(a[sel])
    pts = np.stack([d[sel] * np.cos(rad), -d[sel] * np.sin(rad), np.zeros(sel.size)], axis=1)
    if extrinsics is not None:
        pts = extrinsics.apply(pts)
    out[bins[sel]] = pts
    return out


class RevolutionAssembler:
    """Collects points into revolutions; a revolution ends where the angle wraps. The partial
    revolution before the first wrap is dropped.

    A start flag (RPLIDAR) does not end a revolution by itself: a corrupted node can carry one
    anywhere. Flags away from a wrap are counted in ``false_starts``.
    """

    def __init__(self) -> None:
        self._angles: list[np.ndarray] = []
        self._dists: list[np.ndarray] = []
        self._last_angle: float | None = None
        self._started = False
        self.false_starts = 0
        self.last_ends: list[int] = []  # for each revolution the last feed returned: its end index

    def reset(self) -> None:
        self._angles, self._dists = [], []
        self._last_angle = None
        self._started = False

    def feed(
        self, angle_deg: np.ndarray, distance: np.ndarray, start: np.ndarray | None = None
    ) -> list[tuple[np.ndarray, np.ndarray]]:
        """Add (M,) points; returns the revolutions they completed as (angles, distances)."""
        if angle_deg.size == 0:
            return []
        prev = np.empty_like(angle_deg)
        first = self._last_angle is None  # the very first node: no wrap to compare with
        prev[0] = angle_deg[0] if first else self._last_angle
        prev[1:] = angle_deg[:-1]
        wrap = angle_deg < prev - 180.0
        if start is not None:
            self.false_starts += int(np.count_nonzero(start[first:] & ~wrap[first:]))
        cuts = np.flatnonzero(wrap)
        self._last_angle = float(angle_deg[-1])
        out = []
        self.last_ends = []
        lo = 0
        for c in cuts:
            self._angles.append(angle_deg[lo:c])
            self._dists.append(distance[lo:c])
            if self._started:
                out.append((np.concatenate(self._angles), np.concatenate(self._dists)))
                self.last_ends.append(int(c))
            self._started = True
            self._angles, self._dists = [], []
            lo = c
        self._angles.append(angle_deg[lo:])
        self._dists.append(distance[lo:])
        return out


def spike_mask(distance: np.ndarray, max_jump: float) -> np.ndarray:
    """(M,) bool: the returns of one turn that jump against both angular neighbours.

    A return (distance > 0) is a spike when it differs from the nearest return on each side
    by more than ``max_jump``, in the same direction (nearer than both or farther than both):
    a point on a slope or at an edge steps against one neighbour only. The turn is closed on
    itself (the last return neighbours the first). A thin object hit by a single node looks
    the same; raise ``max_jump`` (or disable the filter) where that matters.
    """
    d = np.asarray(distance, np.float64)
    out = np.zeros(d.shape, bool)
    idx = np.flatnonzero(d > 0)
    if idx.size < 3:
        return out
    v = d[idx]
    up, down = v - np.roll(v, 1), v - np.roll(v, -1)
    out[idx[(np.abs(up) > max_jump) & (np.abs(down) > max_jump) & (up * down > 0)]] = True
    return out


@dataclass(frozen=True, slots=True)
class RplidarNodeStats:
    """What the RPLIDAR node pipeline kept and rejected, counted since the driver was built.

    Attributes:
        nodes: nodes framed by the decoder.
        check_bit_errors: nodes rejected for failing the !S == not S or C == 1 check.
        step_errors: nodes rejected for an angle step out of range.
        suspects: nodes dropped along with a rejected successor.
        spikes: points rejected for jumping against both neighbours (``max_jump_m``).
        false_starts: start flags away from an angle wrap (ignored).
        turns: complete turns assembled.
    """

    nodes: int
    check_bit_errors: int
    step_errors: int
    suspects: int
    spikes: int
    false_starts: int
    turns: int

    @property
    def rejected(self) -> int:
        """Nodes and points never published: check bits, angle steps and spikes."""
        return self.check_bit_errors + self.step_errors + self.spikes


class RplidarScanner:
    """Bytes of an RPLIDAR SCAN response -> complete turns of checked points (no I/O).

    Args:
        max_jump_mm: spike bound for :func:`spike_mask`; None keeps every point.
    """

    def __init__(self, max_jump_mm: float | None = 300.0) -> None:
        self.decoder = rp.NodeDecoder()
        self.assembler = RevolutionAssembler()
        self.max_jump_mm = max_jump_mm
        self.spikes = 0
        self.turns = 0

    def reset(self) -> None:
        """Forget buffered bytes and the partial turn (after a reconnect); counters stay."""
        self.decoder.reset()
        self.assembler.reset()

    def feed(self, data: bytes) -> tuple[int, list[tuple[np.ndarray, np.ndarray, int]]]:
        """Decode ``data``: (nodes decoded, [(angle_deg, distance_mm, end index)] per turn
        completed), where the end index counts the nodes of this feed before the turn's end."""
        nodes = self.decoder.feed(data)
        revs = self.assembler.feed(nodes.angle_deg, nodes.distance_mm, nodes.start)
        out = []
        for (angles, dists), end in zip(revs, self.assembler.last_ends, strict=True):
            if self.max_jump_mm is not None:
                bad = spike_mask(dists, self.max_jump_mm)
                if bad.any():
                    self.spikes += int(bad.sum())
                    angles, dists = angles[~bad], dists[~bad]
            out.append((angles, dists, end))
        self.turns += len(out)
        return len(nodes), out

    @property
    def stats(self) -> RplidarNodeStats:
        d = self.decoder
        return RplidarNodeStats(
            nodes=d.frames,
            check_bit_errors=d.check_bit_errors,
            step_errors=d.step_errors,
            suspects=d.suspects,
            spikes=self.spikes,
            false_starts=self.assembler.false_starts,
            turns=self.turns,
        )
