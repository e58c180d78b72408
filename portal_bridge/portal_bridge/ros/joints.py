"""Joint states to Portal state values, and Portal actions to command messages.

Joints are always matched by name, never by position in a message: controllers, broadcasters
and policies each order joints their own way. A state field names the joint it reads
(``shoulder``), optionally with the interface (``shoulder/velocity``, ``shoulder/effort``);
a command joint names the action field that drives it. The messages themselves are built by
the command types in :mod:`portal_bridge.commands`.
"""

from __future__ import annotations

from dataclasses import dataclass
import math
from typing import Any, Optional, Sequence

from sensor_msgs.msg import JointState

from ..commands import COMMANDS, command_type
from ..commands.twist import SLOTS as TWIST_SLOTS

__all__ = [
    'COMMAND_TYPES',
    'TWIST_SLOTS',
    'StateMapping',
    'CommandBuilder',
    'MappingError',
]

COMMAND_TYPES = tuple(COMMANDS)
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
    """Maps action values (contract order) onto a command type's joints and builds its messages."""

    def __init__(
        self,
        command_type_name: str,
        action_fields: Sequence[str],
        command_joints: Sequence[str] = (),
        command_fields: Sequence[str] = (),
        twist_fields: Sequence[str] = (),
        point_time_s: float = 0.0,
    ) -> None:
        try:
            self.kind = command_type(command_type_name)
        except KeyError as exc:
            raise MappingError(exc.args[0]) from None
        self.command_type = command_type_name
        self.action_fields = tuple(action_fields)
        index = {f: i for i, f in enumerate(self.action_fields)}
        self.point_time_s = point_time_s
        if not self.kind.joint_based:
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

    def build(self, values: Sequence[float]) -> Any:
        """One command message from one action (values in contract order)."""
        if not self.kind.joint_based:
            return self.kind.build(TWIST_SLOTS, [0.0 if i is None else float(values[i]) for i in self.twist_index])
        if self.kind.trajectory is not None:  # a type with a whole-chunk form: one point per action
            return self.kind.trajectory(self.joints, [self._ordered(values)], 1.0, self.point_time_s)
        return self.kind.build(self.joints, self._ordered(values))

    def build_trajectory(self, rows: Sequence[Sequence[float]], fps: float, start_s: float = 0.0) -> Any:
        """A whole action chunk as one trajectory: row ``r`` at ``time_from_start = start_s + r / fps``."""
        trajectory = self.kind.trajectory or command_type('joint_trajectory').trajectory
        return trajectory(self.joints, [self._ordered(row) for row in rows], fps, start_s)

    def empty_trajectory(self) -> Any:
        """A trajectory with no points: joint_trajectory_controller stops and holds where it is."""
        return command_type('joint_trajectory').stop_here(self.joints)

    def build_positions(self, measured: dict[str, float]) -> Any:
        """A position command at the measured positions of the command joints (None if one is unknown).

        The e-stop of a position-controlled arm: stop where it is, not continue to the last target.
        """
        if not self.kind.joint_based or any(j not in measured for j in self.joints):
            return None
        positions = [float(measured[j]) for j in self.joints]
        if self.kind.trajectory is not None:  # a type with a whole-chunk form: one point per action
            return self.kind.trajectory(self.joints, [positions], 1.0, 0.0)
        return self.kind.build(self.joints, positions)

    def zeros(self) -> Any:
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
