"""std_msgs/Float64MultiArray for forward_command_controller (positions, velocities or efforts)."""

from __future__ import annotations

import array
from typing import Sequence

from std_msgs.msg import Float64MultiArray

from .base import CommandType


def build(joints: Sequence[str], values: Sequence[float]) -> Float64MultiArray:
    return Float64MultiArray(data=array.array('d', values))


def follow(msg: Float64MultiArray, command_joints: Sequence[str]) -> tuple[list[str], list[float]]:
    return list(command_joints), list(msg.data)


TYPE = CommandType('float64_multi_array', Float64MultiArray, '/forward_position_controller/commands', build, follow)
