"""Which joint states robot_bridge forwards: one per camera frame, or at ``state_rate_hz`` by stamp.

The operator pairs each state with the nearest frame of every camera by timestamp, and a frame
goes to the state it is nearest to. Two states only a few milliseconds apart compete for one
frame, and the one that loses it is dropped ("track ... is N us ahead"). Deciding by arrival time
let exactly that through: joint states delivered in a burst after the executor was busy (stamps
10 ms apart from a 100 Hz driver, arriving together) passed two at a time, 2-14 ms apart by their
stamps, and a healthy demo dropped 1 % of its states that way. Decided by stamp, forwarded states
are at least half a period apart and keep the rate's phase (exactly ``rate`` per second on average).

Even so, a 30 Hz selection from a 100 Hz driver is jittered against a 30 fps camera by the
driver's 10 ms grid: three states can fall within two frame periods and one of them loses its
frame (18-27 of 1 760 states in a 60 s demo). :class:`FramePacedStates` removes that: for every
frame of the pacing camera it forwards the joint state nearest to the frame's stamp, once, so each
state has a frame of its own, as when a Portal robot sends a state with each captured frame. The
state keeps its own stamp; while the pacing camera is silent the rate limiter takes over.
"""

from __future__ import annotations

from collections import deque
import math
import threading
from typing import Any, Optional

__all__ = ['FramePacedStates', 'StateRateLimiter']

_JUMP_BACK_US = 1_000_000  # a stamp this far behind the schedule is a clock that jumped back: start over


class StateRateLimiter:
    """``admit(stamp_us)``: True for the states to forward; ``rate_hz`` 0 forwards every one."""

    def __init__(self, rate_hz: float) -> None:
        if rate_hz < 0 or not math.isfinite(rate_hz):
            raise ValueError('state rate must be a finite number >= 0')
        self.period_us = 1e6 / rate_hz if rate_hz > 0 else 0.0
        self._due: float | None = None  # the stamp from which the next state may go
        self.skipped = 0

    def admit(self, stamp_us: int) -> bool:
        if self.period_us == 0.0:
            return True
        due = self._due
        if due is not None and due - _JUMP_BACK_US < stamp_us < due:
            self.skipped += 1
            return False
        if due is None or stamp_us <= due - _JUMP_BACK_US:
            due = float(stamp_us)
        # Phase kept (the due time advances by one period), but never closer than half a period to
        # this state: after a gap the next one is due half a period later, not at once.
        self._due = max(due + self.period_us, stamp_us + self.period_us / 2)
        return True


class FramePacedStates:
    """One state per frame of the pacing camera: the not yet forwarded state nearest to its stamp.

    ``offer`` every state and call ``on_frame`` for every frame of the pacing camera; both return
    the states to forward now, in stamp order. A frame is decided once a state stamped at or after
    it has arrived (the nearest may come just after the frame), or when the next frame arrives.
    ``pacing(now)`` says whether the camera is delivering (a frame within ``silent_s``); while it is
    not, the caller forwards states by rate instead.
    """

    def __init__(self, frame_period_us: float, silent_s: float = 0.5, depth: int = 64) -> None:
        self.frame_period_us = frame_period_us
        self.silent_s = silent_s
        self._recent: deque[tuple[int, Any]] = deque(maxlen=depth)
        self._frames: deque[int] = deque(maxlen=depth)  # frames not decided yet
        self._last_sent: Optional[int] = None
        self._last_frame_at: Optional[float] = None
        self._lock = threading.Lock()
        self.skipped = 0  # states never forwarded: not the nearest to any frame

    def pacing(self, now: float) -> bool:
        last = self._last_frame_at
        return last is not None and now - last <= self.silent_s

    def offer(self, stamp_us: int, item: Any) -> list[tuple[int, Any]]:
        with self._lock:
            if self._last_sent is not None and stamp_us <= self._last_sent:
                self.skipped += 1
                return []
            if len(self._recent) == self._recent.maxlen:
                self.skipped += 1
            self._recent.append((stamp_us, item))
            return self._decide(force_before=None)

    def on_frame(self, frame_stamp_us: int, now: float) -> list[tuple[int, Any]]:
        with self._lock:
            self._last_frame_at = now
            self._frames.append(frame_stamp_us)
            return self._decide(force_before=frame_stamp_us)

    def _decide(self, force_before: Optional[int]) -> list[tuple[int, Any]]:
        out = []
        while self._frames:
            frame = self._frames[0]
            later = bool(self._recent) and self._recent[-1][0] >= frame
            if not later and (force_before is None or frame >= force_before):
                break  # its nearest state may still come
            self._frames.popleft()
            best = None
            for stamp, item in self._recent:
                d = abs(stamp - frame)
                if d < self.frame_period_us and (best is None or d < best[0]):
                    best = (d, stamp, item)
            if best is None:
                continue
            _, stamp, item = best
            kept = [(s, i) for s, i in self._recent if s > stamp]
            self.skipped += len(self._recent) - len(kept) - 1
            self._recent.clear()
            self._recent.extend(kept)
            self._last_sent = stamp
            out.append((stamp, item))
        return out
