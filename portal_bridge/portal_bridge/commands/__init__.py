"""The command types robot_bridge publishes, one module each, and their registry.

A new command type is one module defining ``TYPE`` (a :class:`CommandType`) plus its entry
below and its test; robot_bridge, the simulated robot, the safety logic and the parameter
descriptors all look types up here.
"""

from __future__ import annotations

from . import float64_multi_array, joint_state, joint_trajectory, twist
from .base import CommandType

__all__ = ['COMMANDS', 'COMMAND_INTERFACES', 'CommandType', 'command_type']

COMMANDS: dict[str, CommandType] = {
    t.name: t for t in (float64_multi_array.TYPE, joint_trajectory.TYPE, joint_state.TYPE, twist.TYPE)
}
COMMAND_INTERFACES = ('position', 'velocity', 'effort')


def command_type(name: str) -> CommandType:
    """The registered type ``name`` (KeyError naming the known ones)."""
    try:
        return COMMANDS[name]
    except KeyError:
        raise KeyError(f"command_type '{name}' must be one of {', '.join(COMMANDS)}") from None
