"""Who may move the active-operator pointer through ``portal.set_active_operator``.

With no allow-list and no supervisors anyone may set any identity, as in livekit-portal; the
robot's app (and robot_bridge's local services) are trusted and not checked here.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

__all__ = ['AccessPolicy']


@dataclass(frozen=True)
class AccessPolicy:
    """Who may change the active operator through ``portal.set_active_operator``.

    With both sets empty anyone may set any identity (livekit-portal's behaviour). Otherwise:

    * a non-empty target must be in ``allowed_operators`` (when that set is not empty);
    * supervisors may assign or clear control without being allowed to drive themselves;
    * an allowed operator may claim control for itself, and the active operator may hand off
      or release; nobody else may change the pointer.
    """

    allowed_operators: frozenset[str] = frozenset()
    supervisors: frozenset[str] = frozenset()

    @property
    def open(self) -> bool:
        return not self.allowed_operators and not self.supervisors

    def may_drive(self, identity: Optional[str]) -> bool:
        return identity is None or not self.allowed_operators or identity in self.allowed_operators

    def may_stop(self, caller: str, is_operator: bool) -> Optional[str]:
        """Why ``caller`` may not latch the emergency stop over the network, or None if it may.

        Supervisors may; otherwise an operator in the room, and one in ``allowed_operators`` when
        that list is set. Stopping is never less safe than driving, but a stranger's stop would
        still stop someone else's work.
        """
        if caller in self.supervisors:
            return None
        if not is_operator:
            return f"'{caller}' is not an operator in the room"
        if self.allowed_operators and caller not in self.allowed_operators:
            return f"'{caller}' is neither an allowed operator nor a supervisor"
        return None

    def check(self, caller: str, requested: Optional[str], current: Optional[str]) -> Optional[str]:
        """Return why ``caller`` may not set the pointer to ``requested``, or None if it may."""
        if self.open:
            return None
        if not self.may_drive(requested):
            return f"'{requested}' is not in allowed_operators"
        if caller in self.supervisors:
            return None
        if self.allowed_operators and caller not in self.allowed_operators:
            return f"'{caller}' is neither an allowed operator nor a supervisor"
        if not self.allowed_operators and requested not in (None, caller):
            return f"'{caller}' is not a supervisor and may only claim control for itself"
        if requested == caller or current == caller:
            return None
        if requested is None:
            return f"only the active operator ('{current}') or a supervisor may release control"
        return f"only the active operator ('{current}') or a supervisor may hand control to '{requested}'"
