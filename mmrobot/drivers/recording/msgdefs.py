"""ROS 2 message definitions (``.msg`` text) of the types we write, as rosbag2 stores them.

Field for field from the ROS 2 interface packages (ros2/common_interfaces:
``sensor_msgs/msg/{Image,CompressedImage,PointCloud2,PointField,LaserScan,JointState}.msg``,
``geometry_msgs/msg/{WrenchStamped,Wrench,Vector3}.msg``, ``std_msgs/msg/{Header,
MultiArrayLayout,MultiArrayDimension,*MultiArray}.msg``; ros2/rcl_interfaces:
``builtin_interfaces/msg/Time.msg``); dependencies are appended after a line of ``=`` and a
``MSG: package/Type`` line (MCAP format registry, https://mcap.dev/spec/registry, "ros2msg").
"""

from __future__ import annotations

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
MULTIARRAY_TYPES: dict[str, tuple[str, str]] = {
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
for _name, _elem in set(MULTIARRAY_TYPES.values()):
    _DEFS[f"std_msgs/{_name}"] = f"std_msgs/MultiArrayLayout layout\n{_elem}[] data"
    _DEPS[f"std_msgs/{_name}"] = ("std_msgs/MultiArrayLayout",)


def short_type_name(type_name: str) -> str:
    """``sensor_msgs/msg/Image`` -> ``sensor_msgs/Image``."""
    parts = type_name.split("/")
    return f"{parts[0]}/{parts[-1]}" if len(parts) >= 2 else type_name


def full_type_name(short: str) -> str:
    """``sensor_msgs/Image`` -> ``sensor_msgs/msg/Image`` (the name rosbag2 gives schemas)."""
    pkg, name = short.split("/")
    return f"{pkg}/msg/{name}"


def msgdef_text(type_name: str) -> str:
    """The ROS 2 concatenated message definition of ``type_name`` with its dependencies."""
    short = short_type_name(type_name)
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
