"""Who is in the room: the one robot, the operators, and the active-operator pointer.

Participants are classified by their ``lk.portal.role`` attribute. A room has one robot: the first
participant with the robot role keeps it while it is in the room (or the one named by
``expected_robot``); anyone else setting the attribute is ignored and counted, so a participant
cannot take over the robot's identity by setting an attribute. After a reconnect the roster is
rebuilt from the room.
"""

from __future__ import annotations

from typing import Callable, Iterable, Optional

from livekit import rtc

from ..protocol import ROLE_ATTR, ROLE_OPERATOR, ROLE_ROBOT
from .events import Listeners, SessionParts

__all__ = ['Roster']


class Roster:
    """The room's robot and operators as this participant sees them."""

    def __init__(
        self,
        own_identity: Callable[[], str],
        on_robot_attributes: Callable[[dict[str, str]], None],
        parts: SessionParts,
    ) -> None:
        self._own_identity = own_identity
        self._on_robot_attributes = on_robot_attributes
        self._parts = parts
        tasks = parts.tasks
        self.robot_identity: Optional[str] = None
        self.robot_arrivals = 0  # bumped whenever a robot joins (or rejoins) the room
        self.expected_robot: Optional[str] = None  # if set, only this identity is taken as the robot
        self._operators: set[str] = set()
        self.operator_joined = Listeners('operator-joined', tasks)
        self.operator_left = Listeners('operator-left', tasks)

    def operators(self) -> list[str]:
        """Operators in the room, sorted, excluding this participant and the robot."""
        return sorted(self._operators - {self._own_identity(), self.robot_identity or ''})

    def clear(self) -> None:
        self.robot_identity = None
        self._operators.clear()

    def rebuild(self, participants: Iterable[rtc.Participant]) -> None:
        for participant in list(participants):
            self.classify(participant)

    def classify(self, participant: rtc.Participant) -> None:
        role = participant.attributes.get(ROLE_ATTR)
        ident = participant.identity
        if role == ROLE_ROBOT:
            if not self._accept_robot(ident):
                return
            if self.robot_identity != ident:
                self.robot_arrivals += 1
            self.robot_identity = ident
            self._on_robot_attributes(participant.attributes)
        elif role == ROLE_OPERATOR and ident not in self._operators:
            self._operators.add(ident)
            self.operator_joined.emit(ident)

    def left(self, ident: str) -> None:
        if ident in self._operators:
            self._operators.discard(ident)
            self.operator_left.emit(ident)
        if ident == self.robot_identity:
            self.robot_identity = None

    def _accept_robot(self, ident: str) -> bool:
        if self.expected_robot is not None:
            ok = ident == self.expected_robot
        else:
            current = self.robot_identity
            room = self._parts.room()
            ok = current is None or current == ident or room is None or current not in room.remote_participants
        if not ok:
            self._parts.metrics.drop('second-robot')
            self._parts.log_once(
                f'second-robot-{ident}',
                "[bad-payload] '%s' claims the robot role, but the robot is '%s'; ignored",
                ident,
                self.expected_robot or self.robot_identity,
            )
        return ok
