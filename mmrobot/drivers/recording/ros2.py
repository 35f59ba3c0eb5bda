"""Stream <-> ROS 2 message mapping: which message type a stream is written as, and the
encoding and decoding of each type (sensor_msgs Image, CompressedImage, PointCloud2,
LaserScan, JointState; geometry_msgs WrenchStamped; std_msgs *MultiArray).

Messages follow the ROS 2 interface packages field for field (see
:mod:`mmrobot.drivers.recording.msgdefs`); ``header.stamp`` is the sample's ``t_ns``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from mmrobot.core.errors import ConfigError, ProtocolError
from mmrobot.core.types import StreamSpec
from mmrobot.drivers.recording.msgdefs import MULTIARRAY_TYPES, full_type_name, short_type_name

ImageFormat = Literal["raw", "png", "jpeg"]
IMAGE_FORMATS: tuple[str, ...] = ("raw", "png", "jpeg")


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
        kind = (f"std_msgs/{MULTIARRAY_TYPES[dtype][0]}", "multiarray")
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
    return TopicInfo(spec.name, topic, full_type_name(kind[0]), kind[1], frame, names)


def _header(t_ns: int, frame_id: str) -> dict[str, Any]:
    sec, nsec = divmod(t_ns, 1_000_000_000)
    return {"stamp": {"sec": sec, "nanosec": nsec}, "frame_id": frame_id}


def encode_value(info: TopicInfo, spec: StreamSpec, t_ns: int, value: np.ndarray) -> dict[str, Any]:
    """Build the ROS 2 message (a dict for mcap_ros2's encoder) for one sample."""
    short = short_type_name(info.message_type)
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
    short = short_type_name(message_type)
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
    short = short_type_name(message_type)
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
