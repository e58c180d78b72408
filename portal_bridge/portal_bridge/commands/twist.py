"""geometry_msgs/Twist for mobile bases: six velocity slots fed by action fields.

``hold`` is not offered: a held velocity keeps the base driving after its operator went quiet.
"""

from __future__ import annotations

from typing import Sequence

from geometry_msgs.msg import Twist

from .base import CommandType

SLOTS = ('linear_x', 'linear_y', 'linear_z', 'angular_x', 'angular_y', 'angular_z')


def build(slots: Sequence[str], values: Sequence[float]) -> Twist:
    v = [float(x) for x in values]
    msg = Twist()
    msg.linear.x, msg.linear.y, msg.linear.z = v[0], v[1], v[2]
    msg.angular.x, msg.angular.y, msg.angular.z = v[3], v[4], v[5]
    return msg


def follow(msg: Twist, command_joints: Sequence[str]) -> tuple[list[str], list[float]]:
    return list(SLOTS), [msg.linear.x, msg.linear.y, msg.linear.z, msg.angular.x, msg.angular.y, msg.angular.z]


TYPE = CommandType(
    name='twist',
    message=Twist,
    default_topic='/cmd_vel',
    timeout_policies=('zero', 'stop'),
    hold_resends=False,
    default_interface='velocity',
    build=build,
    follow=follow,
    joint_based=False,
)
