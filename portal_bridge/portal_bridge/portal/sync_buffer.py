"""The operator-side SyncBuffer: pairs every robot state with the nearest frame of each track.

This is Portal's algorithm exactly (match window ``|S - F| < R``, nearest candidate, fair share
with the next state, drop when a track's newest frame is already ``>= S + R``, wait otherwise,
``reuse_stale_frames``, state-only mode, overflow drops), so a ROS operator pairs frames the same
way as any other Portal peer. Two additions, both counted and logged:

* an opt-in **stall policy** (``max_lag_ms``): a track that delivers no frame for that long stops
  holding states back; observations are emitted without it and list it as omitted, until it
  delivers again. Off by default, which keeps Portal's wait-forever behaviour;
* **late frames** (older than the newest frame already pushed on their track) are dropped, because
  the matching assumes per-track timestamps never go backwards.

States dropped before the first observation (after creation or :meth:`clear`) are the normal start
of a session: data flows before the first video frame of every track is decoded. They are counted
like any other drop, but said in one INFO line when the first observation comes, not as warnings.
So are drops in the first ``settle_s`` (1 s) of observations: a WebRTC track's first frames come
while its receive jitter buffer adapts, and frame video the robot queued before its data channel
opened arrives in one burst; on an idle host with no loss, the demo's H264 track lagged its MJPEG
track by up to ~170 ms about 100 ms after the first observation, then never again. Those drops are
summed in a second INFO line once the period is over.

Not thread-safe: the session calls it from one thread (the LiveKit asyncio loop).
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
import logging
import time
from typing import Any, Callable, Optional, Sequence

from .metrics import SyncStats

__all__ = ['StallPolicy', 'SyncBuffer', 'SyncOutput', 'SyncedObservation', 'DroppedState']

_log = logging.getLogger('portal_bridge.portal.sync')
_SUMMARY_PERIOD_S = 5.0
START_SETTLE_S = 1.0  # after the first observation, drops are still the start (see above)


class _BurstLog:
    """Log the first event of a burst at once, then a summary at most every 5 s."""

    def __init__(self, clock: Callable[[], float]) -> None:
        self._clock = clock
        self.reset()

    def reset(self) -> None:
        self.pending = 0
        self.worst = 0
        self.last = None

    def event(self, first: Callable[[], None], summary: Callable[[int, float, int], None], value: int = 0) -> None:
        now = self._clock()
        if self.last is None:
            first()
            self.last = now
            return
        self.pending += 1
        self.worst = max(self.worst, value)
        if now - self.last >= _SUMMARY_PERIOD_S:
            summary(self.pending, now - self.last, self.worst)
            self.last, self.pending, self.worst = now, 0, 0

    def quiet_for(self, seconds: float) -> bool:
        return self.last is None or self._clock() - self.last >= seconds


@dataclass(frozen=True, slots=True)
class StallPolicy:
    """Emit without a track once it has been silent for ``max_lag_ms`` (wall time on this host)."""

    max_lag_ms: float

    def __post_init__(self) -> None:
        if not self.max_lag_ms > 0:
            raise ValueError(f'max_lag_ms must be > 0, got {self.max_lag_ms}')


@dataclass(frozen=True, slots=True)
class SyncedObservation:
    """A state and one frame per included track; ``timestamp_us`` is the state's time."""

    timestamp_us: int
    state: Any
    frames: dict[str, Any]
    frame_timestamps_us: dict[str, int]
    stale: frozenset[str]
    omitted: tuple[str, ...]
    match_delta_us: int


@dataclass(frozen=True, slots=True)
class DroppedState:
    """A state that will never be emitted: ``reason`` is overflow or sync (no frame can match)."""

    timestamp_us: int
    state: Any
    reason: str


@dataclass(slots=True)
class SyncOutput:
    """What one push produced; overflow drops come first in ``drops``."""

    observations: list[SyncedObservation] = field(default_factory=list)
    drops: list[DroppedState] = field(default_factory=list)

    def __bool__(self) -> bool:
        return bool(self.observations or self.drops)


class _Track:
    __slots__ = ('name', 'buf', 'cursor', 'last_emitted', 'newest_ts', 'last_arrival', 'stalled')

    def __init__(self, name: str, now: float) -> None:
        self.name = name
        self.buf: deque[tuple[int, Any]] = deque()
        self.cursor = 0
        self.last_emitted: Optional[tuple[int, Any]] = None
        self.newest_ts: Optional[int] = None
        self.last_arrival = now
        self.stalled = False


class SyncBuffer:
    """Pairs states with frames. ``tracks`` must be in sync order (WebRTC, then frame video)."""

    def __init__(
        self,
        tracks: Sequence[str],
        search_range_us: int,
        video_capacity: int = 5,
        state_capacity: int = 5,
        reuse_stale_frames: bool = False,
        stall_policy: Optional[StallPolicy] = None,
        stats: Optional[SyncStats] = None,
        clock: Callable[[], float] = time.monotonic,
        settle_s: float = START_SETTLE_S,
    ) -> None:
        if video_capacity <= 0 or state_capacity <= 0:
            raise ValueError('buffer capacities must be > 0')
        if settle_s < 0:
            raise ValueError(f'settle_s must be >= 0, got {settle_s}')
        self.settle_s = settle_s
        self.search_range_us = int(search_range_us)
        self.video_capacity = video_capacity
        self.state_capacity = state_capacity
        self.reuse_stale_frames = reuse_stale_frames
        self.stall_policy = stall_policy
        self.stats = stats if stats is not None else SyncStats()
        self._clock = clock
        now = clock()
        self._tracks = [_Track(name, now) for name in tracks]
        self._by_name = {t.name: i for i, t in enumerate(self._tracks)}
        self._states: deque[tuple[int, Any]] = deque()
        self._blocker: Optional[int] = None
        self._reset_throttles()

    # -- inspection ----------------------------------------------------------------------------------
    @property
    def track_names(self) -> list[str]:
        return [t.name for t in self._tracks]

    @property
    def state_fill(self) -> int:
        return len(self._states)

    def video_fill(self) -> dict[str, int]:
        return {t.name: len(t.buf) for t in self._tracks}

    def stalled_tracks(self) -> list[str]:
        return [t.name for t in self._tracks if t.stalled]

    @property
    def blocker(self) -> Optional[str]:
        """The track the head state is waiting for, if any."""
        return None if self._blocker is None else self._tracks[self._blocker].name

    # -- pushes --------------------------------------------------------------------------------------
    def push_state(self, timestamp_us: int, state: Any) -> SyncOutput:
        """Add a state (arrival order) and emit or drop whatever can be decided now."""
        out = SyncOutput()
        if len(self._states) >= self.state_capacity:
            ts, old = self._states.popleft()
            if self._record_drop(out, ts, old, 'overflow'):
                self._log_overflow(ts, self.blocker)
            self._blocker = None  # the head changed
        self._states.append((int(timestamp_us), state))
        self._refresh_stalls()
        self._try_sync(out)
        return out

    def push_frame(self, track: str, timestamp_us: int, frame: Any) -> SyncOutput:
        """Add a frame of a declared track; undeclared tracks are ignored."""
        out = SyncOutput()
        k = self._by_name.get(track)
        if k is None:
            return out
        t = self._tracks[k]
        ts = int(timestamp_us)
        t.last_arrival = self._clock()
        if t.newest_ts is not None and ts < t.newest_ts:
            self.stats.late_frames_dropped += 1
            _log.debug('[late-frame] track %s: frame ts=%d older than newest %d; dropped', track, ts, t.newest_ts)
            return out
        t.newest_ts = ts
        if t.stalled:
            t.stalled = False
            _log.info("[track-live] track '%s' delivers frames again", track)
        evicted = False
        if len(t.buf) >= self.video_capacity:
            t.buf.popleft()
            t.cursor = max(t.cursor - 1, 0)
            self.stats.evictions[track] += 1
            evicted = True
            _log.debug(
                '[video-overflow] track %s buffer full (%d); evicted the oldest frame',
                track,
                self.video_capacity,
            )
        t.buf.append((ts, frame))
        if self._blocker is None or self._blocker == k or evicted:
            self._refresh_stalls()
            self._try_sync(out)
        return out

    def poll(self) -> SyncOutput:
        """Re-evaluate stalls as time passes; emits states that waited on a now-stalled track."""
        out = SyncOutput()
        if self._refresh_stalls():
            self._try_sync(out)
        return out

    def clear(self) -> None:
        """Forget all buffered data, cursors, reuse fallbacks, blocker and log throttles."""
        now = self._clock()
        self._tracks = [_Track(t.name, now) for t in self._tracks]
        self._states.clear()
        self._blocker = None
        self._reset_throttles()

    # -- internals -----------------------------------------------------------------------------------
    def _reset_throttles(self) -> None:
        self._starting = 0  # states dropped before the first observation; None once it came
        self._settle_until: Optional[float] = None  # end of the settling period after the first observation
        self._settling = 0  # states dropped in it
        self._overflow_log = _BurstLog(self._clock)
        self._drop_log = _BurstLog(self._clock)

    def _refresh_stalls(self) -> bool:
        """Mark tracks silent for longer than max_lag_ms as stalled; True if any changed."""
        if self.stall_policy is None:
            return False
        now = self._clock()
        limit = self.stall_policy.max_lag_ms / 1000.0
        changed = False
        for t in self._tracks:
            if not t.stalled and now - t.last_arrival > limit:
                t.stalled = True
                changed = True
                _log.warning(
                    "[track-stalled] no frame on track '%s' for %.0f ms; emitting observations without it",
                    t.name,
                    (now - t.last_arrival) * 1000.0,
                )
        if changed and self._blocker is not None and self._tracks[self._blocker].stalled:
            self._blocker = None
        return changed

    def _record_drop(self, out: SyncOutput, ts: int, state: Any, reason: str) -> bool:
        """Count a drop; True if it is to be logged (not the start of the session)."""
        out.drops.append(DroppedState(ts, state, reason))
        self.stats.states_dropped += 1
        if reason == 'overflow':
            self.stats.states_dropped_overflow += 1
        if self._starting is not None:
            self._starting += 1
            return False
        if self._settle_until is not None:
            if self._clock() < self._settle_until:
                self._settling += 1
                return False
            self._end_settling()
        return True

    def _end_settling(self) -> None:
        if self._settling:
            _log.info(
                '[sync-start] %d more states dropped in the first %.1f s of observations, while the tracks settled',
                self._settling,
                self.settle_s,
            )
        self._settle_until = None
        self._settling = 0

    def _log_overflow(self, ts: int, blocker: Optional[str]) -> None:
        self._overflow_log.event(
            lambda: _log.warning(
                '[state-overflow] state buffer full (%d); dropping the oldest state (ts=%d); waiting on track %s',
                self.state_capacity, ts, blocker,
            ),
            lambda n, dt, _: _log.warning(
                '[state-overflow] %d more states dropped in the last %.0f s (buffer of %d); states arrive '
                'faster than frames can pair with them', n, dt, self.state_capacity,
            ),
        )  # fmt: skip

    def _log_sync_drop(self, ts: int, ahead: int, track: str) -> None:
        self._drop_log.event(
            lambda: _log.warning(
                "[sync-drop] state ts=%d dropped: track '%s' is %d us ahead (window %d us)",
                ts, track, ahead, self.search_range_us,
            ),
            lambda n, dt, worst: _log.warning(
                '[sync-drop] %d more states dropped in the last %.0f s (worst video ahead %d us)', n, dt, worst
            ),
            ahead,
        )  # fmt: skip

    def _try_sync(self, out: SyncOutput) -> None:
        R = self.search_range_us
        states = self._states
        tracks = self._tracks
        reuse = self.reuse_stale_frames
        while True:
            if not states:
                self._blocker = None
                return
            S = states[0][0]
            N = states[1][0] if len(states) > 1 else None
            slots: list[tuple[_Track, tuple[int, Any], Optional[int], bool]] = []
            first_waiter: Optional[int] = None
            drop: Optional[tuple[int, str]] = None
            for k, t in enumerate(tracks):
                if t.stalled:
                    continue
                buf = t.buf
                best: Optional[int] = None
                if buf:
                    n = len(buf)
                    cursor = min(t.cursor, n - 1)
                    while cursor > 0 and buf[cursor][0] > S:
                        cursor -= 1
                    while cursor + 1 < n and buf[cursor + 1][0] <= S:
                        cursor += 1
                    t.cursor = cursor
                    best_d = R
                    for idx in (cursor, cursor + 1):
                        if idx >= n:
                            break
                        cand_ts = buf[idx][0]
                        d = abs(S - cand_ts)
                        if d >= best_d:
                            continue
                        if N is not None and abs(N - cand_ts) < d:
                            continue  # fair share: the next state is closer, leave it
                        best, best_d = idx, d
                if best is not None:
                    slots.append((t, buf[best], best, False))
                    continue
                if reuse:
                    if buf and buf[t.cursor][0] <= S and S - buf[t.cursor][0] >= R:
                        slots.append((t, buf[t.cursor], t.cursor, True))
                        continue
                    if t.last_emitted is not None:
                        slots.append((t, t.last_emitted, None, True))
                        continue
                if not buf:
                    if first_waiter is None:
                        first_waiter = k
                    continue
                if buf[-1][0] >= S + R:
                    drop = (buf[-1][0] - S, t.name)
                    break
                if first_waiter is None:
                    first_waiter = k

            if drop is not None:
                ts, state = states.popleft()
                if self._record_drop(out, ts, state, 'sync'):
                    self._log_sync_drop(ts, drop[0], drop[1])
                continue
            if first_waiter is not None:
                self._blocker = first_waiter
                self.stats.last_blocker_track = tracks[first_waiter].name
                return

            ts, state = states.popleft()
            worst = 0
            frames: dict[str, Any] = {}
            frame_ts: dict[str, int] = {}
            stale = []
            for t, (fts, frame), drain_to, is_stale in slots:
                worst = max(worst, abs(S - fts))
                frames[t.name] = frame
                frame_ts[t.name] = fts
                if is_stale:
                    stale.append(t.name)
                if drain_to is not None:
                    for _ in range(drain_to + 1):
                        t.buf.popleft()
                    t.cursor = max(t.cursor - (drain_to + 1), 0)
                t.last_emitted = (fts, frame)
            omitted = tuple(t.name for t in tracks if t.stalled)
            if self._starting is not None:
                if self._starting:
                    _log.info(
                        '[sync-start] first observation; %d states dropped while the tracks started', self._starting
                    )
                self._starting = None
                self._settle_until = self._clock() + self.settle_s
            elif self._settle_until is not None and self._clock() >= self._settle_until:
                self._end_settling()
            self.stats.observations_emitted += 1
            self.stats.match_delta.add(worst)
            if stale:
                self.stats.stale_observations_emitted += 1
            # A burst of drops ends once observations flow undisturbed for a summary period.
            for burst in (self._overflow_log, self._drop_log):
                if burst.last is not None and burst.pending == 0 and burst.quiet_for(_SUMMARY_PERIOD_S):
                    burst.reset()
            out.observations.append(SyncedObservation(ts, state, frames, frame_ts, frozenset(stale), omitted, worst))
