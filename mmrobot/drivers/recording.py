"""Record StreamBuffers to MCAP as ROS 2 messages, and read such files back.

The file follows the MCAP specification (https://mcap.dev/spec, "Records" and "Chunk") with
the ``ros2`` profile of the MCAP format registry (https://mcap.dev/spec/registry, "ros2"):
schemas are ROS 2 ``.msg`` text (schema encoding ``ros2msg``; dependencies appended after a
line of ``=`` and a ``MSG: package/Type`` line, as rosbag2 writes them), messages are CDR
(message encoding ``cdr``). ``ros2 bag`` (rosbag2_storage_mcap) and Foxglove open the files;
no ROS installation is needed to write or read them.

Message definitions follow the ROS 2 interface packages (ros2/common_interfaces:
``sensor_msgs/msg/{Image,CompressedImage,PointCloud2,PointField,LaserScan,JointState}.msg``,
``geometry_msgs/msg/{WrenchStamped,Wrench,Vector3}.msg``, ``std_msgs/msg/{Header,
MultiArrayLayout,MultiArrayDimension,*MultiArray}.msg``; ros2/rcl_interfaces:
``builtin_interfaces/msg/Time.msg``), field for field, so the CDR bytes are those a ROS 2
node publishes (checked in the tests against rosbags' built-in ROS 2 Humble definitions). ``header.stamp`` is the sample's ``t_ns`` (measurement time
on the host clock), which is also each message's MCAP ``log_time`` and ``publish_time``.

Each stream's :class:`~mmrobot.core.StreamSpec` is written in a Metadata record named
``mmrobot.streams`` right after the file header (before any chunk), so a reader rebuilds
exact specs even from a file cut off mid-write. A second Metadata record,
``mmrobot.stats``, written at the end, holds per-stream message and drop counts.

A file cut off mid-write (process killed) stays readable up to its last complete chunk:
:func:`read_recording` reads linearly and stops cleanly at the first incomplete record,
saying how much it recovered. :class:`Recorder` finishes a chunk and flushes the file every
``flush_interval_s`` so that a kill loses at most that much.

Every chunk is checked when it is read (its CRC32, https://mcap.dev/spec "Chunk"; see
:mod:`mmrobot.drivers.mcap_check`): a corrupted chunk is logged with its topics and time
range and skipped, never decoded as data; :attr:`RecordingInfo.corrupt_chunks` lists the
chunks skipped, and :func:`recover_recording` leaves them out of the copy.
"""

from __future__ import annotations

import json
import logging
import math
import os
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import IO, Any, Literal

import numpy as np

import mmrobot
from mmrobot.core.errors import ConfigError, LifecycleError, ProtocolError
from mmrobot.core.types import StreamSpec
from mmrobot.drivers.mcap_check import (
    MCAP_MAGIC,
    CorruptChunk,
    Scan,
    describe_corruption,
    has_footer,
    indexed_messages,
    linear_records,
    subtract_lost,
    summary_scan,
)

__all__ = [
    "FORMAT_VERSION",
    "METADATA_RECORDING",
    "METADATA_STATS",
    "METADATA_STREAMS",
    "Compression",
    "CorruptChunk",
    "ImageFormat",
    "Recorder",
    "RecorderStats",
    "Recording",
    "RecordingInfo",
    "StreamRecordStats",
    "TopicInfo",
    "decode_message",
    "decode_messages",
    "encode_value",
    "infer_spec",
    "inspect_recording",
    "iter_messages",
    "msgdef_text",
    "plan_reading",
    "plan_topic",
    "read_recording",
    "recover_recording",
]

log = logging.getLogger(__name__)

FORMAT_VERSION = 1
METADATA_STREAMS = "mmrobot.streams"
METADATA_RECORDING = "mmrobot.recording"
METADATA_STATS = "mmrobot.stats"

Compression = Literal["zstd", "lz4", "none"]
ImageFormat = Literal["raw", "png", "jpeg"]
COMPRESSIONS: tuple[str, ...] = ("zstd", "lz4", "none")
IMAGE_FORMATS: tuple[str, ...] = ("raw", "png", "jpeg")

# --------------------------------------------------------------------------- ROS 2 msgdefs

_SEP = "=" * 80
_DEFS: dict[str, str] = {
    "builtin_interfaces/Time": "int32 sec\nuint32 nanosec",
    "std_msgs/Header": "builtin_interfaces/Time stamp\nstring frame_id",
    "sensor_msgs/Image": (
        "std_msgs/Header header\nuint32 height\nuint32 width\nstring encoding\n"
        "uint8 is_bigendian\nuint32 step\nuint8[] data"
    ),
    "sensor_msgs/CompressedImage": "std_msgs/Header header\nstring format\nuint8[] data",
    "sensor_msgs/PointField": (
        "uint8 INT8=1\nuint8 UINT8=2\nuint8 INT16=3\nuint8 UINT16=4\nuint8 INT32=5\n"
        "uint8 UINT32=6\nuint8 FLOAT32=7\nuint8 FLOAT64=8\n"
        "string name\nuint32 offset\nuint8 datatype\nuint32 count"
    ),
    "sensor_msgs/PointCloud2": (
        "std_msgs/Header header\nuint32 height\nuint32 width\n"
        "sensor_msgs/PointField[] fields\nbool is_bigendian\nuint32 point_step\n"
        "uint32 row_step\nuint8[] data\nbool is_dense"
    ),
    "sensor_msgs/LaserScan": (
        "std_msgs/Header header\nfloat32 angle_min\nfloat32 angle_max\n"
        "float32 angle_increment\nfloat32 time_increment\nfloat32 scan_time\n"
        "float32 range_min\nfloat32 range_max\nfloat32[] ranges\nfloat32[] intensities"
    ),
    "geometry_msgs/Vector3": "float64 x\nfloat64 y\nfloat64 z",
    "geometry_msgs/Wrench": "geometry_msgs/Vector3 force\ngeometry_msgs/Vector3 torque",
    "geometry_msgs/WrenchStamped": "std_msgs/Header header\ngeometry_msgs/Wrench wrench",
    "sensor_msgs/JointState": (
        "std_msgs/Header header\nstring[] name\nfloat64[] position\nfloat64[] velocity\n"
        "float64[] effort"
    ),
    "std_msgs/MultiArrayDimension": "string label\nuint32 size\nuint32 stride",
    "std_msgs/MultiArrayLayout": "std_msgs/MultiArrayDimension[] dim\nuint32 data_offset",
}
_DEPS: dict[str, tuple[str, ...]] = {
    "std_msgs/Header": ("builtin_interfaces/Time",),
    "sensor_msgs/Image": ("std_msgs/Header",),
    "sensor_msgs/CompressedImage": ("std_msgs/Header",),
    "sensor_msgs/PointCloud2": ("std_msgs/Header", "sensor_msgs/PointField"),
    "sensor_msgs/LaserScan": ("std_msgs/Header",),
    "geometry_msgs/Wrench": ("geometry_msgs/Vector3",),
    "geometry_msgs/WrenchStamped": ("std_msgs/Header", "geometry_msgs/Wrench"),
    "sensor_msgs/JointState": ("std_msgs/Header",),
    "std_msgs/MultiArrayLayout": ("std_msgs/MultiArrayDimension",),
}
# numpy dtype -> (std_msgs multi-array type, ROS element type)
_MULTIARRAY: dict[str, tuple[str, str]] = {
    "float32": ("Float32MultiArray", "float32"),
    "float64": ("Float64MultiArray", "float64"),
    "int8": ("Int8MultiArray", "int8"),
    "uint8": ("UInt8MultiArray", "uint8"),
    "bool": ("UInt8MultiArray", "uint8"),
    "int16": ("Int16MultiArray", "int16"),
    "uint16": ("UInt16MultiArray", "uint16"),
    "int32": ("Int32MultiArray", "int32"),
    "uint32": ("UInt32MultiArray", "uint32"),
    "int64": ("Int64MultiArray", "int64"),
    "uint64": ("UInt64MultiArray", "uint64"),
}
for _name, _elem in set(_MULTIARRAY.values()):
    _DEFS[f"std_msgs/{_name}"] = f"std_msgs/MultiArrayLayout layout\n{_elem}[] data"
    _DEPS[f"std_msgs/{_name}"] = ("std_msgs/MultiArrayLayout",)


def _short(type_name: str) -> str:
    """``sensor_msgs/msg/Image`` -> ``sensor_msgs/Image``."""
    parts = type_name.split("/")
    return f"{parts[0]}/{parts[-1]}" if len(parts) >= 2 else type_name


def _full(short: str) -> str:
    """``sensor_msgs/Image`` -> ``sensor_msgs/msg/Image`` (the name rosbag2 gives schemas)."""
    pkg, name = short.split("/")
    return f"{pkg}/msg/{name}"


def msgdef_text(type_name: str) -> str:
    """The ROS 2 concatenated message definition of ``type_name`` with its dependencies."""
    short = _short(type_name)
    order: list[str] = []

    def visit(t: str) -> None:
        for dep in _DEPS.get(t, ()):
            if dep not in order:
                order.append(dep)
                visit(dep)

    visit(short)
    parts = [_DEFS[short]]
    for dep in order:
        parts.append(f"{_SEP}\nMSG: {dep}\n{_DEFS[dep]}")
    return "\n".join(parts) + "\n"


# --------------------------------------------------------------------------- codecs

_IMAGE_ENCODINGS: dict[str, tuple[str, int]] = {
    # encoding -> (numpy dtype, channels); byte order from is_bigendian
    "rgb8": ("uint8", 3),
    "bgr8": ("uint8", 3),
    "rgba8": ("uint8", 4),
    "bgra8": ("uint8", 4),
    "mono8": ("uint8", 1),
    "8UC1": ("uint8", 1),
    "8UC3": ("uint8", 3),
    "mono16": ("uint16", 1),
    "16UC1": ("uint16", 1),
    "16SC1": ("int16", 1),
    "32FC1": ("float32", 1),
    "64FC1": ("float64", 1),
}
_POINTFIELD_DTYPES = {1: "i1", 2: "u1", 3: "i2", 4: "u2", 5: "i4", 6: "u4", 7: "f4", 8: "f8"}


@dataclass(frozen=True, slots=True)
class TopicInfo:
    """How one stream is written: its topic, ROS 2 message type and value encoding.

    Attributes:
        stream: stream name.
        topic: MCAP channel topic, e.g. ``"/wrist_cam"``.
        message_type: ROS 2 type, e.g. ``"sensor_msgs/msg/Image"``.
        encoding: how the value maps onto the message: an image encoding (``"rgb8"``), a
            compressed format (``"png"``), ``"xyz"`` (PointCloud2), ``"ranges"`` (LaserScan),
            ``"wrench"``, ``"position"`` (JointState) or ``"multiarray"``.
        frame_id: ``header.frame_id`` written.
        joint_names: JointState names (JointState only).
    """

    stream: str
    topic: str
    message_type: str
    encoding: str
    frame_id: str = ""
    joint_names: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return {
            "topic": self.topic,
            "message_type": self.message_type,
            "encoding": self.encoding,
            "frame_id": self.frame_id,
            "joint_names": list(self.joint_names),
        }


def plan_topic(
    spec: StreamSpec,
    *,
    image_format: str = "raw",
    topic: str | None = None,
    frame_id: str | None = None,
    joint_names: Sequence[str] | None = None,
) -> TopicInfo:
    """Pick the ROS 2 message type for a stream (the mapping table in docs/recording.md).

    camera/depth images -> sensor_msgs/Image (or CompressedImage for png/jpeg), lidar
    (N, 3) points -> sensor_msgs/PointCloud2, lidar (N,) ranges -> sensor_msgs/LaserScan,
    force (6,) -> geometry_msgs/WrenchStamped, joints/gripper (N,) -> sensor_msgs/JointState,
    anything else -> the std_msgs ``*MultiArray`` of the stream's dtype.
    """
    if image_format not in IMAGE_FORMATS:
        raise ConfigError(
            f"stream {spec.name!r}: image format {image_format!r} is not one of {IMAGE_FORMATS}"
        )
    topic = topic if topic is not None else f"/{spec.name}"
    frame = frame_id if frame_id is not None else spec.name
    shape, dtype = spec.shape, spec.dtype
    kind: tuple[str, str] | None = None
    if spec.modality in ("camera", "depth") and len(shape) in (2, 3):
        channels = 1 if len(shape) == 2 else shape[2]
        enc = {
            ("uint8", 3): "rgb8",
            ("uint8", 4): "rgba8",
            ("uint8", 1): "mono8",
            ("uint16", 1): "16UC1" if spec.modality == "depth" else "mono16",
            ("float32", 1): "32FC1",
        }.get((dtype, channels))
        if enc is not None:
            if (image_format != "raw" and dtype == "uint8") or (
                image_format == "png" and dtype == "uint16"
            ):
                kind = ("sensor_msgs/CompressedImage", image_format)
            else:
                kind = ("sensor_msgs/Image", enc)
    elif spec.modality == "lidar" and dtype in ("float32", "float64"):
        if len(shape) == 2 and shape[1] == 3:
            kind = ("sensor_msgs/PointCloud2", "xyz")
        elif len(shape) == 1 and dtype == "float32":
            kind = ("sensor_msgs/LaserScan", "ranges")
    elif spec.modality == "force" and shape == (6,) and dtype in ("float32", "float64"):
        kind = ("geometry_msgs/WrenchStamped", "wrench")
    elif spec.modality in ("joints", "gripper") and len(shape) == 1 and np.dtype(dtype).kind == "f":
        kind = ("sensor_msgs/JointState", "position")
    names: tuple[str, ...] = ()
    if kind is None:
        kind = (f"std_msgs/{_MULTIARRAY[dtype][0]}", "multiarray")
    elif kind[1] == "position":
        names = (
            tuple(joint_names)
            if joint_names is not None
            else tuple(f"{spec.name}_{i}" for i in range(shape[0]))
        )
        if len(names) != shape[0]:
            raise ConfigError(
                f"stream {spec.name!r}: {len(names)} joint names given for {shape[0]} joints"
            )
    return TopicInfo(spec.name, topic, _full(kind[0]), kind[1], frame, names)


def _header(t_ns: int, frame_id: str) -> dict[str, Any]:
    sec, nsec = divmod(t_ns, 1_000_000_000)
    return {"stamp": {"sec": sec, "nanosec": nsec}, "frame_id": frame_id}


def encode_value(info: TopicInfo, spec: StreamSpec, t_ns: int, value: np.ndarray) -> dict[str, Any]:
    """Build the ROS 2 message (a dict for mcap_ros2's encoder) for one sample."""
    short = _short(info.message_type)
    enc = info.encoding
    if short == "sensor_msgs/Image":
        img = np.ascontiguousarray(value)
        if img.dtype.itemsize > 1:
            img = img.astype(img.dtype.newbyteorder("<"), copy=False)
        h, w = img.shape[:2]
        return {
            "header": _header(t_ns, info.frame_id),
            "height": h,
            "width": w,
            "encoding": enc,
            "is_bigendian": 0,
            "step": w * (img.shape[2] if img.ndim == 3 else 1) * img.dtype.itemsize,
            "data": img.tobytes(),
        }
    if short == "sensor_msgs/CompressedImage":
        cv2 = _cv2("writing CompressedImage")
        img = value
        if img.ndim == 3 and img.shape[2] == 3:
            img = cv2.cvtColor(img, cv2.COLOR_RGB2BGR)
        elif img.ndim == 3 and img.shape[2] == 4:
            img = cv2.cvtColor(img, cv2.COLOR_RGBA2BGRA)
        ext = ".png" if enc == "png" else ".jpg"
        ok, buf = cv2.imencode(ext, img)
        if not ok:
            raise ProtocolError(f"stream {spec.name!r}: OpenCV failed to encode a {enc} image")
        return {"header": _header(t_ns, info.frame_id), "format": enc, "data": buf.tobytes()}
    if short == "sensor_msgs/PointCloud2":
        pts = np.ascontiguousarray(value, dtype=np.dtype(spec.dtype).newbyteorder("<"))
        size = pts.dtype.itemsize
        datatype = 7 if size == 4 else 8
        return {
            "header": _header(t_ns, info.frame_id),
            "height": 1,
            "width": pts.shape[0],
            "fields": [
                {"name": n, "offset": i * size, "datatype": datatype, "count": 1}
                for i, n in enumerate("xyz")
            ],
            "is_bigendian": False,
            "point_step": 3 * size,
            "row_step": 3 * size * pts.shape[0],
            "data": pts.tobytes(),
            "is_dense": True,
        }
    if short == "sensor_msgs/LaserScan":
        n = value.shape[0]
        return {
            "header": _header(t_ns, info.frame_id),
            "angle_min": 0.0,
            "angle_max": 2 * math.pi * (n - 1) / n,
            "angle_increment": 2 * math.pi / n,
            "time_increment": 0.0,
            "scan_time": 1.0 / spec.rate_hz,
            "range_min": 0.0,
            "range_max": math.inf,
            "ranges": value.tolist(),
            "intensities": [],
        }
    if short == "geometry_msgs/WrenchStamped":
        f = value.tolist()
        return {
            "header": _header(t_ns, info.frame_id),
            "wrench": {
                "force": {"x": f[0], "y": f[1], "z": f[2]},
                "torque": {"x": f[3], "y": f[4], "z": f[5]},
            },
        }
    if short == "sensor_msgs/JointState":
        return {
            "header": _header(t_ns, info.frame_id),
            "name": list(info.joint_names),
            "position": value.tolist(),
            "velocity": [],
            "effort": [],
        }
    # std_msgs/*MultiArray
    dims, stride = [], int(np.prod(spec.shape))
    for i, size in enumerate(spec.shape):
        dims.append({"label": f"dim{i}", "size": size, "stride": stride})
        stride //= size
    flat = np.ascontiguousarray(value).reshape(-1)
    data: Any = (
        flat.astype(np.uint8).tobytes() if spec.dtype in ("uint8", "bool") else flat.tolist()
    )
    return {"layout": {"dim": dims, "data_offset": 0}, "data": data}


def _cv2(purpose: str) -> Any:
    from mmrobot.core.deps import require

    return require("cv2", purpose)


def message_stamp_ns(msg: Any, log_time_ns: int) -> int:
    """``header.stamp`` of a decoded message in ns, or ``log_time_ns`` when it has no header."""
    header = getattr(msg, "header", None)
    if header is None:
        return log_time_ns
    return int(header.stamp.sec) * 1_000_000_000 + int(header.stamp.nanosec)


def _fit_rows(arr: np.ndarray, n: int) -> np.ndarray:
    """Pad with zero rows (no return) or truncate to ``n`` rows, for variable-size clouds."""
    if arr.shape[0] == n:
        return arr
    out = np.zeros((n, *arr.shape[1:]), dtype=arr.dtype)
    k = min(n, arr.shape[0])
    out[:k] = arr[:k]
    return out


def decode_message(message_type: str, msg: Any, spec: StreamSpec, topic: str = "?") -> np.ndarray:
    """Turn a decoded ROS 2 message into a value of ``spec``'s shape and dtype.

    Works for our recordings and for ROS 2 bags recorded elsewhere: images in the common
    encodings (bgr is converted to our rgb), PointCloud2 with any point layout that has
    float x, y, z fields (rows padded with zeros or truncated to ``spec.shape[0]``),
    LaserScan (to ranges, or to (N, 3) points in the scan plane for a point spec),
    WrenchStamped, JointState positions and the std_msgs multi-arrays.

    Raises:
        ProtocolError: the message cannot be fitted to the spec (says what it holds).
    """
    short = _short(message_type)
    shape, dtype = spec.shape, np.dtype(spec.dtype)
    where = f"topic {topic!r} ({short}) -> stream {spec.name!r}"
    if short == "sensor_msgs/Image":
        enc = str(msg.encoding)
        if enc not in _IMAGE_ENCODINGS:
            raise ProtocolError(
                f"{where}: image encoding {enc!r} is not supported; supported: {sorted(_IMAGE_ENCODINGS)}"
            )
        el, ch = _IMAGE_ENCODINGS[enc]
        edt = np.dtype(el).newbyteorder(">" if msg.is_bigendian else "<")
        h, w, step = int(msg.height), int(msg.width), int(msg.step)
        raw = np.frombuffer(bytes(msg.data), dtype=np.uint8)
        if raw.size < h * step:
            raise ProtocolError(f"{where}: image data has {raw.size} bytes, expected {h * step}")
        rows = raw[: h * step].reshape(h, step)[:, : w * ch * edt.itemsize]
        img = np.ascontiguousarray(rows).view(edt).reshape(h, w, ch)
        if enc.startswith("bgr"):
            img = img[:, :, [2, 1, 0, 3][:ch]]
        return _fit_image(img, spec, where)
    if short == "sensor_msgs/CompressedImage":
        cv2 = _cv2("reading CompressedImage")
        img = cv2.imdecode(np.frombuffer(bytes(msg.data), dtype=np.uint8), cv2.IMREAD_UNCHANGED)
        if img is None:
            raise ProtocolError(f"{where}: OpenCV could not decode a {msg.format!r} image")
        if img.ndim == 3 and img.shape[2] == 3:
            img = cv2.cvtColor(img, cv2.COLOR_BGR2RGB)
        elif img.ndim == 3 and img.shape[2] == 4:
            img = cv2.cvtColor(img, cv2.COLOR_BGRA2RGBA)
        if img.ndim == 2:
            img = img[:, :, None]
        return _fit_image(img, spec, where)
    if short == "sensor_msgs/PointCloud2":
        fields = {str(f.name): f for f in msg.fields}
        missing = [k for k in "xyz" if k not in fields]
        if missing:
            raise ProtocolError(
                f"{where}: PointCloud2 has no field(s) {missing}; it has {sorted(fields)}"
            )
        order = ">" if msg.is_bigendian else "<"
        point_step, width, height = int(msg.point_step), int(msg.width), int(msg.height)
        row_step = int(msg.row_step) or width * point_step
        st = np.dtype(
            {
                "names": list("xyz"),
                "formats": [order + _POINTFIELD_DTYPES[int(fields[k].datatype)] for k in "xyz"],
                "offsets": [int(fields[k].offset) for k in "xyz"],
                "itemsize": point_step,
            }
        )
        raw = np.frombuffer(bytes(msg.data), dtype=np.uint8)
        rows = raw[: height * row_step].reshape(height, row_step)[:, : width * point_step]
        rec = np.ascontiguousarray(rows).reshape(-1).view(st)
        pts = np.stack([rec["x"], rec["y"], rec["z"]], axis=1).astype(dtype)
        if not np.all(np.isfinite(pts)):  # non-dense clouds mark missing points with NaN
            pts[~np.all(np.isfinite(pts), axis=1)] = 0
        if len(shape) != 2 or shape[1] != 3:
            raise ProtocolError(
                f"{where}: a point cloud needs a stream of shape (N, 3), spec has {shape}"
            )
        return _fit_rows(pts, shape[0])
    if short == "sensor_msgs/LaserScan":
        ranges = np.asarray(msg.ranges, dtype=np.float64)
        if len(shape) == 1:
            return _fit_rows(ranges.astype(dtype), shape[0])
        if len(shape) == 2 and shape[1] == 3:
            ang = float(msg.angle_min) + float(msg.angle_increment) * np.arange(ranges.size)
            ok = (
                np.isfinite(ranges)
                & (ranges >= float(msg.range_min))
                & (ranges <= float(msg.range_max))
            )
            r = np.where(ok, ranges, 0.0)
            pts = np.stack([r * np.cos(ang), r * np.sin(ang), np.zeros_like(r)], axis=1)
            return _fit_rows(pts.astype(dtype), shape[0])
        raise ProtocolError(
            f"{where}: a laser scan needs a stream of shape (N,) or (N, 3), spec has {shape}"
        )
    if short == "geometry_msgs/WrenchStamped":
        fo, to = msg.wrench.force, msg.wrench.torque
        out = np.array([fo.x, fo.y, fo.z, to.x, to.y, to.z], dtype=np.float64)
        return _fit_exact(out, spec, where)
    if short == "sensor_msgs/JointState":
        return _fit_exact(np.asarray(msg.position, dtype=np.float64), spec, where)
    if short.startswith("std_msgs/") and short.endswith("MultiArray"):
        data = msg.data
        arr = (
            np.frombuffer(bytes(data), dtype=np.uint8)
            if isinstance(data, (bytes, bytearray))
            else np.asarray(data)
        )
        arr = arr[int(msg.layout.data_offset) :]
        n = int(np.prod(shape))
        if arr.size != n:
            raise ProtocolError(f"{where}: {arr.size} values, stream shape {shape} needs {n}")
        return arr.reshape(shape).astype(dtype)
    raise ProtocolError(
        f"{where}: message type {message_type!r} is not supported; supported: "
        "sensor_msgs Image, CompressedImage, PointCloud2, LaserScan, JointState, "
        "geometry_msgs WrenchStamped, std_msgs *MultiArray"
    )


def _fit_image(img: np.ndarray, spec: StreamSpec, where: str) -> np.ndarray:
    h, w, ch = img.shape
    shape = spec.shape
    want = shape if len(shape) == 3 else (*shape, 1)
    if (h, w, ch) != tuple(want):
        raise ProtocolError(
            f"{where}: image is {h}x{w} with {ch} channel(s), the stream spec shape is {shape}; "
            "give a spec of the recorded shape"
        )
    return img.reshape(shape).astype(spec.dtype)


def _fit_exact(arr: np.ndarray, spec: StreamSpec, where: str) -> np.ndarray:
    if arr.shape != spec.shape:
        raise ProtocolError(
            f"{where}: message holds {arr.shape[0]} values, stream shape is {spec.shape}"
        )
    return arr.astype(spec.dtype)


# --------------------------------------------------------------------------- recorder


@dataclass(frozen=True, slots=True)
class StreamRecordStats:
    """Counters of one recorded stream.

    Attributes:
        written: messages written.
        dropped: samples overwritten in the StreamBuffer ring before the recorder read them
            (the recorder polled too slowly for the buffer's capacity).
        skipped: samples that cannot be stored in MCAP (negative ``t_ns``).
        first_t_ns, last_t_ns: stamps of the first and last written message (None if none).
    """

    written: int
    dropped: int
    skipped: int
    first_t_ns: int | None
    last_t_ns: int | None


@dataclass(frozen=True, slots=True)
class RecorderStats:
    """A snapshot of a :class:`Recorder`'s counters, per stream."""

    streams: Mapping[str, StreamRecordStats]
    bytes_written: int

    @property
    def written(self) -> int:
        return sum(s.written for s in self.streams.values())

    @property
    def dropped(self) -> int:
        return sum(s.dropped for s in self.streams.values())


class _Stream:
    __slots__ = (
        "buffer",
        "spec",
        "info",
        "schema",
        "seq",
        "written",
        "dropped",
        "skipped",
        "first",
        "last",
    )

    def __init__(self, buffer: Any, info: TopicInfo) -> None:
        self.buffer = buffer
        self.spec: StreamSpec = buffer.spec
        self.info = info
        self.schema: Any = None
        self.seq = buffer.count if hasattr(buffer, "count") else 0
        self.written = self.dropped = self.skipped = 0
        self.first: int | None = None
        self.last: int | None = None


def _declared_joint_names(driver: Any) -> tuple[str, ...] | None:
    """A driver's joint names: its ``joint_names``, else the ``joint`` of each configured servo."""
    names = getattr(driver, "joint_names", None)
    if names:
        return tuple(str(n) for n in names)
    servos = getattr(getattr(driver, "config", None), "servos", None)
    if servos and all(isinstance(getattr(s, "joint", None), str) for s in servos):
        return tuple(s.joint for s in servos)
    return None


def _collect_buffers(sources: Iterable[Any]) -> tuple[list[Any], dict[str, tuple[str, ...]]]:
    """StreamBuffers from buffers and drivers (anything with ``.buffers``), and the joint
    names drivers declare (a ``joint_names`` attribute) for their joints streams."""
    out: list[Any] = []
    names_of: dict[str, tuple[str, ...]] = {}
    for src in sources:
        bufs = getattr(src, "buffers", None)
        if bufs is not None:
            bufs = list(bufs.values() if isinstance(bufs, Mapping) else bufs)
            out.extend(bufs)
            joint_names = _declared_joint_names(src)
            if joint_names:
                for b in bufs:
                    spec = b.spec
                    if spec.modality in ("joints", "gripper") and spec.shape == (len(joint_names),):
                        names_of[spec.name] = tuple(str(n) for n in joint_names)
        elif hasattr(src, "read_since") and hasattr(src, "spec"):
            out.append(src)
        else:
            raise ConfigError(
                f"cannot record {type(src).__name__}: give StreamBuffers or drivers with .buffers"
            )
    names = [b.spec.name for b in out]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise ConfigError(
            f"stream name(s) {dupes} appear more than once; stream names must be unique"
        )
    if not out:
        raise ConfigError("nothing to record: no streams given")
    return out, names_of


class Recorder:
    """Drains StreamBuffers into an MCAP file of ROS 2 messages.

    Samples are read with :meth:`StreamBuffer.read_since`, so nothing is lost as long as the
    recorder polls before a buffer's ring wraps (capacity / rate seconds); anything lost is
    counted per stream in :attr:`stats` (``dropped``), logged, and written to the file.
    Only samples pushed after :meth:`open` are recorded.

    Args:
        path: output ``.mcap`` file (overwritten).
        sources: StreamBuffers, or drivers (their ``.buffers`` are taken).
        compression: chunk compression, ``"zstd"`` (default), ``"lz4"`` or ``"none"``.
        chunk_size: bytes of messages per chunk before it is compressed and written.
        image_format: ``"raw"`` (sensor_msgs/Image, exact), ``"png"`` (lossless) or
            ``"jpeg"`` (lossy) CompressedImage, for all camera streams, or a mapping
            stream -> format.
        joint_names: stream -> JointState names (default: the driver's ``joint_names`` when
            it has them, else ``<stream>_<i>``).
        frame_ids: stream -> ``header.frame_id`` (default the stream name).
        topics: stream -> topic (default ``/<stream>``).
        flush_interval_s: finish the open chunk and flush the file this often, bounding
            what a killed process loses; 0 disables (chunks end only at ``chunk_size``).
        poll_interval_s: period of the background thread started by :meth:`start`.

    Use as a context manager or call :meth:`open` / :meth:`close`; call :meth:`poll`
    yourself or :meth:`start` a background thread.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        sources: Iterable[Any],
        *,
        compression: str = "zstd",
        chunk_size: int = 1 << 20,
        image_format: str | Mapping[str, str] = "raw",
        joint_names: Mapping[str, Sequence[str]] | None = None,
        frame_ids: Mapping[str, str] | None = None,
        topics: Mapping[str, str] | None = None,
        flush_interval_s: float = 1.0,
        poll_interval_s: float = 0.02,
    ) -> None:
        if compression not in COMPRESSIONS:
            raise ConfigError(f"compression {compression!r} is not one of {COMPRESSIONS}")
        if chunk_size <= 0:
            raise ConfigError(f"chunk_size must be > 0 bytes, got {chunk_size}")
        self.path = Path(path)
        buffers, driver_joint_names = _collect_buffers(sources)
        known = {b.spec.name for b in buffers}
        for what, mapping in (
            ("joint_names", joint_names),
            ("frame_ids", frame_ids),
            ("topics", topics),
        ):
            if mapping:
                unknown = sorted(set(mapping) - known)
                if unknown:
                    raise ConfigError(
                        f"{what}: unknown stream(s) {unknown}; streams are {sorted(known)}"
                    )
        if isinstance(image_format, Mapping):
            unknown = sorted(set(image_format) - known)
            if unknown:
                raise ConfigError(
                    f"image_format: unknown stream(s) {unknown}; streams are {sorted(known)}"
                )
        self._streams: list[_Stream] = []
        used_topics: dict[str, str] = {}
        for b in buffers:
            name = b.spec.name
            fmt = (
                image_format.get(name, "raw") if isinstance(image_format, Mapping) else image_format
            )
            info = plan_topic(
                b.spec,
                image_format=fmt,
                topic=(topics or {}).get(name),
                frame_id=(frame_ids or {}).get(name),
                joint_names=(joint_names or {}).get(name, driver_joint_names.get(name)),
            )
            if info.topic in used_topics:
                raise ConfigError(
                    f"streams {used_topics[info.topic]!r} and {name!r} share topic {info.topic!r}"
                )
            used_topics[info.topic] = name
            self._streams.append(_Stream(b, info))
        self._compression = compression
        self._chunk_size = chunk_size
        self._flush_interval_s = flush_interval_s
        self._poll_interval_s = poll_interval_s
        self._lock = threading.Lock()
        self._file: IO[bytes] | None = None
        self._writer: Any = None
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self._thread_error: BaseException | None = None
        self._last_flush = 0.0
        self._closed = False

    @property
    def topics(self) -> tuple[TopicInfo, ...]:
        """How each stream is written (topic, message type, encoding)."""
        return tuple(s.info for s in self._streams)

    @property
    def is_open(self) -> bool:
        return self._writer is not None

    # -- lifecycle ----------------------------------------------------------------------

    def open(self) -> Recorder:
        """Create the file, write the header, schemas and stream specs."""
        if self._writer is not None or self._closed:
            raise LifecycleError(
                f"recorder for {self.path} is already {'closed' if self._closed else 'open'}"
            )
        from mcap.writer import CompressionType
        from mcap_ros2.writer import Writer

        if self.path.parent and not self.path.parent.exists():
            raise FileNotFoundError(
                f"output folder {self.path.parent} does not exist; create it first"
            )
        comp = {
            "zstd": CompressionType.ZSTD,
            "lz4": CompressionType.LZ4,
            "none": CompressionType.NONE,
        }
        self._file = open(self.path, "wb")  # noqa: SIM115 - closed in close()
        self._writer = Writer(
            self._file, chunk_size=self._chunk_size, compression=comp[self._compression]
        )
        self._writer.add_metadata(
            METADATA_RECORDING,
            {
                "format_version": str(FORMAT_VERSION),
                "writer": f"mmrobot {mmrobot.__version__}",
                "created_unix_ns": str(time.time_ns()),
                "stamps": "header.stamp = log_time = publish_time = measurement time t_ns on the host clock",
            },
        )
        self._writer.add_metadata(
            METADATA_STREAMS,
            {
                s.spec.name: json.dumps({"spec": s.spec.to_dict(), **s.info.to_dict()})
                for s in self._streams
            },
        )
        for s in self._streams:
            s.schema = self._writer.register_msgdef(
                s.info.message_type, msgdef_text(s.info.message_type)
            )
            s.seq = s.buffer.count
        self._flush_file()
        self._last_flush = time.monotonic()
        return self

    def start(self) -> Recorder:
        """Open (if needed) and poll in a background thread every ``poll_interval_s``."""
        if self._writer is None:
            self.open()
        if self._thread is not None:
            raise LifecycleError("recorder thread already started")
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="mmrobot-recorder", daemon=True)
        self._thread.start()
        return self

    def _run(self) -> None:
        while not self._stop.wait(self._poll_interval_s):
            try:
                self.poll()
            except BaseException as e:  # kept and re-raised by close()
                log.error("recording %s stopped: %s: %s", self.path, type(e).__name__, e)
                self._thread_error = e
                return

    def poll(self) -> int:
        """Write everything pushed since the last poll; returns the number of messages written."""
        if self._writer is None:
            raise LifecycleError(
                "Recorder.poll() before open(); use `with Recorder(...)` or call open()"
            )
        with self._lock:
            batch: list[tuple[int, int, _Stream, np.ndarray]] = []
            for k, s in enumerate(self._streams):
                times, values, s.seq, dropped = s.buffer.read_since(s.seq)
                if dropped:
                    if s.dropped == 0:
                        log.warning(
                            "recording %s: stream %r lost %d samples (ring overwritten before "
                            "the recorder read them); poll more often or raise the buffer capacity",
                            self.path,
                            s.spec.name,
                            dropped,
                        )
                    s.dropped += dropped
                for i in range(len(times)):
                    batch.append((int(times[i]), k, s, values[i]))
            batch.sort(key=lambda x: (x[0], x[1]))  # file in time order within a poll
            for t_ns, _, s, value in batch:
                if t_ns < 0:
                    s.skipped += 1
                    continue
                msg = encode_value(s.info, s.spec, t_ns, value)
                self._writer.write_message(
                    s.info.topic,
                    s.schema,
                    msg,
                    log_time=t_ns,
                    publish_time=t_ns,
                    sequence=s.written,
                )
                s.written += 1
                if s.first is None:
                    s.first = t_ns
                s.last = t_ns
            if (
                self._flush_interval_s > 0
                and time.monotonic() - self._last_flush >= self._flush_interval_s
            ):
                self._flush_chunk()
            return len(batch)

    def _flush_chunk(self) -> None:
        # mcap_ros2's Writer does not expose flush(); its mcap Writer does (finishes the chunk).
        inner = getattr(self._writer, "_writer", None)
        if inner is not None and hasattr(inner, "flush"):
            inner.flush()
        self._flush_file()
        self._last_flush = time.monotonic()

    def _flush_file(self) -> None:
        if self._file is not None:
            self._file.flush()

    def flush(self) -> None:
        """Finish the open chunk and flush it to disk (readable even if the process dies now)."""
        if self._writer is None:
            raise LifecycleError("Recorder.flush() before open()")
        with self._lock:
            self._flush_chunk()

    def close(self) -> RecorderStats:
        """Stop the thread, write what is left, the stats and the summary; close the file.

        Raises:
            Exception: whatever stopped the background thread, if anything did.
        """
        if self._writer is None:
            return self.stats
        if self._thread is not None:
            self._stop.set()
            self._thread.join(timeout=10.0)
            self._thread = None
        try:
            if self._thread_error is None:
                self.poll()
            stats = self.stats
            self._writer.add_metadata(
                METADATA_STATS,
                {
                    name: json.dumps(
                        {
                            "written": st.written,
                            "dropped": st.dropped,
                            "skipped": st.skipped,
                            "first_t_ns": st.first_t_ns,
                            "last_t_ns": st.last_t_ns,
                        }
                    )
                    for name, st in stats.streams.items()
                },
            )
            self._writer.finish()
        finally:
            if self._file is not None:
                self._file.close()
            self._writer = None
            self._closed = True
        if self._thread_error is not None:
            raise self._thread_error
        return self.stats

    def __enter__(self) -> Recorder:
        if self._writer is None:
            self.open()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def stats(self) -> RecorderStats:
        size = (
            self._file.tell()
            if self._file is not None and not self._file.closed
            else (self.path.stat().st_size if self.path.exists() else 0)
        )
        return RecorderStats(
            streams={
                s.spec.name: StreamRecordStats(s.written, s.dropped, s.skipped, s.first, s.last)
                for s in self._streams
            },
            bytes_written=size,
        )

    def __repr__(self) -> str:
        return f"Recorder({str(self.path)!r}, streams={[s.spec.name for s in self._streams]})"


# --------------------------------------------------------------------------- reading


@dataclass(frozen=True, slots=True)
class RecordingInfo:
    """What a file holds and whether it was complete.

    Attributes:
        path: the file.
        complete: True when the file ends with a valid footer (the writer finished).
        bytes_total: file size.
        bytes_read: bytes up to the end of the last complete record read.
        messages: messages read per topic.
        spans: topic -> (first, last) message log_time.
        topics: topic -> ROS 2 message type of every channel seen.
        specs: stream name -> StreamSpec from our ``mmrobot.streams`` metadata (empty for
            files recorded elsewhere).
        stream_topics: stream name -> TopicInfo from that metadata.
        start_ns, end_ns: smallest and largest message log_time (None when no message).
        error: why reading stopped early (None for a file read to its end).
        corrupt_chunks: chunks that failed their check and were skipped; their messages are
            not in ``messages``.
        chunks_checked: True when every chunk read so far was checked (a linear read, or
            ``inspect_recording(..., check_chunks=True)``); False for a summary-only look,
            which cannot know about corrupted chunks.
        orphan_messages: messages skipped because their channel was defined in a corrupted
            chunk (a cut-off file whose summary is gone).
    """

    path: Path
    complete: bool
    bytes_total: int
    bytes_read: int
    messages: Mapping[str, int]
    spans: Mapping[str, tuple[int, int]]
    topics: Mapping[str, str]
    specs: Mapping[str, StreamSpec]
    stream_topics: Mapping[str, TopicInfo]
    start_ns: int | None
    end_ns: int | None
    error: str | None = None
    corrupt_chunks: tuple[CorruptChunk, ...] = ()
    chunks_checked: bool = False
    orphan_messages: int = 0

    @property
    def message_count(self) -> int:
        return sum(self.messages.values())

    def describe(self) -> str:
        """A one-paragraph human summary, with the recovery message for a cut-off file."""
        n = self.message_count
        bad = describe_corruption(self.corrupt_chunks, self.orphan_messages)
        tail_bad = f"\n{bad}" if bad else ""
        if self.complete:
            return (
                f"{self.path}: complete MCAP, {n} messages on {len(self.topics)} topics." + tail_bad
            )
        rest = self.bytes_total - self.bytes_read
        tail = (
            f"the remaining {rest} bytes were an incomplete record (a chunk being written) "
            "and were skipped"
            if rest > 0
            else "the file ends after its last complete record"
        )
        return (
            f"{self.path}: incomplete MCAP (no footer; the writer was stopped before finishing). "
            f"Recovered {n} messages on {len(self.messages)} topics from the first "
            f"{self.bytes_read} of {self.bytes_total} bytes "
            f"({100.0 * self.bytes_read / max(1, self.bytes_total):.1f}%); {tail}. "
            f"Run `mmrobot replay {self.path} --recover OUT.mcap` to write a complete copy."
            + tail_bad
        )


def _check_mcap_path(path: str | os.PathLike[str]) -> Path:
    p = Path(path)
    if not p.exists():
        raise FileNotFoundError(f"recording {p} does not exist; give the path of an .mcap file")
    if p.is_dir():
        raise ConfigError(f"recording {p} is a folder; give the path of an .mcap file inside it")
    with open(p, "rb") as f:
        head = f.read(8)
    if head != MCAP_MAGIC:
        raise ConfigError(
            f"{p} is not an MCAP file (it starts with {head!r}, an MCAP file with "
            f"{MCAP_MAGIC!r}); record one with `mmrobot record` or convert a ROS 2 bag with "
            "`ros2 bag convert` to the mcap storage"
        )
    return p


def _specs_from_metadata(
    meta: Mapping[str, Mapping[str, str]], path: Path
) -> tuple[dict[str, StreamSpec], dict[str, TopicInfo]]:
    specs: dict[str, StreamSpec] = {}
    infos: dict[str, TopicInfo] = {}
    for name, text in meta.get(METADATA_STREAMS, {}).items():
        try:
            d = json.loads(text)
            specs[name] = StreamSpec.from_dict(d["spec"], where=f"{path}: stream {name!r}")
            infos[name] = TopicInfo(
                name,
                d["topic"],
                d["message_type"],
                d["encoding"],
                d.get("frame_id", ""),
                tuple(d.get("joint_names", ())),
            )
        except (KeyError, ValueError, TypeError) as e:
            raise ConfigError(f"{path}: metadata of stream {name!r} is malformed: {e}") from e
    return specs, infos


def _info_from_scan(path: Path, scan: Scan, complete: bool, checked: bool = True) -> RecordingInfo:
    specs, infos = _specs_from_metadata(scan.metadata, path)
    topics = {
        ch.topic: (scan.schemas[ch.schema_id].name if ch.schema_id in scan.schemas else "")
        for ch in scan.channels.values()
    }
    return RecordingInfo(
        path=path,
        complete=complete,
        bytes_total=path.stat().st_size,
        bytes_read=scan.bytes_read,
        messages=dict(scan.counts),
        spans=dict(scan.spans),
        topics=topics,
        specs=specs,
        stream_topics=infos,
        start_ns=scan.start,
        end_ns=scan.end,
        error=None if complete else scan.error,
        corrupt_chunks=tuple(scan.corrupt),
        chunks_checked=checked,
        orphan_messages=scan.orphans,
    )


def inspect_recording(path: str | os.PathLike[str], *, check_chunks: bool = False) -> RecordingInfo:
    """Say what a file holds (complete or cut off) without decoding messages.

    A complete file is described from its summary section (fast); a file without footer or
    summary is read linearly up to its last complete record, checking every chunk.

    Args:
        path: the ``.mcap`` file.
        check_chunks: also read and check every chunk of a complete file (reads the whole
            file), so that ``corrupt_chunks`` lists the corrupted ones and ``messages``
            leaves their messages out.

    Raises:
        FileNotFoundError: no such file.
        ConfigError: not an MCAP file, or our metadata in it is malformed.
    """
    p = _check_mcap_path(path)
    if has_footer(p):
        info = _inspect_summary(p, check_chunks)
        if info is not None:
            return info
    scan = Scan()
    for _ in linear_records(p, scan):
        pass
    return _info_from_scan(p, scan, complete=has_footer(p) and scan.error is None)


def _inspect_summary(p: Path, check_chunks: bool) -> RecordingInfo | None:
    """RecordingInfo from a finished file's summary, or None when it has no usable summary."""
    scan = summary_scan(p, check_chunks)
    return None if scan is None else _info_from_scan(p, scan, complete=True, checked=check_chunks)


def _with_corrupt(info: RecordingInfo, found: Sequence[CorruptChunk]) -> RecordingInfo:
    """``info`` plus the corrupted chunks a read came across (counts made to match)."""
    known = {c.offset for c in info.corrupt_chunks}
    new = sorted((c for c in found if c.offset not in known), key=lambda c: c.offset)
    if not new:
        return info
    # a summary-only info counted the messages of these chunks; a checked one did not
    messages = info.messages if info.chunks_checked else subtract_lost(info.messages, new)
    return replace(info, messages=messages, corrupt_chunks=(*info.corrupt_chunks, *new))


def _resolve_mapping(
    info: RecordingInfo, topics: Mapping[str, str | StreamSpec] | None
) -> dict[str, tuple[str, StreamSpec | None]]:
    """topic -> (stream name, spec or None to infer) for the streams to read."""
    out: dict[str, tuple[str, StreamSpec | None]] = {}
    if topics is None:
        if not info.specs:
            raise ConfigError(
                f"{info.path} has no mmrobot stream metadata (recorded elsewhere?); give a "
                f"topic -> stream mapping, e.g. {{'/camera/image_raw': 'scene_cam'}}; topics in "
                f"the file: {sorted(info.topics)}"
            )
        for name, spec in info.specs.items():
            out[info.stream_topics[name].topic] = (name, spec)
        return out
    by_topic = {ti.topic: n for n, ti in info.stream_topics.items()}
    for topic, target in topics.items():
        if topic not in info.topics:
            raise ConfigError(
                f"topic {topic!r} is not in {info.path}; topics there: "
                + ", ".join(f"{t} ({ty})" for t, ty in sorted(info.topics.items()))
            )
        if isinstance(target, StreamSpec):
            out[topic] = (target.name, target)
        else:
            known = info.specs.get(by_topic.get(topic, ""))
            spec = (
                StreamSpec.from_dict({**known.to_dict(), "name": target})
                if known is not None
                else None
            )
            out[topic] = (str(target), spec)
    names = [n for n, _ in out.values()]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise ConfigError(f"topic mapping gives stream name(s) {dupes} to more than one topic")
    return out


_INFER_MODALITY = {
    "sensor_msgs/Image": "camera",
    "sensor_msgs/CompressedImage": "camera",
    "sensor_msgs/PointCloud2": "lidar",
    "sensor_msgs/LaserScan": "lidar",
    "geometry_msgs/WrenchStamped": "force",
    "sensor_msgs/JointState": "joints",
}


def infer_spec(name: str, message_type: str, msg: Any, rate_hz: float) -> StreamSpec:
    """A StreamSpec for a foreign topic, from its first message (shape, dtype) and its rate."""
    short = _short(message_type)
    modality = _INFER_MODALITY.get(short, "other")
    policy = "causal"
    if short == "sensor_msgs/Image":
        el, ch = _IMAGE_ENCODINGS.get(str(msg.encoding), ("uint8", 3))
        shape: tuple[int, ...] = (
            (int(msg.height), int(msg.width), ch) if ch > 1 else (int(msg.height), int(msg.width))
        )
        dtype = el
        if el != "uint8":
            modality = "depth"
    elif short == "sensor_msgs/CompressedImage":
        cv2 = _cv2("reading CompressedImage")
        img = cv2.imdecode(np.frombuffer(bytes(msg.data), dtype=np.uint8), cv2.IMREAD_UNCHANGED)
        if img is None:
            raise ProtocolError(f"stream {name!r}: first CompressedImage could not be decoded")
        shape, dtype = tuple(int(d) for d in img.shape), img.dtype.name
    elif short == "sensor_msgs/PointCloud2":
        shape, dtype = (int(msg.width) * int(msg.height), 3), "float32"
    elif short == "sensor_msgs/LaserScan":
        shape, dtype = (len(msg.ranges), 3), "float32"
    elif short == "geometry_msgs/WrenchStamped":
        shape, dtype, policy = (6,), "float32", "interp"
    elif short == "sensor_msgs/JointState":
        shape, dtype, policy = (len(msg.position),), "float32", "interp"
    elif short.startswith("std_msgs/") and short.endswith("MultiArray"):
        dims = [int(d.size) for d in msg.layout.dim] or [len(msg.data)]
        shape = tuple(dims)
        el = short.split("/")[1].replace("MultiArray", "").lower()
        dtype = {"byte": "uint8"}.get(el, el)
    else:
        raise ProtocolError(
            f"stream {name!r}: cannot infer a spec for message type {message_type!r}"
        )
    max_age = max(100_000_000, round(3e9 / rate_hz))
    return StreamSpec(
        name=name,
        modality=modality,
        shape=shape,
        dtype=dtype,
        rate_hz=rate_hz,  # type: ignore[arg-type]
        policy=policy,
        max_age_ns=max_age,
    )  # type: ignore[arg-type]


def _rate(count: int, start: int | None, end: int | None) -> float:
    if count >= 2 and start is not None and end is not None and end > start:
        return (count - 1) * 1e9 / (end - start)
    return 1.0


def iter_messages(
    path: str | os.PathLike[str],
    topics: Mapping[str, str | StreamSpec] | None = None,
) -> tuple[RecordingInfo, dict[str, StreamSpec], Iterator[tuple[str, int, np.ndarray]]]:
    """Open a recording for reading: its info, the stream specs, and a time-ordered iterator.

    Args:
        path: an MCAP file: ours (specs come from its metadata) or a ROS 2 bag recorded
            elsewhere (then ``topics`` is required).
        topics: topic -> stream name, or topic -> StreamSpec, selecting and renaming topics;
            None for every stream of one of our recordings. For a foreign topic given by
            name, the spec is inferred from its first message and its mean rate.

    Returns:
        info, specs (stream name -> spec), and an iterator of ``(stream, t_ns, value)`` in
        log-time order, where ``t_ns`` is ``header.stamp`` (``log_time`` for messages without
        a header) and ``value`` has the spec's shape and dtype. A complete file is read
        through its index with bounded memory; a cut-off file is read linearly up to its
        last complete chunk and sorted in memory.

    Raises:
        FileNotFoundError: no such file.
        ConfigError: not an MCAP file, or a topic that is not in it (lists the topics).
    """
    info, specs, mapping = plan_reading(path, topics)
    return info, specs, decode_messages(info, mapping)


def plan_reading(
    path: str | os.PathLike[str],
    topics: Mapping[str, str | StreamSpec] | None = None,
) -> tuple[RecordingInfo, dict[str, StreamSpec], dict[str, tuple[str, StreamSpec]]]:
    """Check a file and a topic mapping: info, specs, and topic -> (stream, spec).

    See :func:`iter_messages` for the arguments and errors.
    """
    info = inspect_recording(path)
    partial = _resolve_mapping(info, topics)
    pending = [t for t, (_, s) in partial.items() if s is None]
    first = _first_messages(info, pending) if pending else {}
    mapping: dict[str, tuple[str, StreamSpec]] = {}
    for t, (name, spec) in partial.items():
        if spec is None:
            if t not in first:
                raise ConfigError(
                    f"topic {t!r} in {info.path} has no messages; cannot infer its stream spec"
                )
            mtype, msg = first[t]
            spec = infer_spec(
                name, mtype, msg, _rate(info.messages.get(t, 0), *_topic_span(info, t))
            )
        mapping[t] = (name, spec)
    specs = {name: spec for name, spec in mapping.values()}
    return info, specs, mapping


def _topic_span(info: RecordingInfo, topic: str) -> tuple[int | None, int | None]:
    return info.spans.get(topic, (None, None))


def _first_messages(info: RecordingInfo, topics: Sequence[str]) -> dict[str, tuple[str, Any]]:
    from mcap_ros2.decoder import DecoderFactory

    factory = DecoderFactory()
    out: dict[str, tuple[str, Any]] = {}
    scan = Scan()
    for schema, ch, rec in linear_records(info.path, scan):
        if ch.topic in topics and ch.topic not in out:
            dec = factory.decoder_for(ch.message_encoding, schema)
            if dec is None:
                raise ConfigError(
                    f"topic {ch.topic!r}: cannot decode {ch.message_encoding!r} messages "
                    "(only ROS 2 cdr with ros2msg schemas)"
                )
            out[ch.topic] = (schema.name, dec(rec.data))
            if len(out) == len(topics):
                break
    return out


def _raw_iter(
    info: RecordingInfo, topics: Sequence[str], on_corrupt: Callable[[CorruptChunk], None]
) -> Iterator[tuple[Any, Any, Any]]:
    """(schema, channel, message) of ``topics`` in log-time order, every chunk checked."""
    if info.complete:
        from mcap.reader import SeekingReader

        with open(info.path, "rb") as f:
            summary = SeekingReader(f).get_summary()
            if summary is not None and summary.chunk_indexes:
                yield from indexed_messages(f, summary, set(topics), on_corrupt)
                return
    scan = Scan()
    items = [x for x in linear_records(info.path, scan) if x[1].topic in topics]
    for c in scan.corrupt:
        if not c.topics or set(c.topics) & set(topics):
            on_corrupt(c)
    items.sort(key=lambda x: x[2].log_time)
    yield from items


def _log_corrupt(path: Path, chunk: CorruptChunk) -> None:
    log.warning("%s: %s", path, chunk.describe())


def decode_messages(
    info: RecordingInfo,
    mapping: Mapping[str, tuple[str, StreamSpec]],
    on_error: Callable[[str, Exception], None] | None = None,
    on_corrupt: Callable[[CorruptChunk], None] | None = None,
) -> Iterator[tuple[str, int, np.ndarray]]:
    """Yield ``(stream, t_ns, value)`` in log-time order for the mapped topics.

    Args:
        info: from :func:`inspect_recording`.
        mapping: topic -> (stream name, spec), from :func:`plan_reading`.
        on_error: called with (topic, error) for a message that cannot be decoded, which is
            then skipped; None raises instead.
        on_corrupt: called with each corrupted chunk met (always also logged as a warning
            with its topics and time range); its messages are skipped, never yielded.
    """
    from mcap_ros2.decoder import DecoderFactory

    def corrupt(chunk: CorruptChunk) -> None:
        _log_corrupt(info.path, chunk)
        if on_corrupt is not None:
            on_corrupt(chunk)

    factory = DecoderFactory()
    for schema, ch, rec in _raw_iter(info, list(mapping), corrupt):
        name, spec = mapping[ch.topic]
        try:
            dec = factory.decoder_for(ch.message_encoding, schema)
            if dec is None:
                raise ConfigError(
                    f"topic {ch.topic!r}: cannot decode {ch.message_encoding!r} messages "
                    "(only ROS 2 cdr with ros2msg schemas)"
                )
            msg = dec(rec.data)
            value = decode_message(schema.name, msg, spec, ch.topic)
        except Exception as e:
            if on_error is None:
                raise
            on_error(ch.topic, e)
            continue
        yield name, message_stamp_ns(msg, rec.log_time), value


@dataclass(frozen=True, slots=True)
class Recording:
    """A recording read into memory: per stream, stamps and values.

    Attributes:
        info: what the file holds and whether it was complete.
        specs: stream name -> StreamSpec.
        times: stream name -> (N,) int64 stamps (``header.stamp``), increasing.
        values: stream name -> (N, *spec.shape) values of the spec's dtype.
    """

    info: RecordingInfo
    specs: Mapping[str, StreamSpec]
    times: Mapping[str, np.ndarray]
    values: Mapping[str, np.ndarray]


def read_recording(
    path: str | os.PathLike[str], topics: Mapping[str, str | StreamSpec] | None = None
) -> Recording:
    """Read every message of the selected streams into memory (see :func:`iter_messages`).

    A file cut off mid-write is read up to its last complete chunk; ``info.complete`` is
    then False and ``info.describe()`` says how much was recovered (also logged). A
    corrupted chunk is skipped (logged); ``info.corrupt_chunks`` lists those met.
    """
    info, specs, mapping = plan_reading(path, topics)
    if not info.complete:
        log.warning("%s", info.describe())
    found: list[CorruptChunk] = []
    times: dict[str, list[int]] = {n: [] for n in specs}
    values: dict[str, list[np.ndarray]] = {n: [] for n in specs}
    for name, t_ns, value in decode_messages(info, mapping, on_corrupt=found.append):
        times[name].append(t_ns)
        values[name].append(value)
    return Recording(
        info=_with_corrupt(info, found),
        specs=specs,
        times={n: np.asarray(times[n], dtype=np.int64) for n in specs},
        values={
            n: (
                np.stack(values[n])
                if values[n]
                else np.zeros((0, *specs[n].shape), dtype=specs[n].dtype)
            )
            for n in specs
        },
    )


def recover_recording(
    path: str | os.PathLike[str], out: str | os.PathLike[str], *, compression: str = "zstd"
) -> RecordingInfo:
    """Copy every readable record of a (possibly cut-off) file into a complete, indexed MCAP.

    Schemas, channels (with their metadata), metadata records and messages are copied
    unchanged (no re-encoding); the output gets a summary and indexes, so any MCAP tool opens it.
    Corrupted chunks are left out (listed in the returned ``corrupt_chunks``, and logged).

    Returns:
        The input's :class:`RecordingInfo` (how much was recovered, what was left out).
    """
    from mcap.writer import CompressionType
    from mcap.writer import Writer as McapWriter

    src = _check_mcap_path(path)
    dst = Path(out)
    if dst.resolve() == src.resolve():
        raise ConfigError(f"--recover output {dst} is the input file; give another path")
    if compression not in COMPRESSIONS:
        raise ConfigError(f"compression {compression!r} is not one of {COMPRESSIONS}")
    comp = {"zstd": CompressionType.ZSTD, "lz4": CompressionType.LZ4, "none": CompressionType.NONE}
    scan = Scan()
    with open(dst, "wb") as f:
        w = McapWriter(f, compression=comp[compression])
        w.start(profile="ros2", library=f"mmrobot {mmrobot.__version__} (recovered)")
        schema_ids: dict[int, int] = {}
        channel_ids: dict[int, int] = {}
        meta_written: set[str] = set()
        for schema, ch, rec in linear_records(src, scan):
            for name, data in scan.metadata.items():
                if name not in meta_written:
                    w.add_metadata(name, data)
                    meta_written.add(name)
            if schema is not None and schema.id not in schema_ids:
                schema_ids[schema.id] = w.register_schema(schema.name, schema.encoding, schema.data)
            if ch.id not in channel_ids:
                channel_ids[ch.id] = w.register_channel(
                    ch.topic,
                    ch.message_encoding,
                    schema_ids.get(ch.schema_id, 0),
                    dict(ch.metadata),
                )
            w.add_message(
                channel_ids[ch.id], rec.log_time, rec.data, rec.publish_time, rec.sequence
            )
        for name, data in scan.metadata.items():
            if name not in meta_written:
                w.add_metadata(name, data)
        w.finish()
    for c in scan.corrupt:
        _log_corrupt(src, c)
    return _info_from_scan(src, scan, complete=has_footer(src) and scan.error is None)
