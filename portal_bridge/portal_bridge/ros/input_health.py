"""Whether each input of a node is alive: a publisher on its topic, and messages not too old.

A robot_bridge whose camera driver is not running sends nothing on that track and, without this,
says nothing about it either. Each input (a camera topic, joint_states) is marked when a message
arrives; once a second the node asks for the state of each, given how many publishers its topic
has. A change of state is reported once (the node logs it); the states and ages go to
``/diagnostics``. No ROS here: the node passes in the clock and the publisher counts.
"""

from __future__ import annotations

from dataclasses import dataclass
import math
from typing import Iterable, Optional

__all__ = ['FRESH', 'NO_PUBLISHER', 'SILENT', 'WAITING', 'InputHealth', 'InputStatus', 'summary']

FRESH = 'fresh'  # a message within the timeout
WAITING = 'waiting'  # a publisher, but no message yet
SILENT = 'silent'  # messages stopped for longer than the timeout
NO_PUBLISHER = 'no publisher'
HEALTHY = (FRESH,)


@dataclass(frozen=True)
class InputStatus:
    name: str
    topic: str
    state: str
    age_s: Optional[float]  # since the last message; None before the first
    publishers: int

    @property
    def healthy(self) -> bool:
        return self.state in HEALTHY

    def describe(self) -> str:
        if self.state == NO_PUBLISHER:
            return f'{self.name}: no publisher on {self.topic}'
        if self.state == WAITING:
            return f'{self.name}: {self.publishers} publisher(s) on {self.topic}, no message yet'
        if self.state == SILENT:
            return f'{self.name}: nothing on {self.topic} for {self.age_s:.1f} s'
        return f'{self.name}: {self.topic} fresh'


class InputHealth:
    """The inputs of one node; ``seen`` may be called from any thread (one float store)."""

    def __init__(self, timeout_s: float) -> None:
        if not (timeout_s > 0 and math.isfinite(timeout_s)):
            raise ValueError('input timeout must be a finite number > 0')
        self.timeout_s = timeout_s
        self._topics: dict[str, str] = {}
        self._last: dict[str, Optional[float]] = {}
        self._states: dict[str, Optional[str]] = {}

    def add(self, name: str, topic: str) -> None:
        self._topics[name] = topic
        self._last[name] = None
        self._states[name] = None

    @property
    def names(self) -> list[str]:
        return list(self._topics)

    def topic(self, name: str) -> str:
        return self._topics[name]

    def seen(self, name: str, now: float) -> None:
        self._last[name] = now

    def evaluate(self, now: float, publishers: dict[str, int]) -> tuple[list[InputStatus], list[InputStatus]]:
        """The status of every input, and those whose state changed since the last call."""
        statuses, changed = [], []
        for name, topic in self._topics.items():
            last = self._last[name]
            count = publishers.get(name, 0)
            age = None if last is None else max(now - last, 0.0)
            if age is not None and age <= self.timeout_s:
                state = FRESH
            elif count == 0:
                state = NO_PUBLISHER
            elif age is None:
                state = WAITING
            else:
                state = SILENT
            status = InputStatus(name, topic, state, age, count)
            statuses.append(status)
            if state != self._states[name]:
                if self._states[name] is not None or state != FRESH:
                    changed.append(status)
                self._states[name] = state
        return statuses, changed


def summary(statuses: Iterable[InputStatus]) -> tuple[bool, bool, str]:
    """(any unhealthy, all unhealthy, one line naming the unhealthy inputs)."""
    statuses = list(statuses)
    bad = [s for s in statuses if not s.healthy]
    if not bad:
        return False, False, f'{len(statuses)} input(s) fresh'
    return True, len(bad) == len(statuses), '; '.join(s.describe() for s in bad)
