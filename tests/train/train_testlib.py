"""Shared helpers of the training and evaluation tests."""

from __future__ import annotations


def tiny_specs():
    """The streams of a 32 px simulated rig with a 64-ray lidar."""
    from mmrobot.envs.sensors import SensorSuiteConfig

    return SensorSuiteConfig(image_size=32, lidar_rays=64).stream_specs()
