"""MetricsRecorder and operator_bridge's observation stamps under concurrent threads.

The recorder is written from the LiveKit thread, ROS executor threads and the decode pool while
diagnostics take snapshots. With the GIL handed over every microsecond, unlocked ``Counter``
increments lose counts (a first increment of a key runs ``Counter.__missing__``, a switch point
between the read and the write) and a snapshot iterating a dict another thread grows raises
"dictionary changed size during iteration". Totals are checked exactly; nothing is timed.
"""

from collections import Counter, deque
import sys
import threading
from types import SimpleNamespace

import pytest

from portal_bridge.portal.metrics import MetricsRecorder

THREADS = 4
ROUNDS = 20_000
KEYS = 2_000  # tracks and reasons, first seen while the snapshots run
_HANG_GUARD_S = 120.0  # only so that a broken barrier fails instead of hanging


@pytest.fixture
def fast_switching():
    previous = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    try:
        yield
    finally:
        sys.setswitchinterval(previous)


def _run(writers, reader, n_writers):
    """Start every thread at once; return the exceptions they raised."""
    start = threading.Barrier(n_writers + 1, timeout=_HANG_GUARD_S)
    done = threading.Event()
    errors: list[BaseException] = []

    def guarded(fn, *args):
        def run():
            try:
                start.wait()
                fn(*args)
            except BaseException as exc:  # reported by the test, not lost in a thread
                errors.append(exc)

        return run

    def read_until_done():
        while True:  # at least one snapshot, however fast the writers are
            reader()
            if done.is_set():
                return

    threads = [threading.Thread(target=guarded(writers, i)) for i in range(n_writers)]
    snapper = threading.Thread(target=guarded(read_until_done))
    for t in threads + [snapper]:
        t.start()
    for t in threads:
        t.join(_HANG_GUARD_S)
    done.set()
    snapper.join(_HANG_GUARD_S)
    assert not any(t.is_alive() for t in threads + [snapper]), 'a thread did not finish'
    return errors


def test_recorder_counts_exactly_under_concurrent_writers_and_snapshots(fast_switching):
    m = MetricsRecorder()
    # Every thread walks the same keys in step, so first increments of a key collide.
    names = [f'k{i // THREADS % KEYS}' for i in range(ROUNDS)]
    snapshots = []

    def write(_):
        for i, name in enumerate(names):
            m.drop(name)
            m.frame_received(name, i, i, nbytes=1)
            m.frame_sent(name, 2)
            m.state_sent()
            m.action_received(i, i + 2, in_reply_to_ts_us=i + 1)  # answers an observation

    def read():
        snap = m.snapshot(video_fill={'a': 1}, stalled_tracks=('a',))
        if len(snapshots) < 8:
            snapshots.append(snap)

    errors = _run(write, read, THREADS)
    assert errors == []
    sys.setswitchinterval(0.005)  # the checks below need no switching
    per_key = {k: c * THREADS for k, c in Counter(names).items()}
    total = THREADS * ROUNDS
    t = m.snapshot().transport
    assert t.dropped == per_key
    assert t.frames_received == per_key and t.bytes_received == per_key
    assert t.frames_sent == per_key and t.bytes_sent == {k: 2 * c for k, c in per_key.items()}
    assert set(t.frame_jitter_us) == set(per_key)
    assert (t.states_sent, t.actions_received) == (total, total)
    assert m.snapshot().policy.correlated_received == total
    assert snapshots  # the reader ran alongside the writers
    for earlier, later in zip(snapshots, snapshots[1:]):
        assert earlier.transport.states_sent <= later.transport.states_sent
    for snap in snapshots:  # counters written in one locked step are seen together
        assert sum(snap.transport.frames_received.values()) == sum(snap.transport.bytes_received.values())
        assert snap.transport.actions_received == snap.policy.correlated_received


def test_recorder_reset_races_writers_without_errors(fast_switching):
    m = MetricsRecorder()

    def write(_):
        for i in range(ROUNDS // 4):
            m.drop(f'r{i % 50}')
            m.frame_received(f't{i % 50}', i, i)
            m.rtt_sample(i)

    def reset_and_read():
        m.reset()
        m.snapshot()

    assert _run(write, reset_and_read, THREADS) == []
    sys.setswitchinterval(0.005)
    m.reset()
    snap = m.snapshot()
    assert snap.transport.dropped == {} and snap.rtt.pongs_received == 0 and snap.rtt.rtt_us_last is None


def _stamps(capacity):
    """The attributes OperatorBridge._remember/_reply_to use, without a ROS node."""
    return SimpleNamespace(_recent_lock=threading.Lock(), _recent_obs=deque(maxlen=capacity), _recent_set=set())


def test_operator_bridge_remembers_the_last_distinct_stamps():
    from portal_bridge.nodes.operator_bridge import OperatorBridge

    node = _stamps(4)
    for ts in (1, 2, 2, 3, 2, 4, 5):  # repeated stamps take one slot, so 2 is not evicted early
        OperatorBridge._remember(node, ts)
    assert list(node._recent_obs) == [2, 3, 4, 5]
    assert node._recent_set == {2, 3, 4, 5}


def test_operator_bridge_stamps_stay_consistent_across_threads(fast_switching):
    from builtin_interfaces.msg import Time

    from portal_bridge.nodes.operator_bridge import OperatorBridge

    node = _stamps(64)
    seen = []

    def remember(i):  # the LiveKit thread's observations, here from several threads at once
        for ts in range(i, ROUNDS // 4 * THREADS, THREADS):
            OperatorBridge._remember(node, ts)

    def look_up():  # the executor's ~/action callback
        found = OperatorBridge._reply_to(node, Time(sec=0, nanosec=0))
        if len(seen) < 4:
            seen.append(found)

    assert _run(remember, look_up, THREADS) == []
    assert node._recent_set == set(node._recent_obs) and len(node._recent_obs) == 64
    assert all(found in (0, None) for found in seen)
