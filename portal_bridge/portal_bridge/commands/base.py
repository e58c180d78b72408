"""What a command type is: its message, its safety traits, and how to build and follow it."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Optional, Sequence

__all__ = ['CommandType']


@dataclass(frozen=True)
class CommandType:
    """One command message robot_bridge can publish (one module per type, see ``__init__``).

    ``build(joints, values)`` makes one command from values in ``joints`` order (for Twist the
    joints are the six Twist slots). ``trajectory(joints, rows, fps, start_s)`` makes one message
    from a whole chunk, for types that have one. ``stop_here(joints)`` is the e-stop's command
    for types that can say "stop where you are" without a measurement (an empty trajectory).
    ``follow(msg, command_joints)`` reads a command back as joint names and targets (the
    simulated robot follows it). ``timeout_policies``: the ``on_timeout`` values that are safe;
    ``hold_resends``: whether ``hold`` re-sends the last command (a trajectory controller holds
    its last point by itself, and re-sending a trajectory restarts it); ``default_interface``:
    what the command drives, which decides the e-stop's safe command. The defaults suit a
    position command: every policy allowed, hold re-sends.
    """

    name: str
    message: type
    default_topic: str
    build: Callable[[Sequence[str], Sequence[float]], Any]
    follow: Callable[[Any, Sequence[str]], tuple[list[str], list[float]]]
    timeout_policies: tuple[str, ...] = ('hold', 'zero', 'stop')
    hold_resends: bool = True
    default_interface: str = 'position'
    trajectory: Optional[Callable[[Sequence[str], Sequence[Sequence[float]], float, float], Any]] = None
    stop_here: Optional[Callable[[Sequence[str]], Any]] = None
    joint_based: bool = True
