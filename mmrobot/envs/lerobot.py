"""Export a demonstration dataset as a LeRobotDataset (format ``v3.0``).

Written from LeRobot's documented v3 layout (the ``lerobot`` package's
``datasets/utils.py`` path templates and ``create_empty_dataset_info``, and the LeRobotDataset
v3 documentation), with pyarrow and PyAV: no maintained reader/writer installs here without
replacing this project's torch (``lerobot`` 0.4.4 requires ``torch<2.11`` and
``opencv-python-headless<4.13``), so none is used. The layout::

    OUT/meta/info.json                                  features, fps, path templates, totals
    OUT/meta/stats.json                                 min/max/mean/std/count per feature
    OUT/meta/tasks.parquet                              task (the instruction) -> task_index
    OUT/meta/episodes/chunk-000/file-000.parquet        one row per episode: length, tasks,
                                                        where its rows and video frames lie
    OUT/data/chunk-000/file-000.parquet                 one row per frame (control tick)
    OUT/videos/observation.images.<cam>/chunk-000/file-000.mp4   all episodes, one after another

Features (one frame is one control tick ``t`` of an mmrobot episode):

* ``observation.images.<camera>``: each camera stream as video (``dtype = "video"``);
* ``observation.state``: float32, the newest value of every vector stream (joints with the
  gripper opening, the end-effector pose, F/T, ...) side by side; ``names`` say which element
  is which, ``info.json`` ``mmrobot.state_layout`` gives each stream's slice;
* ``observation.lidar.<stream>``: float32 ``(N, 3)`` points, an array feature;
* ``observation.depth.<stream>``: float32 ``(H, W)`` depth images, an array feature;
* ``observation.valid`` (bool) and ``observation.age_ns`` (int64), one per stream: the
  synchronizer's validity mask and sample ages;
* ``observation.t_ns``: int64, the measured observation time (simulation clock);
* ``action`` float32 ``(7,)``, ``next.reward``, ``next.done``;
* LeRobot's own ``timestamp``, ``frame_index``, ``episode_index``, ``index``, ``task_index``.

Time: LeRobot's ``timestamp`` is nominal, ``frame_index / fps`` from the episode's start (its
loader finds video frames by it), ``fps`` the control rate. Our observation times are
measured; ``observation.t_ns - t_ns[0]`` differs from ``timestamp`` by the tick jitter, whose
largest value the export writes to ``info.json`` (``mmrobot.time``).
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from mmrobot.core.errors import ConfigError, OutputExistsError
from mmrobot.core.extras import Need, require_extras
from mmrobot.core.types import StreamSpec
from mmrobot.envs.dataset import DemoDataset
from mmrobot.envs.names import ARM_JOINTS

__all__ = ["CODEBASE_VERSION", "LeRobotExport", "export_lerobot", "lerobot_features"]

#: The LeRobotDataset format version written.
CODEBASE_VERSION = "v3.0"
CHUNK_FILE = "chunk-{chunk_index:03d}/file-{file_index:03d}"
DATA_PATH = "data/" + CHUNK_FILE + ".parquet"
VIDEO_PATH = "videos/{video_key}/" + CHUNK_FILE + ".mp4"
EPISODES_PATH = "meta/episodes/" + CHUNK_FILE + ".parquet"
CHUNKS_SIZE = 1000  # files per chunk folder (LeRobot's default)
DATA_FILE_MB = 100  # a data file is closed when the next episode would pass this
VIDEO_FILE_MB = 200  # declared; the videos of one export stay in one file per camera
VIDEO_CODEC = "libsvtav1"  # LeRobot's default; libx264 where PyAV lacks it

_FT_NAMES = ("fx", "fy", "fz", "tx", "ty", "tz")


@dataclass(frozen=True)
class LeRobotExport:
    """What :func:`export_lerobot` wrote."""

    root: Path
    episodes: int
    frames: int
    fps: int
    video_keys: tuple[str, ...]
    max_time_error_s: float


def _element_names(spec: StreamSpec) -> list[str]:
    n = int(np.prod(spec.shape))
    if spec.modality == "force" and n == 6:
        return [f"{spec.name}.{x}" for x in _FT_NAMES]
    if spec.name == "joints" and n == len(ARM_JOINTS) + 1:
        return [f"joints.{j}" for j in ARM_JOINTS] + ["joints.gripper"]
    return [f"{spec.name}.{i}" for i in range(n)]


def _kind(spec: StreamSpec) -> str:
    """How a stream is exported: video, state (a vector), lidar or depth (arrays)."""
    if spec.modality == "camera":
        return "video"
    if spec.modality == "lidar":
        return "lidar"
    if spec.modality == "depth":
        return "depth"
    if len(spec.shape) == 1:
        return "state"
    raise ConfigError(
        f"stream {spec.name!r} ({spec.modality}, shape {spec.shape}) has no LeRobot feature: "
        "expected a camera, lidar or depth stream or a vector"
    )


def _fps(control_hz: float) -> int:
    fps = int(round(control_hz))
    if fps < 1 or abs(control_hz - fps) > 1e-6:
        raise ConfigError(
            f"control rate {control_hz} Hz is not a whole number of frames per second; "
            "LeRobot's fps is an integer"
        )
    return fps


def lerobot_features(specs: Sequence[StreamSpec], action_dim: int, fps: int) -> dict[str, Any]:
    """The ``features`` table of ``info.json`` for datasets of these streams."""
    feats: dict[str, Any] = {}
    state_names: list[str] = []
    for s in specs:
        kind = _kind(s)
        if kind == "video":
            h, w, c = s.shape
            feats[f"observation.images.{s.name}"] = {
                "dtype": "video",
                "shape": [h, w, c],
                "names": ["height", "width", "channels"],
                "info": {
                    "video.height": h,
                    "video.width": w,
                    "video.codec": "",  # filled in by the writer (the codec PyAV has)
                    "video.pix_fmt": "yuv420p",
                    "video.is_depth_map": False,
                    "video.fps": fps,
                    "video.channels": c,
                    "has_audio": False,
                },
            }
        elif kind == "lidar":
            feats[f"observation.lidar.{s.name}"] = {
                "dtype": "float32",
                "shape": list(s.shape),
                "names": ["points", "xyz"],
            }
        elif kind == "depth":
            feats[f"observation.depth.{s.name}"] = {
                "dtype": "float32",
                "shape": list(s.shape),
                "names": ["height", "width"],
            }
        else:
            state_names += _element_names(s)
    if state_names:
        feats["observation.state"] = {
            "dtype": "float32",
            "shape": [len(state_names)],
            "names": state_names,
        }
    names = [s.name for s in specs]
    feats["observation.valid"] = {"dtype": "bool", "shape": [len(specs)], "names": names}
    feats["observation.age_ns"] = {"dtype": "int64", "shape": [len(specs)], "names": names}
    feats["observation.t_ns"] = {"dtype": "int64", "shape": [1], "names": None}
    feats["action"] = {"dtype": "float32", "shape": [action_dim], "names": None}
    feats["next.reward"] = {"dtype": "float32", "shape": [1], "names": None}
    feats["next.done"] = {"dtype": "bool", "shape": [1], "names": None}
    for name, dtype in (
        ("timestamp", "float32"),
        ("frame_index", "int64"),
        ("episode_index", "int64"),
        ("index", "int64"),
        ("task_index", "int64"),
    ):
        feats[name] = {"dtype": dtype, "shape": [1], "names": None}
    return feats


def _arrow_type(pa: Any, dtype: str, shape: Sequence[int]) -> Any:
    """A fixed-size list per axis (scalars of shape [1] stay plain columns)."""
    t = {"float32": pa.float32(), "int64": pa.int64(), "bool": pa.bool_()}[dtype]
    if list(shape) == [1]:
        return t
    for n in reversed(shape):
        t = pa.list_(t, int(n))
    return t


def _arrow_column(pa: Any, values: np.ndarray, dtype: str, shape: Sequence[int]) -> Any:
    arr = pa.array(np.ascontiguousarray(values).reshape(-1))
    if list(shape) == [1]:
        return arr
    for n in reversed(shape):
        arr = pa.FixedSizeListArray.from_arrays(arr, int(n))
    return arr


class _Stats:
    """Running min/max/sum/sum of squares per feature element (LeRobot's stats.json)."""

    def __init__(self) -> None:
        self.acc: dict[str, list[np.ndarray | int]] = {}

    def add(self, key: str, x: np.ndarray, axes: tuple[int, ...]) -> None:
        x64 = x.astype(np.float64)
        part = [x64.min(axis=axes), x64.max(axis=axes), x64.sum(axis=axes)]
        part += [(x64**2).sum(axis=axes), int(np.prod([x.shape[a] for a in axes]))]
        if key not in self.acc:
            self.acc[key] = part
            return
        a = self.acc[key]
        a[0], a[1] = np.minimum(a[0], part[0]), np.maximum(a[1], part[1])
        a[2], a[3], a[4] = a[2] + part[2], a[3] + part[3], a[4] + part[4]

    def to_json(self, video_keys: Sequence[str]) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for key, (lo, hi, s, s2, n) in self.acc.items():
            mean = s / n
            std = np.sqrt(np.maximum(s2 / n - mean**2, 0.0))
            stats = {"min": lo, "max": hi, "mean": mean, "std": std}
            if key in video_keys:  # per channel, shaped (C, 1, 1) as LeRobot keeps them
                stats = {k: v.reshape(-1, 1, 1) for k, v in stats.items()}
            out[key] = {k: np.asarray(v).tolist() for k, v in stats.items()}
            out[key]["count"] = [int(n)]
        return out


class _VideoWriter:
    """One camera's frames of every episode into one MP4 (PyAV)."""

    def __init__(self, path: Path, fps: int, width: int, height: int) -> None:
        import av

        path.parent.mkdir(parents=True, exist_ok=True)
        self.container = av.open(str(path), mode="w")
        # SVT-AV1 takes frames of 64 x 64 pixels and more
        small = min(width, height) < 64
        codec = VIDEO_CODEC if VIDEO_CODEC in av.codecs_available and not small else "libx264"
        self.stream = self.container.add_stream(codec, rate=fps)
        self.stream.width, self.stream.height = width, height
        self.stream.pix_fmt = "yuv420p"
        if codec == "libx264":
            self.stream.options = {"crf": "18", "g": "2"}
        else:
            self.stream.options = {"crf": "30", "g": "2"}
        self.codec = {"libsvtav1": "av1", "libx264": "h264"}[codec]
        self.frames = 0
        self._av = av

    def write(self, images: np.ndarray) -> None:
        for img in images:
            frame = self._av.VideoFrame.from_ndarray(np.ascontiguousarray(img), format="rgb24")
            frame.pts = self.frames
            for packet in self.stream.encode(frame):
                self.container.mux(packet)
            self.frames += 1

    def close(self) -> None:
        for packet in self.stream.encode():
            self.container.mux(packet)
        self.container.close()


def export_lerobot(
    dataset: str | Path,
    out: str | Path,
    overwrite: bool = False,
    robot_type: str = "mmrobot_tabletop",
    progress: Callable[[int, int], None] | None = None,
) -> LeRobotExport:
    """Write the demonstrations in ``dataset`` (HDF5) as a LeRobotDataset v3 in ``out``.

    Args:
        dataset: an HDF5 file from ``mmrobot collect``.
        out: the dataset's root folder (must not exist, or be empty, unless ``overwrite``).
        overwrite: replace ``out``.
        robot_type: ``info.json``'s ``robot_type``.
        progress: called with (episodes done, episodes) after each episode.

    Raises:
        DependencyNotInstalled: without pyarrow and PyAV (the ``lerobot`` extra).
        OutputExistsError: ``out`` holds files and ``overwrite`` is false.
        ConfigError: a stream without a LeRobot feature, a fractional control rate, or an
            empty dataset.
    """
    require_extras([Need("lerobot")], "mmrobot dataset export --format lerobot")
    import pyarrow as pa
    import pyarrow.parquet as pq

    ds = DemoDataset(dataset)
    if len(ds) == 0:
        raise ConfigError(f"dataset {str(dataset)!r} has no episodes to export")
    root = Path(out)
    if root.exists() and any(root.iterdir()):
        if not overwrite:
            raise OutputExistsError(
                f"{str(root)!r} is not empty; pass --overwrite to replace it or pick another folder"
            )
        shutil.rmtree(root)
    fps = _fps(ds.control_hz)
    action_dim = int(ds.actions(0).shape[1])
    features = lerobot_features(ds.specs, action_dim, fps)
    kinds = {s.name: _kind(s) for s in ds.specs}
    state_specs = [s for s in ds.specs if kinds[s.name] == "state"]
    video_specs = [s for s in ds.specs if kinds[s.name] == "video"]
    video_keys = tuple(f"observation.images.{s.name}" for s in video_specs)
    layout, at = {}, 0
    for s in state_specs:
        n = int(np.prod(s.shape))
        layout[s.name] = [at, at + n]
        at += n
    data_keys = [k for k, f in features.items() if f["dtype"] != "video"]
    schema = pa.schema(
        [(k, _arrow_type(pa, features[k]["dtype"], features[k]["shape"])) for k in data_keys]
    )

    tasks: dict[str, int] = {}
    stats = _Stats()
    videos = {
        s.name: _VideoWriter(
            root
            / VIDEO_PATH.format(
                video_key=f"observation.images.{s.name}", chunk_index=0, file_index=0
            ),
            fps,
            s.shape[1],
            s.shape[0],
        )
        for s in video_specs
    }
    episodes_meta: list[dict[str, Any]] = []
    file_index, file_bytes, writer = 0, 0, None
    index = 0
    max_err = 0.0
    try:
        for e in range(len(ds)):
            info = ds.info(e)
            n = info.n_steps
            t_ns, ages, valid = ds.timing(e)
            t_ns = t_ns.astype(np.int64)
            values = {s.name: ds.stream(e, s.name) for s in ds.specs}
            for s in ds.specs:
                if s.history > 1:
                    values[s.name] = values[s.name][:, -1]  # the newest (oldest first)
            frame = np.arange(n, dtype=np.int64)
            nominal = frame / fps
            max_err = max(max_err, float(np.abs((t_ns - t_ns[0]) * 1e-9 - nominal).max()))
            task_index = tasks.setdefault(info.instruction, len(tasks))
            cols: dict[str, np.ndarray] = {}
            for s in ds.specs:
                v = values[s.name]
                if kinds[s.name] == "lidar":
                    cols[f"observation.lidar.{s.name}"] = v.astype(np.float32)
                elif kinds[s.name] == "depth":
                    cols[f"observation.depth.{s.name}"] = v.astype(np.float32)
                elif kinds[s.name] == "video":
                    videos[s.name].write(v)
                    stats.add(f"observation.images.{s.name}", v / 255.0, (0, 1, 2))
            if state_specs:
                cols["observation.state"] = np.concatenate(
                    [values[s.name].reshape(n, -1).astype(np.float32) for s in state_specs], 1
                )
            cols["observation.valid"] = np.stack([valid[s.name] for s in ds.specs], 1)
            cols["observation.age_ns"] = np.stack([ages[s.name] for s in ds.specs], 1).astype(
                np.int64
            )
            cols["observation.t_ns"] = t_ns
            cols["action"] = ds.actions(e).astype(np.float32)
            cols["next.reward"] = ds.rewards(e).astype(np.float32)
            cols["next.done"] = frame == n - 1
            cols["timestamp"] = nominal.astype(np.float32)
            cols["frame_index"] = frame
            cols["episode_index"] = np.full(n, e, np.int64)
            cols["index"] = index + frame
            cols["task_index"] = np.full(n, task_index, np.int64)
            for k, v in cols.items():
                if features[k]["dtype"] != "bool":
                    stats.add(k, v.reshape(n, -1), (0,))
            ep_bytes = sum(v.nbytes for v in cols.values())
            if writer is not None and file_bytes + ep_bytes > DATA_FILE_MB * 1e6:
                writer.close()
                writer, file_index, file_bytes = None, file_index + 1, 0
            chunk_index = file_index // CHUNKS_SIZE
            if writer is None:
                path = root / DATA_PATH.format(
                    chunk_index=chunk_index, file_index=file_index % CHUNKS_SIZE
                )
                path.parent.mkdir(parents=True, exist_ok=True)
                writer = pq.ParquetWriter(str(path), schema)
            table = pa.table(
                [
                    _arrow_column(pa, cols[k], features[k]["dtype"], features[k]["shape"])
                    for k in data_keys
                ],
                schema=schema,
            )
            writer.write_table(table)
            file_bytes += ep_bytes
            meta: dict[str, Any] = {
                "episode_index": e,
                "tasks": [info.instruction],
                "length": n,
                "data/chunk_index": chunk_index,
                "data/file_index": file_index % CHUNKS_SIZE,
                "dataset_from_index": index,
                "dataset_to_index": index + n,
            }
            for s in video_specs:
                key = f"observation.images.{s.name}"
                start = (videos[s.name].frames - n) / fps
                meta |= {
                    f"videos/{key}/chunk_index": 0,
                    f"videos/{key}/file_index": 0,
                    f"videos/{key}/from_timestamp": start,
                    f"videos/{key}/to_timestamp": start + n / fps,
                }
            meta |= {
                "meta/episodes/chunk_index": 0,
                "meta/episodes/file_index": 0,
                "mmrobot/task": info.task,
                "mmrobot/seed": info.seed,
                "mmrobot/success": info.success,
                "mmrobot/split": info.split,
            }
            episodes_meta.append(meta)
            index += n
            if progress:
                progress(e + 1, len(ds))
    finally:
        if writer is not None:
            writer.close()
        for v in videos.values():
            v.close()
        ds.close()

    path = root / EPISODES_PATH.format(chunk_index=0, file_index=0)
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.Table.from_pylist(episodes_meta), str(path))
    pq.write_table(
        pa.table({"task_index": list(tasks.values()), "task": list(tasks)}),
        str(root / "meta" / "tasks.parquet"),
    )
    for s in video_specs:
        features[f"observation.images.{s.name}"]["info"]["video.codec"] = videos[s.name].codec
    info_json = {
        "codebase_version": CODEBASE_VERSION,
        "robot_type": robot_type,
        "total_episodes": len(episodes_meta),
        "total_frames": index,
        "total_tasks": len(tasks),
        "chunks_size": CHUNKS_SIZE,
        "data_files_size_in_mb": DATA_FILE_MB,
        "video_files_size_in_mb": VIDEO_FILE_MB,
        "fps": fps,
        "splits": {"train": f"0:{len(episodes_meta)}"},
        "data_path": DATA_PATH,
        "video_path": VIDEO_PATH if video_specs else None,
        "features": features,
        "mmrobot": {
            "source": str(Path(dataset).resolve()),
            "time": {
                "timestamp": "nominal: frame_index / fps from the episode's first frame, as "
                "LeRobot expects (its loader finds video frames by it)",
                "observation.t_ns": "measured: the observation time of the control tick "
                "(simulation clock, int64 ns); observation.age_ns holds each stream's sample age",
                "max_abs_error_s": max_err,
                "note": "max |(t_ns - t_ns[0]) * 1e-9 - timestamp| over the dataset",
            },
            "state_layout": layout,
            "history": "vector streams with a history keep only their newest value; rebuild "
            "a history with LeRobot's delta_timestamps",
            "action_low": ds.action_low.tolist(),
            "action_high": ds.action_high.tolist(),
            "stream_specs": [s.to_dict() for s in ds.specs],
        },
    }
    (root / "meta" / "info.json").write_text(json.dumps(info_json, indent=2) + "\n")
    (root / "meta" / "stats.json").write_text(
        json.dumps(stats.to_json(video_keys), indent=2) + "\n"
    )
    return LeRobotExport(root, len(episodes_meta), index, fps, video_keys, max_err)
