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
:mod:`mmrobot.drivers.recording.chunk_check`): a corrupted chunk is logged with its topics and time
range and skipped, never decoded as data; :attr:`RecordingInfo.corrupt_chunks` lists the
chunks skipped, and :func:`recover_recording` leaves them out of the copy.

The package: :mod:`~mmrobot.drivers.recording.format` (format version, metadata record names),
:mod:`~mmrobot.drivers.recording.msgdefs` (ROS 2 ``.msg`` definitions),
:mod:`~mmrobot.drivers.recording.ros2` (stream <-> ROS 2 message mapping, encode and decode per
message type), :mod:`~mmrobot.drivers.recording.writer` (:class:`Recorder`),
:mod:`~mmrobot.drivers.recording.reader` (inspect, map and read),
:mod:`~mmrobot.drivers.recording.recovery` (:func:`recover_recording`) and
:mod:`~mmrobot.drivers.recording.chunk_check` (chunk CRC checks).
"""

from __future__ import annotations

from mmrobot.drivers.recording.chunk_check import CorruptChunk
from mmrobot.drivers.recording.format import (
    COMPRESSIONS,
    FORMAT_VERSION,
    METADATA_RECORDING,
    METADATA_STATS,
    METADATA_STREAMS,
    Compression,
)
from mmrobot.drivers.recording.msgdefs import msgdef_text
from mmrobot.drivers.recording.reader import (
    Recording,
    RecordingInfo,
    decode_messages,
    inspect_recording,
    iter_messages,
    plan_reading,
    read_recording,
)
from mmrobot.drivers.recording.recovery import recover_recording
from mmrobot.drivers.recording.ros2 import (
    IMAGE_FORMATS,
    ImageFormat,
    TopicInfo,
    decode_message,
    encode_value,
    infer_spec,
    message_stamp_ns,
    plan_topic,
)
from mmrobot.drivers.recording.writer import Recorder, RecorderStats, StreamRecordStats

__all__ = [
    "COMPRESSIONS",
    "FORMAT_VERSION",
    "IMAGE_FORMATS",
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
    "message_stamp_ns",
    "msgdef_text",
    "plan_reading",
    "plan_topic",
    "read_recording",
    "recover_recording",
]
