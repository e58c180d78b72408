"""Robot-side safety logic with no ROS in it: the action watchdog and the chunk player.

Portal itself stops forwarding when an operator goes quiet and never tells the controller
(forward_command_controller has no command timeout either). The watchdog notices silence from
the active operator and says so once per episode; the node then applies its ``on_timeout``
policy (hold, zero or stop). The chunk player steps through an action chunk one row per control
tick; a newer chunk or a single action replaces it.
"""

from __future__ import annotations

from typing import Optional, Sequence

__all__ = ['ActionWatchdog', 'ChunkPlayer', 'TIMEOUT_POLICIES']

TIMEOUT_POLICIES = ('hold', 'zero', 'stop')


class ActionWatchdog:
    """Trips when the active operator sent nothing for ``timeout_s`` (monotonic seconds)."""

    def __init__(self, timeout_s: float) -> None:
        if timeout_s <= 0:
            raise ValueError('action timeout must be > 0')
        self.timeout_s = timeout_s
        self.trips = 0
        self.tripped = False
        self.reason = ''
        self._operator: Optional[str] = None
        self._last_input = 0.0

    def arm(self, operator: Optional[str], now: float) -> None:
        """A new active operator (None disarms): the timeout counts from now."""
        self._operator = operator
        self._last_input = now
        self.tripped = False

    def feed(self, now: float) -> bool:
        """An accepted action or a played chunk row; True if this ends a tripped episode."""
        self._last_input = now
        recovered = self.tripped
        self.tripped = False
        return recovered

    def check(self, now: float) -> Optional[str]:
        """The reason, the first time the timeout is exceeded in an episode; else None."""
        if self._operator is None or self.tripped:
            return None
        silent = now - self._last_input
        if silent <= self.timeout_s:
            return None
        self.tripped = True
        self.trips += 1
        self.reason = (
            f"no action from active operator '{self._operator}' for {silent * 1000:.0f} ms "
            f'(action_timeout_ms={self.timeout_s * 1000:.0f})'
        )
        return self.reason


class ChunkPlayer:
    """Plays the rows of the latest action chunk, one per tick."""

    def __init__(self) -> None:
        self._rows: list[Sequence[float]] = []
        self._next = 0

    def load(self, rows: Sequence[Sequence[float]]) -> None:
        self._rows = list(rows)
        self._next = 0

    def clear(self) -> None:
        self._rows = []
        self._next = 0

    @property
    def playing(self) -> bool:
        return self._next < len(self._rows)

    def step(self) -> Optional[Sequence[float]]:
        """The next row, or None when the chunk is exhausted."""
        if self._next >= len(self._rows):
            return None
        row = self._rows[self._next]
        self._next += 1
        return row
