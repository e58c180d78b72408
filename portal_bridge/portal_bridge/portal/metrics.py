"""Metrics with Portal's exact semantics: counters, 256-sample rings, RFC 3550-style jitter.

Percentiles are ``sorted[min(round_half_away(p * (n - 1)), n - 1)]``, means are integer
``sum // n``, every value is in microseconds, and counters survive ``disconnect()`` (only
:meth:`MetricsRecorder.reset` clears them). The snapshot types are plain dataclasses so callers
(the ROS diagnostics, the demo, tests) read them without locks.

Threads: a :class:`MetricsRecorder` is written from the LiveKit thread (receive handlers,
drainers), from ROS executor threads (``send_state``, ``send_video_frame``, ``send_action``...)
and read from anywhere, so every write goes through one of its methods, which hold its lock for
a few dictionary or integer updates; :meth:`MetricsRecorder.snapshot` copies under the same lock.
Its counter attributes stay public for reading only: ``recorder.x += 1`` outside the recorder
loses counts when two threads race. :class:`SyncStats` is the exception: only the sync buffer
writes it, on the LiveKit thread, so its plain ``+=`` are safe and the snapshot only reads it.
"""

from __future__ import annotations

from collections import Counter, deque
from dataclasses import dataclass, field
import functools
import math
import threading
from typing import Iterable, Optional

__all__ = [
    'RING_SIZE',
    'SampleRing',
    'Jitter',
    'percentile',
    'SyncStats',
    'SyncMetrics',
    'TransportMetrics',
    'BufferMetrics',
    'RttMetrics',
    'PolicyMetrics',
    'PortalMetrics',
    'MetricsRecorder',
]

RING_SIZE = 256


def percentile(sorted_samples: list[int], p: float) -> Optional[int]:
    """Portal's percentile: nearest rank with half-away-from-zero rounding; None when empty."""
    n = len(sorted_samples)
    if n == 0:
        return None
    return sorted_samples[min(int(math.floor(p * (n - 1) + 0.5)), n - 1)]


class SampleRing:
    """The last 256 samples of one measurement (thread-safe)."""

    def __init__(self, size: int = RING_SIZE) -> None:
        self._samples: deque[int] = deque(maxlen=size)
        self._lock = threading.Lock()

    def add(self, value: int) -> None:
        with self._lock:
            self._samples.append(int(value))

    def clear(self) -> None:
        with self._lock:
            self._samples.clear()

    def __len__(self) -> int:
        return len(self._samples)

    def sorted(self) -> list[int]:
        with self._lock:
            return sorted(self._samples)

    def percentiles(self, *ps: float) -> list[Optional[int]]:
        s = self.sorted()
        return [percentile(s, p) for p in ps]

    def mean(self) -> Optional[int]:
        with self._lock:
            n = len(self._samples)
            return sum(self._samples) // n if n else None


class Jitter:
    """Interarrival jitter: ``J += (|D| - J) / 16`` with truncating integer division.

    ``D = (recv - prev_recv) - (send - prev_send)``; send is the packet's timestamp, recv the local
    receive time, both in µs.
    """

    __slots__ = ('value', '_prev')

    def __init__(self) -> None:
        self.value = 0
        self._prev: Optional[tuple[int, int]] = None

    def update(self, send_us: int, recv_us: int) -> None:
        if self._prev is not None:
            d = (recv_us - self._prev[1]) - (send_us - self._prev[0])
            q = abs(d) - self.value
            self.value += q // 16 if q >= 0 else -((-q) // 16)
        self._prev = (send_us, recv_us)


@dataclass
class SyncStats:
    """Sync-buffer counters; owned by the recorder so they outlive any one buffer."""

    observations_emitted: int = 0
    stale_observations_emitted: int = 0
    states_dropped: int = 0
    states_dropped_overflow: int = 0
    late_frames_dropped: int = 0
    last_blocker_track: Optional[str] = None
    match_delta: SampleRing = field(default_factory=SampleRing)
    evictions: Counter = field(default_factory=Counter)


@dataclass(frozen=True)
class SyncMetrics:
    observations_emitted: int
    stale_observations_emitted: int
    states_dropped: int
    match_delta_us_p50: Optional[int]
    match_delta_us_p95: Optional[int]
    last_blocker_track: Optional[str]
    # Extensions beyond Portal's snapshot:
    stalled_tracks: tuple[str, ...] = ()
    late_frames_dropped: int = 0
    # Of states_dropped, those evicted from a full state buffer (slack too small for the frames' delay);
    # the rest found no frame within tolerance (video lost, or frames evicted while states were late).
    states_dropped_overflow: int = 0


@dataclass(frozen=True)
class TransportMetrics:
    frames_sent: dict[str, int]
    frames_received: dict[str, int]
    frames_dropped_publisher_full: dict[str, int]
    bytes_sent: dict[str, int]
    bytes_received: dict[str, int]
    states_sent: int
    actions_sent: int
    action_chunks_sent: int
    states_received: int
    actions_received: int
    action_chunks_received: int
    frame_jitter_us: dict[str, int]
    state_jitter_us: int
    action_jitter_us: int
    action_chunk_jitter_us: int
    # Extensions: every rejected packet or frame, counted by reason (gate, schema-mismatch, ...).
    dropped: dict[str, int] = field(default_factory=dict)


@dataclass(frozen=True)
class BufferMetrics:
    video_fill: dict[str, int]
    state_fill: int
    evictions: dict[str, int]


@dataclass(frozen=True)
class RttMetrics:
    rtt_us_last: Optional[int]
    rtt_us_mean: Optional[int]
    rtt_us_p95: Optional[int]
    pings_sent: int
    pongs_received: int
    pongs_ignored: int = 0  # pongs answering no ping of ours (other peers' broadcasts, or junk)


@dataclass(frozen=True)
class PolicyMetrics:
    e2e_us_p50: Optional[int]
    e2e_us_p95: Optional[int]
    correlated_received: int


@dataclass(frozen=True)
class PortalMetrics:
    sync: SyncMetrics
    transport: TransportMetrics
    buffers: BufferMetrics
    rtt: RttMetrics
    policy: PolicyMetrics


class MetricsRecorder:
    """Collects every metric of one session role; safe to write and read from any thread.

    Write only through the methods below, each of which holds ``_lock`` (a plain
    ``threading.Lock``) for a few counter updates; the attributes are public for reading only.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.reset()

    def reset(self) -> None:
        """Zero every counter and ring (Portal's ``reset_metrics``)."""
        with self._lock:
            self.sync = SyncStats()
            self.frames_sent: Counter[str] = Counter()
            self.frames_received: Counter[str] = Counter()
            self.frames_dropped_publisher_full: Counter[str] = Counter()
            self.bytes_sent: Counter[str] = Counter()
            self.bytes_received: Counter[str] = Counter()
            self.dropped: Counter[str] = Counter()
            self.states_sent = 0
            self.actions_sent = 0
            self.action_chunks_sent = 0
            self.states_received = 0
            self.actions_received = 0
            self.action_chunks_received = 0
            self.frame_jitter: dict[str, Jitter] = {}
            self.state_jitter = Jitter()
            self.action_jitter = Jitter()
            self.action_chunk_jitter = Jitter()
            self.rtt = SampleRing()
            self.rtt_last: Optional[int] = None
            self.pings_sent = 0
            self.pongs_received = 0
            self.pongs_ignored = 0
            self.e2e = SampleRing()
            self.correlated_received = 0

    # -- recording (any thread) ----------------------------------------------------------------------
    def drop(self, reason: str, n: int = 1) -> None:
        """Count a rejected packet, frame or action under ``reason``."""
        with self._lock:
            self.dropped[reason] += n

    def frame_sent(self, track: str, nbytes: int = 0) -> None:
        """A frame handed to WebRTC (``nbytes`` 0) or sent as a frame-video stream of ``nbytes``."""
        with self._lock:
            self.frames_sent[track] += 1
            if nbytes:
                self.bytes_sent[track] += nbytes

    def frame_publisher_full(self, track: str) -> None:
        """A queued frame-video frame evicted because the track's send queue was full."""
        with self._lock:
            self.frames_dropped_publisher_full[track] += 1

    def _bump(self, counter: str) -> None:
        with self._lock:
            setattr(self, counter, getattr(self, counter) + 1)

    # One event, one scalar counter.
    state_sent = functools.partialmethod(_bump, 'states_sent')
    action_sent = functools.partialmethod(_bump, 'actions_sent')
    action_chunk_sent = functools.partialmethod(_bump, 'action_chunks_sent')
    ping_sent = functools.partialmethod(_bump, 'pings_sent')
    pong_ignored = functools.partialmethod(_bump, 'pongs_ignored')

    def frame_received(self, track: str, send_us: int, recv_us: int, nbytes: int = 0) -> None:
        with self._lock:
            self.frames_received[track] += 1
            if nbytes:
                self.bytes_received[track] += nbytes
            jitter = self.frame_jitter.get(track)
            if jitter is None:
                jitter = self.frame_jitter[track] = Jitter()
            jitter.update(send_us, recv_us)

    def state_received(self, send_us: int, recv_us: int) -> None:
        with self._lock:
            self.states_received += 1
            self.state_jitter.update(send_us, recv_us)

    def action_received(self, send_us: int, recv_us: int, in_reply_to_ts_us: int = 0) -> None:
        """An action accepted by the gate: count, jitter and policy latency in one locked step."""
        with self._lock:
            self.actions_received += 1
            self.action_jitter.update(send_us, recv_us)
            self._correlate(in_reply_to_ts_us, recv_us)

    def action_chunk_received(self, send_us: int, recv_us: int, in_reply_to_ts_us: int = 0) -> None:
        with self._lock:
            self.action_chunks_received += 1
            self.action_chunk_jitter.update(send_us, recv_us)
            self._correlate(in_reply_to_ts_us, recv_us)

    def rtt_sample(self, rtt_us: int) -> None:
        rtt_us = max(1, rtt_us)  # Portal bumps 0 to 1 so "no sample" stays distinguishable
        with self._lock:
            self.rtt_last = rtt_us
            self.rtt.add(rtt_us)
            self.pongs_received += 1

    def correlation(self, in_reply_to_ts_us: int, now_us: int) -> None:
        """Record policy end-to-end latency for a gated action answering an observation."""
        with self._lock:
            self._correlate(in_reply_to_ts_us, now_us)

    def _correlate(self, in_reply_to_ts_us: int, now_us: int) -> None:  # caller holds _lock
        if in_reply_to_ts_us and in_reply_to_ts_us < now_us:
            self.e2e.add(now_us - in_reply_to_ts_us)
            self.correlated_received += 1

    # -- snapshot ------------------------------------------------------------------------------------
    def snapshot(
        self,
        video_fill: Optional[dict[str, int]] = None,
        state_fill: int = 0,
        stalled_tracks: Iterable[str] = (),
    ) -> PortalMetrics:
        """Freeze the current values; buffer fills come from the live sync buffer, if any.

        Counters are copied under the lock (a consistent cut); the rings, which have their own
        lock, are sorted after releasing it so writers wait only for the copies.
        """
        stalled = tuple(stalled_tracks)
        with self._lock:
            s, rtt_ring, e2e_ring = self.sync, self.rtt, self.e2e
            transport = TransportMetrics(
                frames_sent=dict(self.frames_sent),
                frames_received=dict(self.frames_received),
                frames_dropped_publisher_full=dict(self.frames_dropped_publisher_full),
                bytes_sent=dict(self.bytes_sent),
                bytes_received=dict(self.bytes_received),
                states_sent=self.states_sent,
                actions_sent=self.actions_sent,
                action_chunks_sent=self.action_chunks_sent,
                states_received=self.states_received,
                actions_received=self.actions_received,
                action_chunks_received=self.action_chunks_received,
                frame_jitter_us={k: j.value for k, j in self.frame_jitter.items()},
                state_jitter_us=self.state_jitter.value,
                action_jitter_us=self.action_jitter.value,
                action_chunk_jitter_us=self.action_chunk_jitter.value,
                dropped=dict(self.dropped),
            )
            rtt_last, pings, pongs, ignored = self.rtt_last, self.pings_sent, self.pongs_received, self.pongs_ignored
            correlated = self.correlated_received
        # SyncStats is written by the sync buffer on the LiveKit thread without this lock: single
        # ints are read atomically and dict() copies the Counter in one C call (no Python-level
        # iteration that a new key could interrupt).
        p50, p95 = s.match_delta.percentiles(0.5, 0.95)
        sync = SyncMetrics(
            observations_emitted=s.observations_emitted,
            stale_observations_emitted=s.stale_observations_emitted,
            states_dropped=s.states_dropped,
            match_delta_us_p50=p50,
            match_delta_us_p95=p95,
            last_blocker_track=s.last_blocker_track,
            stalled_tracks=stalled,
            late_frames_dropped=s.late_frames_dropped,
            states_dropped_overflow=s.states_dropped_overflow,
        )
        (rtt_p95,) = rtt_ring.percentiles(0.95)
        rtt = RttMetrics(rtt_last, rtt_ring.mean(), rtt_p95, pings, pongs, ignored)
        e50, e95 = e2e_ring.percentiles(0.5, 0.95)
        policy = PolicyMetrics(e50, e95, correlated)
        buffers = BufferMetrics(dict(video_fill or {}), state_fill, dict(s.evictions))
        return PortalMetrics(sync, transport, buffers, rtt, policy)
