"""sensor_msgs/JointState as a command (joint names with positions), e.g. for topic_based_ros2_control."""

from __future__ import annotations

import array
from typing import Sequence

from sensor_msgs.msg import JointState

from .base import CommandType


def build(joints: Sequence[str], values: Sequence[float]) -> JointState:
    return JointState(name=list(joints), position=array.array('d', values))


def follow(msg: JointState, command_joints: Sequence[str]) -> tuple[list[str], list[float]]:
    return list(msg.name), list(msg.position)


TYPE = CommandType('joint_state', JointState, '/joint_command', build, follow)
