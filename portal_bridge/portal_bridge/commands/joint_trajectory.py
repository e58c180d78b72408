"""trajectory_msgs/JointTrajectory for joint_trajectory_controller: one point per action, a chunk whole.

A single action is a one-point trajectory reached in one contract period; a chunk is one
trajectory with row ``r`` at ``start_s + r / fps``. An empty trajectory makes the controller stop
and hold where it is, the e-stop's command. ``hold`` publishes nothing more: the controller holds
its last point by itself.
"""

from __future__ import annotations

import array
from typing import Sequence

from trajectory_msgs.msg import JointTrajectory, JointTrajectoryPoint

from ..ros.stamps import seconds_to_duration
from .base import CommandType


def point(values: Sequence[float], t: float) -> JointTrajectoryPoint:
    return JointTrajectoryPoint(positions=array.array('d', values), time_from_start=seconds_to_duration(t))


def trajectory(joints: Sequence[str], rows: Sequence[Sequence[float]], fps: float, start_s: float) -> JointTrajectory:
    return JointTrajectory(
        joint_names=list(joints), points=[point(row, start_s + r / fps) for r, row in enumerate(rows)]
    )


def stop_here(joints: Sequence[str]) -> JointTrajectory:
    return JointTrajectory(joint_names=list(joints), points=[])


def follow(msg: JointTrajectory, command_joints: Sequence[str]) -> tuple[list[str], list[float]]:
    if not msg.points:
        return [], []
    return list(msg.joint_names), list(msg.points[-1].positions)


TYPE = CommandType(
    name='joint_trajectory',
    message=JointTrajectory,
    default_topic='/joint_trajectory_controller/joint_trajectory',
    hold_resends=False,
    build=lambda joints, values: JointTrajectory(joint_names=list(joints), points=[point(values, 0.0)]),
    follow=follow,
    trajectory=trajectory,
    stop_here=stop_here,
)
