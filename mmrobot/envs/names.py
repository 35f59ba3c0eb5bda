"""MJCF element names of the tabletop scene (``envs/tabletop.xml``), in one place.

Code refers to scene elements only through these constants; the scene file mirrors them.
"""

from __future__ import annotations

__all__ = [
    "ARM_ACTUATORS",
    "ARM_JOINTS",
    "BIN_BODY",
    "BIN_INNER_HALF_M",
    "BLOCK_HALF_SIZES_M",
    "COLORS",
    "FINGER_GEOMS",
    "FINGER_JOINTS",
    "FT_FORCE_SENSOR",
    "FT_TORQUE_SENSOR",
    "GRIPPER_ACTUATOR",
    "GRIPPER_MAX_OPENING_M",
    "HAND_BODY",
    "LIDAR_SITE",
    "SCENE_CAMERA",
    "SIZES",
    "TABLE_TOP_GEOM",
    "TCP_SITE",
    "WRIST_CAMERA",
    "ZONES",
    "ZONE_RADIUS_M",
    "BASE_BODY",
    "KEY_LIGHT",
    "block_body",
    "block_geom",
    "block_joint",
    "zone_geom",
]

ARM_JOINTS: tuple[str, ...] = (
    "shoulder_pan",
    "shoulder_lift",
    "elbow",
    "wrist_roll",
    "wrist_pitch",
    "tool_roll",
)
ARM_ACTUATORS: tuple[str, ...] = tuple(f"{j}_act" for j in ARM_JOINTS)
FINGER_JOINTS: tuple[str, str] = ("finger_left_joint", "finger_right_joint")
#: The finger pads' collision geoms (a block touched by both is held).
FINGER_GEOMS: tuple[str, str] = ("finger_left_geom", "finger_right_geom")
GRIPPER_ACTUATOR = "gripper_act"
#: Distance between the finger pads when fully open (each finger travels 0.04 m).
GRIPPER_MAX_OPENING_M = 0.08

BASE_BODY = "base"
HAND_BODY = "hand"
TCP_SITE = "tcp_site"
LIDAR_SITE = "lidar_site"
SCENE_CAMERA = "scene_cam"
WRIST_CAMERA = "wrist_cam"
FT_FORCE_SENSOR = "ft_force"
FT_TORQUE_SENSOR = "ft_torque"
TABLE_TOP_GEOM = "table_top"
BIN_BODY = "bin"
#: Half extent of the bin's inner floor (square), metres.
BIN_INNER_HALF_M = 0.085
KEY_LIGHT = "key_light"

COLORS: tuple[str, ...] = ("red", "green", "blue", "yellow")
SIZES: tuple[str, ...] = ("small", "large")
#: Half edge length of each block size (cubes), metres.
BLOCK_HALF_SIZES_M: dict[str, float] = {"small": 0.02, "large": 0.028}
ZONES: tuple[str, ...] = ("left", "right")
ZONE_RADIUS_M = 0.06


def block_body(color: str, size: str) -> str:
    """Body name of the block of ``color`` and ``size``."""
    return f"block_{color}_{size}"


def block_geom(color: str, size: str) -> str:
    return f"block_{color}_{size}_geom"


def block_joint(color: str, size: str) -> str:
    return f"block_{color}_{size}_joint"


def zone_geom(zone: str) -> str:
    return f"zone_{zone}"
