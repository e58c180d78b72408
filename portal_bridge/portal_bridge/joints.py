"""Joint states to Portal state values, and Portal actions to ros2_control command messages.

Joints are always matched by name, never by position in a message: controllers, broadcasters
and policies each order joints their own way. A state field names the joint it reads
(``shoulder``), optionally with the interface (``shoulder/velocity``, ``shoulder/effort``);
a command joint names the action field that drives it.
"""

from __future__ import annotations

import array
from dataclasses import dataclass
import math
from typing import Optional, Sequence

from geometry_msgs.msg import Twist
from sensor_msgs.msg import JointState
from std_msgs.msg import Float64MultiArray
from trajectory_msgs.msg import JointTrajectory, JointTrajectoryPoint

from .ros_time import seconds_to_duration

__all__ = [
    'COMMAND_INTERFACES',
    'COMMAND_KINDS',
    'COMMAND_MESSAGES',
    'COMMAND_TYPES',
    'CommandKind',
    'TWIST_SLOTS',
    'StateMapping',
    'CommandBuilder',
    'MappingError',
]

COMMAND_MESSAGES = {
    'float64_multi_array': Float64MultiArray,
    'joint_trajectory': JointTrajectory,
    'joint_state': JointState,
    'twist': Twist,
}
COMMAND_TYPES = tuple(COMMAND_MESSAGES)


@dataclass(frozen=True)
class CommandKind:
    """What the safety logic needs to know about a command type.

    ``timeout_policies``: the ``on_timeout`` values that are safe for it (``hold`` keeps a
    Twist base driving, so Twist does not allow it). ``hold_resends``: whether ``hold`` re-sends
    the last command; a trajectory controller holds its last point by itself, and re-sending a
    trajectory would restart it. ``default_interface``: what the command drives, which decides
    the e-stop's safe command (velocity and effort: zeros; position: the measured positions).
    """

    name: str
    timeout_policies: tuple[str, ...]
    hold_resends: bool
    default_interface: str


COMMAND_KINDS = {
    'float64_multi_array': CommandKind('float64_multi_array', ('hold', 'zero', 'stop'), True, 'position'),
    'joint_trajectory': CommandKind('joint_trajectory', ('hold', 'zero', 'stop'), False, 'position'),
    'joint_state': CommandKind('joint_state', ('hold', 'zero', 'stop'), True, 'position'),
    'twist': CommandKind('twist', ('zero', 'stop'), False, 'velocity'),
}
COMMAND_INTERFACES = ('position', 'velocity', 'effort')
TWIST_SLOTS = ('linear_x', 'linear_y', 'linear_z', 'angular_x', 'angular_y', 'angular_z')
_INTERFACES = ('position', 'velocity', 'effort')


class MappingError(ValueError):
    """A joint or field mapping that cannot work with the wire contract."""


@dataclass(frozen=True)
class _Source:
    joint: str
    interface: str


class StateMapping:
    """Reads the contract's state fields out of ``sensor_msgs/JointState`` messages by name."""

    def __init__(self, fields: Sequence[str], sources: Sequence[str]) -> None:
        if len(sources) != len(fields):
            raise MappingError(f'state_joints has {len(sources)} entries, the contract has {len(fields)} state fields')
        self.fields = tuple(fields)
        self.sources = tuple(self._parse(s) for s in sources)

    @staticmethod
    def _parse(text: str) -> _Source:
        # Joint names may contain '/' (namespaced robots): only a known interface after the last
        # '/' is one.
        joint, sep, interface = text.rpartition('/')
        if not sep or interface not in _INTERFACES:
            joint, interface = text, 'position'
        if not joint or joint.endswith('/') or text.endswith('/'):
            raise MappingError(f"state joint '{text}' must be '<joint>' or '<joint>/{'|'.join(_INTERFACES)}'")
        return _Source(joint, interface)

    def extract(self, msg: JointState) -> tuple[dict[str, float], list[str]]:
        """Values of the fields whose joint is in ``msg``; also the fields it lacks (carried forward)."""
        index = {name: i for i, name in enumerate(msg.name)}
        values: dict[str, float] = {}
        missing: list[str] = []
        for field, src in zip(self.fields, self.sources):
            i = index.get(src.joint)
            seq = getattr(msg, src.interface)
            if i is None or i >= len(seq):
                missing.append(field)
                continue
            values[field] = float(seq[i])
        return values, missing


class CommandBuilder:
    """Builds the command message a controller expects from action values in contract order."""

    def __init__(
        self,
        command_type: str,
        action_fields: Sequence[str],
        command_joints: Sequence[str] = (),
        command_fields: Sequence[str] = (),
        twist_fields: Sequence[str] = (),
        point_time_s: float = 0.0,
    ) -> None:
        if command_type not in COMMAND_TYPES:
            raise MappingError(f"command_type '{command_type}' must be one of {', '.join(COMMAND_TYPES)}")
        self.command_type = command_type
        self.action_fields = tuple(action_fields)
        index = {f: i for i, f in enumerate(self.action_fields)}
        self.point_time_s = point_time_s
        if command_type == 'twist':
            slots = list(twist_fields) or [f if f in index else '' for f in TWIST_SLOTS]
            if len(slots) != 6:
                raise MappingError('twist_fields needs 6 entries: linear x, y, z, angular x, y, z (empty for zero)')
            self.twist_index = [self._lookup(index, f, 'twist_fields') if f else None for f in slots]
            if all(i is None for i in self.twist_index):
                raise MappingError('no action field drives the Twist: name them in twist_fields')
            self.joints: tuple[str, ...] = ()
            self.index: list[int] = []
            return
        joints = list(command_joints) or list(self.action_fields)
        fields = list(command_fields) or joints
        if len(fields) != len(joints):
            raise MappingError(f'command_fields has {len(fields)} entries, command_joints has {len(joints)}')
        self.joints = tuple(joints)
        self.index = [self._lookup(index, f, 'command_fields') for f in fields]

    @staticmethod
    def _lookup(index: dict[str, int], field: str, param: str) -> int:
        if field not in index:
            raise MappingError(f"{param}: '{field}' is not an action field of the wire contract ({', '.join(index)})")
        return index[field]

    def _ordered(self, values: Sequence[float]) -> list[float]:
        return [float(values[i]) for i in self.index]

    def build(self, values: Sequence[float]):
        """One command message from one action (values in contract order)."""
        t = self.command_type
        if t == 'twist':
            v = [0.0 if i is None else float(values[i]) for i in self.twist_index]
            msg = Twist()
            msg.linear.x, msg.linear.y, msg.linear.z = v[0], v[1], v[2]
            msg.angular.x, msg.angular.y, msg.angular.z = v[3], v[4], v[5]
            return msg
        ordered = self._ordered(values)
        if t == 'float64_multi_array':
            return Float64MultiArray(data=array.array('d', ordered))
        if t == 'joint_state':
            return JointState(name=list(self.joints), position=array.array('d', ordered))
        point = JointTrajectoryPoint(
            positions=array.array('d', ordered), time_from_start=seconds_to_duration(self.point_time_s)
        )
        return JointTrajectory(joint_names=list(self.joints), points=[point])

    def build_trajectory(self, rows: Sequence[Sequence[float]], fps: float, start_s: float = 0.0) -> JointTrajectory:
        """A whole action chunk as one trajectory: row ``r`` at ``time_from_start = start_s + r / fps``."""
        points = [
            JointTrajectoryPoint(
                positions=array.array('d', self._ordered(row)),
                time_from_start=seconds_to_duration(start_s + r / fps),
            )
            for r, row in enumerate(rows)
        ]
        return JointTrajectory(joint_names=list(self.joints), points=points)

    def empty_trajectory(self) -> JointTrajectory:
        """A trajectory with no points: joint_trajectory_controller stops and holds where it is."""
        return JointTrajectory(joint_names=list(self.joints), points=[])

    def build_positions(self, measured: dict[str, float]):
        """A position command at the measured positions of the command joints (None if one is unknown).

        The e-stop of a position-controlled arm: stop where it is, not continue to the last target.
        """
        if self.command_type == 'twist' or any(j not in measured for j in self.joints):
            return None
        positions = array.array('d', (measured[j] for j in self.joints))
        if self.command_type == 'float64_multi_array':
            return Float64MultiArray(data=positions)
        if self.command_type == 'joint_state':
            return JointState(name=list(self.joints), position=positions)
        point = JointTrajectoryPoint(positions=positions, time_from_start=seconds_to_duration(0.0))
        return JointTrajectory(joint_names=list(self.joints), points=[point])

    def zeros(self):
        """The all-zero command (a stop for velocity controllers and Twist)."""
        return self.build([0.0] * len(self.action_fields))


def nan_fields(names: Sequence[str], values: Sequence[float]) -> list[str]:
    return [n for n, v in zip(names, values) if math.isnan(v)]


def apply_limits(
    values: Sequence[float], lower: Optional[Sequence[float]], upper: Optional[Sequence[float]]
) -> tuple[list[float], list[int]]:
    """Clamp into [lower, upper]; also return the indices that were outside."""
    out = list(values)
    outside = []
    if lower is None or upper is None:
        return out, outside
    for i, (v, lo, hi) in enumerate(zip(out, lower, upper)):
        if v < lo or v > hi:
            outside.append(i)
            out[i] = min(max(v, lo), hi)
    return out, outside
