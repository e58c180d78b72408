"""Whether each input of a node is alive: a publisher on its topic, and messages not too old.

A robot_bridge whose camera driver is not running sends nothing on that track and, without this,
says nothing about it either. Each input (a camera topic, joint_states) is marked when a message
arrives; once a second the node asks for the state of each, given how many publishers its topic
has. A change of state is reported once (the node logs it); the states and ages go to
``/diagnostics``. No ROS here: the node passes in the clock and the publisher counts.

An input may also be *remote*: a feed the operator receives from the robot (a camera track, the
state). Its "publisher" is the robot being in the room, and what it says when unhealthy points
at the robot, whose own inputs say which of its topics is silent.
"""

from __future__ import annotations

from dataclasses import dataclass
import math
from typing import Iterable, Optional

__all__ = [
    'FRESH',
    'NO_PUBLISHER',
    'SILENT',
    'WAITING',
    'InputHealth',
    'InputStatus',
    'change_lines',
    'summary',
    'values',
]

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
    remote: bool = False  # a feed from the robot (operator side), not a local topic

    @property
    def healthy(self) -> bool:
        return self.state in HEALTHY

    def describe(self) -> str:
        text = _TEXT[self.state][self.remote]
        return f'{self.name}: ' + text.format(topic=self.topic, n=self.publishers, age=self.age_s or 0.0, see=_SEE)


_SEE = "(see the robot's /diagnostics, inputs)"
_TEXT = {  # state: (a local topic, a feed from the robot)
    NO_PUBLISHER: ('no publisher on {topic}', 'no robot in the room'),
    WAITING: ('{n} publisher(s) on {topic}, no message yet', 'the robot has sent nothing on its {topic} yet {see}'),
    SILENT: ('nothing on {topic} for {age:.1f} s', 'nothing from the robot on its {topic} for {age:.1f} s {see}'),
    FRESH: ('{topic} fresh', "the robot's {topic} fresh"),
}


class InputHealth:
    """The inputs of one node; ``seen`` may be called from any thread (one float store)."""

    def __init__(self, timeout_s: float) -> None:
        if not (timeout_s > 0 and math.isfinite(timeout_s)):
            raise ValueError('input timeout must be a finite number > 0')
        self.timeout_s = timeout_s
        self._topics: dict[str, str] = {}
        self._remote: set[str] = set()
        self._last: dict[str, Optional[float]] = {}
        self._states: dict[str, Optional[str]] = {}

    def add(self, name: str, topic: str, remote: bool = False) -> None:
        """An input called ``name`` on ``topic`` (a remote feed: what the robot sends it as)."""
        self._topics[name] = topic
        if remote:
            self._remote.add(name)
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
            status = InputStatus(name, topic, state, age, count, name in self._remote)
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


def change_lines(changed: Iterable[InputStatus]) -> list[tuple[bool, str]]:
    """One log line per changed input: (healthy again, line); unhealthy ones are warnings."""
    lines = []
    for status in changed:
        if status.healthy:
            lines.append((True, f'input {status.describe()}, delivering again'))
        else:
            see = '' if status.remote else ' (see /diagnostics, inputs)'  # a remote one points at the robot
            lines.append((False, f'input {status.describe()}{see}'))
    return lines


def values(statuses: Iterable[InputStatus]) -> dict[str, object]:
    """The ``inputs`` diagnostics values: state, age (-1 before the first message) and publishers."""
    out: dict[str, object] = {}
    for s in statuses:
        out[f'{s.name}.state'] = s.state
        out[f'{s.name}.age_s'] = -1.0 if s.age_s is None else round(s.age_s, 3)
        out[f'{s.name}.publishers'] = s.publishers
    return out
