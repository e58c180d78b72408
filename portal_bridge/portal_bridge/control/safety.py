"""The robot's command output as one state machine, with no ROS in it.

:class:`CommandSafety` is the single owner of what robot_bridge publishes to the controller.
The node feeds it events (an accepted action, a chunk, an operator change, an emergency stop, a
reset, a clock tick) and publishes exactly the :class:`Emit` values it returns; nothing else in
the node decides to send a command. Commands are opaque here: the node builds the messages, the
state machine only says which one goes out and when.

States::

    IDLE ──action/chunk──> DRIVING ──timeout, release──> STOPPED ──action/chunk──> DRIVING
      ^                       │                              │
      │                       └──────────e-stop──────────────┴──> ESTOPPED (latched)
      └────────────────────────────reset─────────────────────────────┘

* IDLE: nothing commanded since start or since a reset; nothing is published. Claiming control
  does not arm the watchdog: there is no motion to stop until the operator sends something.
* DRIVING: the last input is fresh. The watchdog deadline is the last input plus the timeout,
  or for a trajectory its end (last ``time_from_start``) plus the timeout.
* STOPPED: the watchdog tripped or the active operator released control. ``on_timeout`` says
  what happens once on entry (``zero``: one zero command; ``hold``: the last single command is
  re-sent every ``hold_period_s`` where the command type allows it; ``stop``: nothing).
* ESTOPPED: one safe command on entry (the node decides its form: zero velocity, the measured
  joint positions, an empty trajectory), then nothing at all, whatever ``on_timeout`` says,
  until :meth:`CommandSafety.reset`. A reset leads to IDLE and never publishes: motion needs a
  new handoff and a new input.

Chunks: a trajectory chunk is published once; a stepped chunk plays one row at each row's due
time (monotonic), the latest due row only when the clock is late. :func:`align_chunk` says
which rows of a chunk are still in the future given the observation it answers.

Not thread-safe: the node serialises calls with one lock (events arrive on the LiveKit thread,
the service thread and the safety timer thread).
"""

from __future__ import annotations

from dataclasses import dataclass
import enum
import math
from typing import Any, Optional, Sequence

__all__ = [
    'TIMEOUT_POLICIES',
    'ChunkAlignment',
    'CommandSafety',
    'Emit',
    'SafetyState',
    'align_chunk',
]

TIMEOUT_POLICIES = ('hold', 'zero', 'stop')


class SafetyState(enum.Enum):
    IDLE = 'idle'
    DRIVING = 'driving'
    STOPPED = 'stopped'
    ESTOPPED = 'estopped'


@dataclass(frozen=True)
class Emit:
    """One message to publish.

    ``kind`` is ``command`` (``command`` holds it), ``hold`` (a re-send of ``command``), ``zero``
    (the all-zero command) or ``safe`` (the e-stop's safe command).
    """

    kind: str
    command: Any = None

    @property
    def is_motion(self) -> bool:
        """True for operator commands and their re-sends, False for zero and safe commands."""
        return self.kind in ('command', 'hold')


@dataclass(frozen=True)
class ChunkAlignment:
    """Rows of a chunk still to execute: the first one and its offset from now (seconds)."""

    first_row: int
    first_offset_s: float

    @property
    def skipped(self) -> int:
        return self.first_row


def align_chunk(horizon: int, fps: float, in_reply_to_us: Optional[int], now_us: int) -> Optional[ChunkAlignment]:
    """Which rows of a chunk are still ahead, on the robot's clock.

    Row ``r`` of a chunk that answers the observation stamped ``in_reply_to_us`` is meant for
    ``in_reply_to_us + r / fps``. Rows whose time has passed when the chunk arrives are skipped,
    so a round trip of 150 ms does not replay 150 ms of stale motion. Without ``in_reply_to_us``
    (or with one in the future, which no observation of this robot can have) row 0 is now.
    Returns None when every row is in the past.
    """
    if horizon <= 0 or fps <= 0:
        return None
    if not in_reply_to_us or in_reply_to_us >= now_us:
        return ChunkAlignment(0, 0.0)
    elapsed_s = (now_us - in_reply_to_us) / 1e6
    first = math.ceil(elapsed_s * fps - 1e-9)
    if first >= horizon:
        return None
    return ChunkAlignment(first, max(first / fps - elapsed_s, 0.0))


class CommandSafety:
    """The state machine; see the module docstring.

    ``hold_resends``: whether ``hold`` re-sends the last single command (position and
    multi-array outputs) or publishes nothing more (trajectories, whose controller holds the
    last point by itself).
    """

    def __init__(
        self,
        *,
        timeout_s: float,
        on_timeout: str = 'hold',
        hold_period_s: float = 1.0 / 30.0,
        hold_resends: bool = True,
    ) -> None:
        self.configure(timeout_s=timeout_s, on_timeout=on_timeout)
        if hold_period_s <= 0:
            raise ValueError('hold period must be > 0')
        self.hold_period_s = hold_period_s
        self.hold_resends = hold_resends
        self.state = SafetyState.IDLE
        self.operator: Optional[str] = None
        self.reason = ''
        self.stop_cause = ''  # 'timeout' or 'release' while STOPPED
        self.estop_reason = ''
        self.trips = 0
        self.estops = 0
        self.rejected_estopped = 0
        self.rejected_sender = 0
        self.rows_skipped = 0
        self._deadline = math.inf
        self._last_single: Any = None  # the last single command (what hold re-sends)
        self._next_hold = math.inf
        self._rows: list[tuple[float, Any]] = []  # stepped chunk: (due, command), due ascending
        self._next_row = 0

    # -- configuration ------------------------------------------------------------------------------
    def configure(self, *, timeout_s: Optional[float] = None, on_timeout: Optional[str] = None) -> None:
        """Change the timeout or the policy (validated first; nothing changes on a bad value)."""
        if timeout_s is not None and not (timeout_s > 0 and math.isfinite(timeout_s)):
            raise ValueError('action timeout must be a finite number > 0')
        if on_timeout is not None and on_timeout not in TIMEOUT_POLICIES:
            raise ValueError(f"on_timeout '{on_timeout}' must be one of {', '.join(TIMEOUT_POLICIES)}")
        if timeout_s is not None:
            old = getattr(self, 'timeout_s', None)
            self.timeout_s = timeout_s
            if old is not None and math.isfinite(getattr(self, '_deadline', math.inf)):
                self._deadline += timeout_s - old
        if on_timeout is not None:
            self.on_timeout = on_timeout

    # -- queries ----------------------------------------------------------------------------------
    @property
    def estopped(self) -> bool:
        return self.state is SafetyState.ESTOPPED

    @property
    def tripped(self) -> bool:
        """Stopped because the active operator went quiet (not because control was released)."""
        return self.state is SafetyState.STOPPED and self.stop_cause == 'timeout'

    @property
    def playing(self) -> bool:
        return self._next_row < len(self._rows)

    @property
    def deadline(self) -> float:
        """Monotonic time at which the watchdog trips (inf when not driving)."""
        return self._deadline if self.state is SafetyState.DRIVING else math.inf

    def next_wakeup(self) -> float:
        """The earliest monotonic time at which :meth:`tick` has something to do (inf: none)."""
        t = self.deadline
        if self.playing:
            t = min(t, self._rows[self._next_row][0])
        if self.state is SafetyState.STOPPED and self._holding():
            t = min(t, self._next_hold)
        return t

    # -- events -----------------------------------------------------------------------------------
    def operator_changed(self, identity: Optional[str], now: float) -> list[Emit]:
        """The gate points at ``identity`` now. A release stops; a handoff keeps the deadline.

        A handoff leaves the watchdog deadline where it was (it counts from the last input), so
        the new operator takes over within the timeout or the output stops; the previous
        operator's stepped chunk stops playing at once.
        """
        previous, self.operator = self.operator, identity or None
        if self.state is SafetyState.ESTOPPED or previous == self.operator:
            return []
        self._clear_rows()
        if self.operator is None and self.state is SafetyState.DRIVING:
            return self._stop(now, 'release', f"'{previous}' released control")
        return []

    def action(self, sender: str, command: Any, now: float) -> list[Emit]:
        """An accepted single action, already built into ``command``."""
        if not self._admit(sender):
            return []
        self._clear_rows()
        self._drive(now + self.timeout_s)
        self._last_single = command
        return [Emit('command', command)]

    def trajectory(self, sender: str, command: Any, duration_s: float, now: float) -> list[Emit]:
        """A whole chunk as one trajectory lasting ``duration_s`` (its last time_from_start)."""
        if not self._admit(sender):
            return []
        self._clear_rows()
        self._drive(now + max(duration_s, 0.0) + self.timeout_s)
        self._last_single = None  # a trajectory is never re-sent: it would restart the motion
        return [Emit('command', command)]

    def stepped(
        self, sender: str, commands: Sequence[Any], first_offset_s: float, period_s: float, now: float
    ) -> list[Emit]:
        """A chunk played one row per ``period_s``, the first ``first_offset_s`` from now."""
        if not self._admit(sender) or not commands:
            return []
        self._rows = [(now + first_offset_s + i * period_s, c) for i, c in enumerate(commands)]
        self._next_row = 0
        self._drive(self._rows[-1][0] + self.timeout_s)
        return self._play(now)

    def estop(self, reason: str, now: float) -> list[Emit]:
        """Latch the emergency stop: one safe command now (unless already latched), then nothing."""
        if self.state is SafetyState.ESTOPPED:
            return []
        self.state = SafetyState.ESTOPPED
        self.estops += 1
        self.estop_reason = self.reason = reason
        self.operator = None
        self._clear_rows()
        self._deadline = math.inf
        self._last_single = None
        self._next_hold = math.inf
        return [Emit('safe')]

    def reset(self, now: float) -> bool:
        """Unlatch an emergency stop (publishes nothing). False if none was latched."""
        if self.state is not SafetyState.ESTOPPED:
            return False
        self.state = SafetyState.IDLE
        self.reason = ''
        self.operator = None
        return True

    def tick(self, now: float) -> list[Emit]:
        """Advance the clock: play due rows, trip the watchdog, re-send a held command."""
        out: list[Emit] = []
        if self.state is SafetyState.DRIVING:
            out += self._play(now)
            if now > self._deadline:
                self.trips += 1
                silent = now - (self._deadline - self.timeout_s)
                out += self._stop(
                    now,
                    'timeout',
                    f"no action from active operator '{self.operator}' for {silent * 1000:.0f} ms "
                    f'(action_timeout_ms={self.timeout_s * 1000:.0f})',
                )
        if self.state is SafetyState.STOPPED and self._holding() and now >= self._next_hold:
            self._next_hold = max(self._next_hold + self.hold_period_s, now - self.hold_period_s / 2)
            out.append(Emit('hold', self._last_single))
        return out

    # -- internals --------------------------------------------------------------------------------
    def _admit(self, sender: str) -> bool:
        if self.state is SafetyState.ESTOPPED:
            self.rejected_estopped += 1
            return False
        if self.operator is None or sender != self.operator:
            self.rejected_sender += 1
            return False
        return True

    def _drive(self, deadline: float) -> None:
        if self.state is not SafetyState.DRIVING:
            self.reason = ''
        self.state = SafetyState.DRIVING
        self._deadline = deadline
        self._next_hold = math.inf

    def _stop(self, now: float, cause: str, reason: str) -> list[Emit]:
        self.state = SafetyState.STOPPED
        self.stop_cause = cause
        self.reason = reason
        self._deadline = math.inf
        self._clear_rows()
        if self.on_timeout == 'zero':
            return [Emit('zero')]
        if self.on_timeout == 'hold' and self._holding():
            self._next_hold = now + self.hold_period_s
        return []

    def _holding(self) -> bool:
        return self.on_timeout == 'hold' and self.hold_resends and self._last_single is not None

    def _play(self, now: float) -> list[Emit]:
        if not self.playing or self._rows[self._next_row][0] > now:
            return []
        due = self._next_row
        while due + 1 < len(self._rows) and self._rows[due + 1][0] <= now:
            due += 1
        self.rows_skipped += due - self._next_row  # late clock: only the newest due row goes out
        self._next_row = due + 1
        command = self._rows[due][1]
        self._last_single = command
        return [Emit('command', command)]

    def _clear_rows(self) -> None:
        self._rows = []
        self._next_row = 0
