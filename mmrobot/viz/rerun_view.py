"""Write what mmrobot records as a Rerun recording (``mmrobot view``; the ``viz`` extra).

Three sources, one layout of entity paths and one ``time`` timeline (the samples' own
``t_ns`` stamps; a dataset or results file adds the control ``tick`` as a sequence):

=============================  =================================================================
entity                         what
=============================  =================================================================
``instruction``                the instruction (text document)
``cameras/<stream>``           each camera image (depth streams as depth images)
``base/lidar/<stream>``        the lidar as 3-D points in the base frame (the simulated
                               lidar's points are; a real rig's as recorded)
``series/<stream>``            F/T, joints and other vector streams (one line per element)
``action``                     the action taken at each tick (a dataset; one line per element)
``attribution/<group>``        the share of each input group per policy call (``--explain``)
``status``                     episode outcome lines (success, reason)
=============================  =================================================================

Rerun's entity paths and archetypes are documented at https://rerun.io/docs (``Image``,
``DepthImage``, ``Points3D``, ``Scalars``, ``SeriesLines``, ``TextDocument``, ``TextLog``).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from mmrobot.core.errors import ConfigError
from mmrobot.core.extras import Need, require_extras
from mmrobot.core.types import StreamSpec

__all__ = ["ENTITY_ROOTS", "ViewResult", "view_file"]

#: The top-level entities a view may hold.
ENTITY_ROOTS = ("instruction", "cameras", "base", "series", "action", "attribution", "status")
APPLICATION_ID = "mmrobot"


@dataclass
class ViewResult:
    """What a view logged: entity path -> number of rows (samples) on the timeline."""

    source: Path
    kind: str  # "recording", "dataset" or "results"
    out: Path | None
    counts: dict[str, int] = field(default_factory=dict)
    url: str | None = None  # the web viewer's, with ``serve``


def _kind_of(path: Path) -> str:
    suffix = path.suffix.lower()
    if suffix == ".mcap":
        return "recording"
    if suffix in (".h5", ".hdf5"):
        return "dataset"
    if suffix == ".json":
        return "results"
    raise ConfigError(
        f"{str(path)!r}: cannot tell what it is from '{suffix}'; expected an MCAP recording "
        "(.mcap), a demonstration dataset (.h5) or an eval/run results file (.json)"
    )


class _Logger:
    """Logs to one RecordingStream and counts the rows per entity."""

    def __init__(self, rec: Any, rr: Any) -> None:
        self.rec, self.rr = rec, rr
        self.counts: dict[str, int] = {}
        self._series: set[str] = set()

    def time(self, t_ns: int, tick: int | None = None) -> None:
        self.rec.set_time("time", timestamp=np.datetime64(int(t_ns), "ns"))
        if tick is not None:
            self.rec.set_time("tick", sequence=int(tick))

    def log(self, path: str, archetype: Any, static: bool = False) -> None:
        self.rec.log(path, archetype, static=static)
        if not static:
            self.counts[path] = self.counts.get(path, 0) + 1

    def series_names(self, path: str, names: Sequence[str]) -> None:
        if path not in self._series:
            self._series.add(path)
            self.rec.log(path, self.rr.SeriesLines(names=list(names)), static=True)

    def sample(self, spec: StreamSpec, value: np.ndarray) -> None:
        """One sample of a stream, by its modality."""
        rr = self.rr
        if spec.history > 1:
            value = value[-1]  # the newest of a dataset's history (oldest first)
        if spec.modality == "camera":
            self.log(f"cameras/{spec.name}", rr.Image(np.ascontiguousarray(value)))
        elif spec.modality == "depth":
            depth = np.asarray(value)
            meter = 1000.0 if depth.dtype.kind in "iu" else 1.0  # integer depth is in mm
            self.log(f"cameras/{spec.name}", rr.DepthImage(depth, meter=meter))
        elif spec.modality == "lidar":
            pts = np.asarray(value, dtype=np.float32)
            if pts.ndim == 1:  # ranges of a planar scan, evenly spread over a turn
                angle = np.linspace(0.0, 2 * np.pi, len(pts), endpoint=False)
                pts = np.stack([pts * np.cos(angle), pts * np.sin(angle), 0 * pts], 1)
            pts = pts[np.isfinite(pts).all(axis=1)]
            self.log(f"base/lidar/{spec.name}", rr.Points3D(pts, radii=0.004))
        else:
            flat = np.asarray(value, dtype=np.float64).reshape(-1)
            path = f"series/{spec.name}"
            self.series_names(path, [f"{spec.name}[{i}]" for i in range(len(flat))])
            self.log(path, rr.Scalars(flat))

    def attribution(self, att: Mapping[str, Any], t0_ns: int, tick_ns: int) -> None:
        groups, steps, shares = att["groups"], att["steps"], att["shares"]
        for step, row in zip(steps, shares):
            self.time(t0_ns + int(step) * tick_ns, int(step))
            for g, share in zip(groups, row):
                self.log(f"attribution/{g}", self.rr.Scalars(float(share)))


def _log_recording(log: _Logger, path: Path) -> None:
    from mmrobot.drivers.recording import read_recording

    rec = read_recording(path)
    events = [(int(t), name, i) for name, times in rec.times.items() for i, t in enumerate(times)]
    for t, name, i in sorted(events):
        log.time(t)
        log.sample(rec.specs[name], rec.values[name][i])


def _log_dataset(log: _Logger, path: Path, episode: int) -> None:
    from mmrobot.envs.dataset import DemoDataset

    ds = DemoDataset(path)
    try:
        if not 0 <= episode < len(ds):
            raise ConfigError(f"--episode {episode} out of range: {path} has {len(ds)} episodes")
        info = ds.info(episode)
        t_ns, _, valid = ds.timing(episode)
        values = {s.name: ds.stream(episode, s.name) for s in ds.specs}
        actions = ds.actions(episode)
        log.time(int(t_ns[0]), 0)
        log.log("instruction", log.rr.TextDocument(info.instruction))
        log.series_names("action", [f"action[{i}]" for i in range(actions.shape[1])])
        for tick in range(info.n_steps):
            log.time(int(t_ns[tick]), tick)
            for s in ds.specs:
                if valid[s.name][tick]:  # a masked stream has no sample at this tick
                    log.sample(s, values[s.name][tick])
            log.log("action", log.rr.Scalars(actions[tick].astype(np.float64)))
        log.log(
            "status",
            log.rr.TextLog(
                f"episode {episode} ({info.task}, seed {info.seed}): "
                + ("success" if info.success else f"failure ({info.reason})")
            ),
        )
    finally:
        ds.close()


def _log_results(log: _Logger, path: Path, episode: int) -> None:
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise ConfigError(f"{path}: not valid JSON ({e})") from None
    episodes = doc if isinstance(doc, list) else doc.get("episodes")
    if not isinstance(episodes, list) or not episodes:
        raise ConfigError(
            f"{path}: no episodes; expected `mmrobot eval --json` output (an `episodes` list) "
            "or a `mmrobot run --json` results list"
        )
    if not 0 <= episode < len(episodes):
        raise ConfigError(f"--episode {episode} out of range: {path} has {len(episodes)} episodes")
    ep = episodes[episode]
    control_hz = (
        float(doc.get("settings", {}).get("control_hz", 20.0)) if isinstance(doc, dict) else 20.0
    )
    tick_ns = int(round(1e9 / control_hz))
    log.time(0, 0)
    log.log("instruction", log.rr.TextDocument(str(ep.get("instruction", ""))))
    if ep.get("attribution"):
        log.attribution(ep["attribution"], 0, tick_ns)
    steps = int(ep.get("steps") or 0)
    log.time(steps * tick_ns, steps)
    outcome = "success" if ep.get("success") else f"failure ({ep.get('reason', '')})"
    log.log("status", log.rr.TextLog(f"{ep.get('task', '')}: {outcome} after {steps} ticks"))
    video = ep.get("video")
    if video and Path(video).is_file():
        _log_video(log, Path(video), tick_ns)


def _log_video(log: _Logger, path: Path, tick_ns: int) -> None:
    """The episode's video (one frame per tick, as eval writes it) as camera images."""
    import cv2

    cap = cv2.VideoCapture(str(path))
    tick = 0
    while True:
        ok, frame = cap.read()
        if not ok:
            break
        log.time(tick * tick_ns, tick)
        log.log("cameras/video", log.rr.Image(cv2.cvtColor(frame, cv2.COLOR_BGR2RGB)))
        tick += 1
    cap.release()


def view_file(
    path: str | Path,
    out: str | Path | None = None,
    episode: int = 0,
    serve: bool = False,
    web_port: int = 9090,
) -> ViewResult:
    """Log ``path`` (MCAP recording, HDF5 dataset episode, or eval/run results JSON) to Rerun.

    Args:
        path: the file to view.
        out: the ``.rrd`` file to write (default: ``path`` with the suffix ``.rrd``); ignored
            with ``serve``.
        episode: which episode of a dataset or results file.
        serve: serve the recording to the Rerun web viewer on localhost (``web_port``)
            instead of writing a file; the caller keeps the process alive while it is watched.
        web_port: the web viewer's port with ``serve``.

    Raises:
        DependencyNotInstalled: without rerun-sdk (the ``viz`` extra).
        FileNotFoundError: ``path`` does not exist.
        ConfigError: a file of an unknown kind, an episode out of range.
    """
    require_extras([Need("viz")], "mmrobot view")
    import rerun as rr

    src = Path(path)
    if not src.is_file():
        raise FileNotFoundError(f"{str(src)!r} does not exist")
    kind = _kind_of(src)
    rec = rr.RecordingStream(APPLICATION_ID, recording_id=f"{src.name}#{episode}")
    target, url = None, None
    if serve:
        grpc_url = rec.serve_grpc()
        rr.serve_web_viewer(web_port=web_port, open_browser=False, connect_to=grpc_url)
        url = f"http://localhost:{web_port}/?url={grpc_url}"
    else:
        target = Path(out) if out else src.with_suffix(".rrd")
        rec.save(str(target))
    log = _Logger(rec, rr)
    if kind == "recording":
        _log_recording(log, src)
    elif kind == "dataset":
        _log_dataset(log, src, episode)
    else:
        _log_results(log, src, episode)
    rec.flush()
    if not serve:
        rec.disconnect()
    return ViewResult(src, kind, target, dict(log.counts), url)
