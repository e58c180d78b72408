"""SyncBuffer behaviour (spec §4): matching, waiting, dropping, reuse, overflow, stall policy."""

import logging

from hypothesis import given, settings
from hypothesis import strategies as st
import pytest

from portal_bridge.portal.metrics import SyncStats
from portal_bridge.portal.sync_buffer import StallPolicy, SyncBuffer
from portal_bridge.portal.wire.contract import search_range_us

R = search_range_us(30, 1.5)  # 50 000 us


class FakeClock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


def make(tracks=('cam',), r=R, slack=5, reuse=False, stall=None, clock=None) -> SyncBuffer:
    return SyncBuffer(
        list(tracks), r, slack, slack, reuse_stale_frames=reuse, stall_policy=stall, stats=SyncStats(),
        clock=clock or FakeClock(),
    )  # fmt: skip


def frames_of(obs) -> dict:
    return dict(obs.frame_timestamps_us)


# -- matching ----------------------------------------------------------------------------------------


def test_search_range_table():
    table = {
        (15, 0.5): 33333, (15, 1.0): 66666, (15, 1.5): 100000, (15, 2.0): 133333,
        (30, 0.5): 16666, (30, 1.0): 33333, (30, 1.5): 50000, (30, 2.0): 66666,
        (60, 0.5): 8333, (60, 1.0): 16666, (60, 1.5): 25000, (60, 2.0): 33333,
        (100, 0.5): 5000, (100, 1.0): 10000, (100, 1.5): 15000, (100, 2.0): 20000,
    }  # fmt: skip
    for (fps, tol), r in table.items():
        assert search_range_us(fps, tol) == r, (fps, tol)
    assert search_range_us(30, float('inf')) == 2**64 - 1


def test_single_track_exact_match():
    sb = make()
    assert not sb.push_frame('cam', 1000, 'f0')
    out = sb.push_state(1000, 's0')
    assert [o.timestamp_us for o in out.observations] == [1000]
    obs = out.observations[0]
    assert obs.state == 's0' and obs.frames == {'cam': 'f0'} and obs.match_delta_us == 0
    assert sb.stats.observations_emitted == 1


def test_state_waits_for_frame_then_matches():
    sb = make()
    out = sb.push_state(10_000, 's')
    assert not out and sb.blocker == 'cam'
    assert sb.stats.last_blocker_track == 'cam'
    out = sb.push_frame('cam', 12_000, 'f')
    assert frames_of(out.observations[0]) == {'cam': 12_000}
    assert out.observations[0].match_delta_us == 2000
    assert sb.blocker is None


def test_nearest_candidate_wins():
    sb = make()
    for ts in (0, 40_000, 47_000, 55_000):
        sb.push_frame('cam', ts, ts)
    out = sb.push_state(50_000, 's')
    assert frames_of(out.observations[0]) == {'cam': 47_000}
    # frames up to and including the match are drained, later ones stay
    assert sb.video_fill() == {'cam': 1}


def test_exact_boundary_drops_and_just_inside_matches():
    sb = make()
    sb.push_frame('cam', R, 'f')
    out = sb.push_state(0, 's')  # |S - F| == R is not a candidate and F >= S + R: drop
    assert [d.reason for d in out.drops] == ['sync'] and not out.observations
    sb2 = make()
    sb2.push_frame('cam', R - 1, 'f')
    out = sb2.push_state(0, 's')
    assert frames_of(out.observations[0]) == {'cam': R - 1}


def test_back_based_drop_uses_newest_frame():
    sb = make()
    sb.push_state(100_000, 's')
    out = sb.push_frame('cam', 20_000, 'old')  # far below S, but newest < S + R: keep waiting
    assert not out and sb.blocker == 'cam'
    out = sb.push_frame('cam', 150_000, 'new')  # newest >= S + R: no frame can ever match
    assert [d.timestamp_us for d in out.drops] == [100_000]
    assert sb.stats.states_dropped == 1


def test_multi_track_waits_for_every_track_and_reports_worst_delta():
    sb = make(('a', 'b'))
    sb.push_state(100_000, 's')
    assert sb.blocker == 'a'
    assert not sb.push_frame('a', 99_000, 'fa')
    assert sb.blocker == 'b'
    out = sb.push_frame('b', 104_000, 'fb')
    obs = out.observations[0]
    assert obs.frames == {'a': 'fa', 'b': 'fb'} and obs.match_delta_us == 4000


def test_blocker_deferral_non_blocking_track_push_does_not_sync():
    sb = make(('a', 'b'))
    sb.push_state(0, 's')
    sb.push_frame('a', 0, 'a0')
    assert sb.blocker == 'b'
    assert not sb.push_frame('a', 1000, 'a1')  # not the blocker, no eviction: nothing runs
    out = sb.push_frame('b', 0, 'b0')
    assert frames_of(out.observations[0]) == {'a': 0, 'b': 0}


def test_eviction_on_full_video_buffer():
    sb = make(slack=2)
    for ts in (0, 1, 2):
        sb.push_frame('cam', ts, ts)
    assert sb.video_fill() == {'cam': 2}
    assert sb.stats.evictions['cam'] == 1


def test_eviction_triggers_sync_on_non_blocking_track():
    sb = make(('a', 'b'), slack=3)
    sb.push_state(0, 's')
    assert sb.blocker == 'a'
    for ts in (100_000, 200_000, 300_000):
        assert not sb.push_frame('b', ts, ts)  # b is not the blocker: no sync, no drop yet
    out = sb.push_frame('b', 400_000, 'evicting')
    assert [d.timestamp_us for d in out.drops] == [0]


def test_cursor_advances_through_a_stream():
    sb = make()
    emitted = []
    for i in range(20):
        emitted += sb.push_frame('cam', i * 33_333, i).observations
        emitted += sb.push_state(i * 33_333 + 1_000, i).observations
    assert [o.state for o in emitted] == list(range(20))
    assert all(o.frames['cam'] == o.state for o in emitted)
    assert sb.video_fill() == {'cam': 0}


def test_out_of_order_state_rewinds_cursor():
    r = search_range_us(30, 0.5)  # 16 666
    sb = make(('a', 'b'), r=r)
    for ts in (0, 33_333, 66_666):
        sb.push_frame('a', ts, ts)
    for ts in (33_333, 100_000):
        sb.push_frame('b', ts, ts)
    out = sb.push_state(66_666, 'late')  # a advances its cursor to 66 666; b has nothing near: drop
    assert [d.timestamp_us for d in out.drops] == [66_666]
    out = sb.push_state(33_333, 'early')  # arrives after a later state: cursor must rewind
    assert frames_of(out.observations[0]) == {'a': 33_333, 'b': 33_333}


def test_fair_share_leaves_frame_for_closer_next_state():
    sb = make()
    sb.push_state(0, 's0')
    sb.push_state(33_333, 's1')
    # 20 000 is within s0's window, but s1 is closer to it: it is left for s1 and s0 waits
    assert not sb.push_frame('cam', 20_000, 'f20')
    out = sb.push_frame('cam', 66_666, 'f66')
    assert [d.timestamp_us for d in out.drops] == [0]
    assert [(o.timestamp_us, frames_of(o)['cam']) for o in out.observations] == [(33_333, 20_000)]


def test_single_state_takes_frame_without_a_competing_next_state():
    sb = make()
    sb.push_frame('cam', 20_000, 'f20')
    assert frames_of(sb.push_state(0, 's0').observations[0]) == {'cam': 20_000}


def test_neighbour_match_with_wide_tolerance():
    sb = make(r=search_range_us(30, 2.0))
    sb.push_frame('cam', 60_000, 'f')
    assert frames_of(sb.push_state(0, 's').observations[0]) == {'cam': 60_000}


def test_tight_tolerance_drops_state_when_its_frame_was_lost():
    sb = make(r=search_range_us(30, 0.5))
    emitted, dropped = [], []
    for ts in (0, 33_333, 66_666):
        if ts != 33_333:  # the 33 333 frame was lost
            out = sb.push_frame('cam', ts, ts)
            emitted += out.observations
            dropped += out.drops
        out = sb.push_state(ts, ts)
        emitted += out.observations
        dropped += out.drops
    assert [o.timestamp_us for o in emitted] == [0, 66_666]
    assert [d.timestamp_us for d in dropped] == [33_333]


def test_state_overflow_drops_oldest_first():
    sb = make(slack=2)
    sb.push_state(0, 's0')
    sb.push_state(33_333, 's1')
    out = sb.push_state(66_666, 's2')
    assert [(d.timestamp_us, d.reason) for d in out.drops] == [(0, 'overflow')]
    assert sb.state_fill == 2
    assert sb.stats.states_dropped == 1
    assert sb.stats.states_dropped_overflow == 1


def test_overflow_resets_head_and_reports_drop_before_observation():
    sb = make(slack=2)
    sb.push_state(0, 's0')
    sb.push_state(33_333, 's1')
    assert not sb.push_frame('cam', 40_000, 'f40')  # fair share: s0 waits, s1 is closer
    assert sb.blocker == 'cam'
    out = sb.push_state(66_666, 's2')  # evicts s0; the new head s1 takes f40 at once
    assert [(d.timestamp_us, d.reason) for d in out.drops] == [(0, 'overflow')]
    assert [(o.timestamp_us, frames_of(o)) for o in out.observations] == [(33_333, {'cam': 40_000})]
    assert sb.state_fill == 1 and sb.blocker == 'cam'


def test_undeclared_track_is_ignored():
    sb = make()
    assert not sb.push_frame('other', 0, 'x')
    assert sb.video_fill() == {'cam': 0}


def test_state_only_mode_emits_every_state_immediately():
    sb = make(tracks=())
    for i in range(10):
        out = sb.push_state(i, i)
        assert [o.timestamp_us for o in out.observations] == [i]
        assert out.observations[0].frames == {} and out.observations[0].match_delta_us == 0
        assert not out.drops


def test_clear_forgets_everything():
    sb = make(reuse=True)
    sb.push_frame('cam', 0, 'f')
    assert sb.push_state(0, 's').observations
    sb.push_frame('cam', 500_000, 'g')
    sb.clear()
    assert sb.video_fill() == {'cam': 0} and sb.state_fill == 0
    assert not sb.push_state(1_000_000, 's')  # last_emitted forgotten: strict wait again
    assert sb.blocker == 'cam'


def test_late_frames_are_dropped_and_counted():
    sb = make()
    sb.push_frame('cam', 50_000, 'new')
    assert not sb.push_frame('cam', 10_000, 'late')
    assert sb.stats.late_frames_dropped == 1
    assert sb.video_fill() == {'cam': 1}


# -- reuse_stale_frames ------------------------------------------------------------------------------


def test_reuse_strict_before_first_emission():
    sb = make(reuse=True)
    assert not sb.push_state(0, 's')
    assert sb.blocker == 'cam'
    out = sb.push_frame('cam', 200_000, 'f')  # no last_emitted yet: the past-horizon drop applies
    assert [d.timestamp_us for d in out.drops] == [0]


def test_reuse_empty_buffer_emits_last_emitted_immediately():
    sb = make(reuse=True)
    sb.push_frame('cam', 0, 'f0')
    sb.push_state(0, 's0')
    out = sb.push_state(100_000, 's1')
    obs = out.observations[0]
    assert obs.frames == {'cam': 'f0'} and obs.stale == {'cam'} and obs.match_delta_us == 100_000
    assert sb.stats.stale_observations_emitted == 1


def test_reuse_below_horizon_frame_is_used_and_drained():
    sb = make(reuse=True)
    sb.push_frame('cam', 0, 'f0')
    sb.push_state(0, 's0')
    sb.push_frame('cam', 10_000, 'f10')
    out = sb.push_state(200_000, 's1')  # f10 is >= R below S: stale, and drained
    assert out.observations[0].frames == {'cam': 'f10'} and out.observations[0].stale == {'cam'}
    assert sb.video_fill() == {'cam': 0}


def test_reuse_past_horizon_frames_stay_for_later_states():
    sb = make(reuse=True)
    sb.push_frame('cam', 0, 'f0')
    sb.push_state(0, 's0')
    sb.push_frame('cam', 300_000, 'f300')
    out = sb.push_state(100_000, 's1')  # no drop after first emission: reuse f0
    assert out.observations[0].frames == {'cam': 'f0'} and not out.drops
    assert sb.video_fill() == {'cam': 1}
    out = sb.push_state(300_000, 's2')
    assert out.observations[0].frames == {'cam': 'f300'} and out.observations[0].stale == frozenset()


def test_reuse_prefers_fresh_match():
    sb = make(reuse=True)
    sb.push_frame('cam', 0, 'f0')
    sb.push_state(0, 's0')
    sb.push_frame('cam', 33_000, 'f33')
    out = sb.push_state(33_333, 's1')
    assert out.observations[0].frames == {'cam': 'f33'} and not out.observations[0].stale


def test_reuse_fallback_follows_latest_emission_no_drift():
    sb = make(reuse=True)
    deltas = []
    for i in range(10):
        sb.push_frame('cam', i * 33_333, i)
        out = sb.push_state(i * 33_333, i)
        out2 = sb.push_state(i * 33_333 + 10_000, f'{i}b')  # reuses frame i, not frame 0
        deltas += [o.match_delta_us for o in out.observations + out2.observations]
        assert out2.observations[0].frames == {'cam': i}
    assert max(deltas) == 10_000


def test_reuse_overflow_still_drops():
    sb = make(('a', 'b'), reuse=True, slack=2)
    sb.push_state(0, 's0')
    sb.push_state(1, 's1')
    out = sb.push_state(2, 's2')
    assert [d.reason for d in out.drops] == ['overflow']


def test_reuse_mixed_fresh_and_stale_tracks():
    sb = make(('a', 'b'), reuse=True)
    sb.push_frame('a', 0, 'a0')
    sb.push_frame('b', 0, 'b0')
    sb.push_state(0, 's0')
    sb.push_frame('a', 33_333, 'a1')
    out = sb.push_state(33_333, 's1')
    assert out.observations[0].frames == {'a': 'a1', 'b': 'b0'}
    assert out.observations[0].stale == {'b'}


def test_reuse_last_blocker_only_before_first_emission():
    sb = make(('a', 'b'), reuse=True)
    sb.push_state(0, 's0')
    assert sb.stats.last_blocker_track == 'a'
    sb.push_frame('a', 0, 'a0')
    assert sb.stats.last_blocker_track == 'b'
    sb.push_frame('b', 0, 'b0')
    for i in range(1, 5):
        sb.push_state(i * 100_000, i)
    assert sb.stats.last_blocker_track == 'b'
    assert sb.stats.observations_emitted == 5


def test_reuse_clear_resets_last_emitted():
    sb = make(reuse=True)
    sb.push_frame('cam', 0, 'f')
    sb.push_state(0, 's')
    sb.clear()
    assert not sb.push_state(100_000, 's2')


# -- stall policy (opt-in; K1) -------------------------------------------------------------------------


def test_default_policy_waits_forever_on_a_dead_track():
    clock = FakeClock()
    sb = make(('a', 'b'), clock=clock)
    sb.push_frame('a', 0, 'a0')
    sb.push_state(0, 's0')
    clock.t += 3600
    assert not sb.poll()
    assert sb.blocker == 'b' and sb.stalled_tracks() == []


def test_stall_policy_emits_without_dead_track_and_recovers():
    clock = FakeClock()
    sb = make(('a', 'b'), stall=StallPolicy(max_lag_ms=100), clock=clock)
    sb.push_frame('a', 0, 'a0')
    assert not sb.push_state(0, 's0')  # b has delivered nothing yet, but is not stalled yet
    clock.t += 0.05
    assert not sb.poll()
    clock.t += 0.06  # 110 ms without a frame on b (or on a)
    sb.push_frame('a', 33_333, 'a1')  # a stays live
    out = sb.poll()
    assert [o.timestamp_us for o in out.observations] == [0]
    obs = out.observations[0]
    assert obs.frames == {'a': 'a0'} and obs.omitted == ('b',)
    assert sb.stalled_tracks() == ['b']
    # while b stays dead, states keep flowing with a only
    out = sb.push_state(33_333, 's1')
    assert out.observations[0].frames == {'a': 'a1'} and out.observations[0].omitted == ('b',)
    # b comes back: it is live again and observations wait for it again
    sb.push_frame('b', 66_666, 'b2')
    assert sb.stalled_tracks() == []
    sb.push_frame('a', 66_666, 'a2')
    out = sb.push_state(66_666, 's2')
    assert out.observations[0].frames == {'a': 'a2', 'b': 'b2'} and out.observations[0].omitted == ()


def test_stall_policy_rejects_non_positive_lag():
    with pytest.raises(ValueError):
        StallPolicy(0)


# -- invariants on random streams ---------------------------------------------------------------------


@st.composite
def streams(draw):
    n_tracks = draw(st.integers(0, 3))
    tracks = [f't{i}' for i in range(n_tracks)]
    period = 33_333
    events = []
    for i in range(draw(st.integers(1, 60))):
        base = i * period
        events.append(('s', None, base + draw(st.integers(-20_000, 20_000))))
        for t in tracks:
            if draw(st.booleans()) or draw(st.booleans()):  # ~75 % of frames arrive
                events.append(('f', t, base + draw(st.integers(-25_000, 25_000))))
    # arrival order: shuffle locally but keep per-stream order monotonic
    order = draw(st.permutations(range(len(events))))
    arrived = [events[i] for i in order]
    by_stream = {}
    for kind, track, ts in arrived:
        by_stream.setdefault((kind, track), []).append(ts)
    for key in by_stream:
        by_stream[key].sort()
    cursor = {k: 0 for k in by_stream}
    out = []
    for kind, track, _ in arrived:
        key = (kind, track)
        out.append((kind, track, by_stream[key][cursor[key]]))
        cursor[key] += 1
    return tracks, out


@settings(max_examples=300, deadline=None)
@given(streams(), st.integers(1, 8), st.sampled_from([0.5, 1.0, 1.5, 2.0]), st.booleans())
def test_invariants_on_random_streams(stream, slack, tolerance, reuse):
    tracks, events = stream
    r = search_range_us(30, tolerance)
    sb = SyncBuffer(tracks, r, slack, slack, reuse_stale_frames=reuse, clock=FakeClock())
    pushed, emitted, dropped = [], [], []
    for kind, track, ts in events:
        if kind == 's':
            pushed.append(ts)
            out = sb.push_state(ts, ts)
        else:
            out = sb.push_frame(track, ts, ts)
        emitted += out.observations
        dropped += out.drops
        assert sb.state_fill <= slack
        assert all(n <= slack for n in sb.video_fill().values())
    for o in emitted:
        assert set(o.frames) == set(tracks)
        if not reuse:
            assert all(abs(o.timestamp_us - f) < r for f in o.frame_timestamps_us.values())
        assert o.match_delta_us == max([abs(o.timestamp_us - f) for f in o.frame_timestamps_us.values()] or [0])
    # every pushed state is emitted, dropped or still buffered, exactly once
    accounted = sorted([o.timestamp_us for o in emitted] + [d.timestamp_us for d in dropped])
    pending = [ts for ts, _ in sb._states]
    assert sorted(accounted + pending) == sorted(pushed)
    # states pushed in timestamp order come out in timestamp order
    times = [o.timestamp_us for o in emitted]
    assert times == sorted(times)
    assert sb.stats.observations_emitted == len(emitted)
    assert sb.stats.states_dropped == len(dropped)
    assert sb.stats.states_dropped_overflow == sum(d.reason == 'overflow' for d in dropped)


def test_stress_hundred_steps_thirty_fps():
    sb = make(('a', 'b'))
    emitted = []
    for i in range(100):
        t = i * 33_333
        emitted += sb.push_frame('a', t + 1_000, i).observations
        emitted += sb.push_state(t, i).observations
        emitted += sb.push_frame('b', t - 2_000, i).observations
    assert [o.state for o in emitted] == list(range(100))
    assert all(o.frames == {'a': o.state, 'b': o.state} for o in emitted)
    assert sb.stats.states_dropped == 0
    assert sb.stats.match_delta.percentiles(0.5) == [2_000]


def test_drops_while_the_tracks_start_are_counted_and_said_once_as_info(caplog):
    """Data flows before the first frame is decoded, and tracks settle in the first second after it:
    drops then are the start, not a fault (counted, said in INFO lines); later ones are warnings."""
    clock = FakeClock()
    sync = SyncBuffer(['front'], search_range_us=50_000, state_capacity=2, clock=clock)
    with caplog.at_level(logging.INFO, logger='portal_bridge.portal.sync'):
        for i in range(5):  # no frame yet: the oldest states overflow
            sync.push_state(i * 33_333, None)
        assert sync.stats.states_dropped == 3
        assert not [r for r in caplog.records if r.levelno >= logging.WARNING]
        out = sync.push_frame('front', 3 * 33_333, None)  # the first frame: the head state pairs with it
        assert [o.timestamp_us for o in out.observations] == [3 * 33_333]
        starts = [r.getMessage() for r in caplog.records if '[sync-start]' in r.getMessage()]
        assert starts == ['[sync-start] first observation; 3 states dropped while the tracks started']
        caplog.clear()
        clock.t += 0.5  # still settling: the track is ahead, states 4 and 10 dropped and counted, no warning
        sync.push_state(10 * 33_333, None)
        sync.push_frame('front', 12 * 33_333, None)
        assert sync.stats.states_dropped == 5
        assert not [r for r in caplog.records if r.levelno >= logging.WARNING]
        clock.t += 0.6  # settled: the next observation closes the period with its summary
        sync.push_state(13 * 33_333, None)
        sync.push_frame('front', 13 * 33_333, None)
        starts = [r.getMessage() for r in caplog.records if '[sync-start]' in r.getMessage()]
        assert starts == [
            '[sync-start] 2 more states dropped in the first 1.0 s of observations, while the tracks settled'
        ]
        caplog.clear()
        sync.push_state(20 * 33_333, None)
        sync.push_frame('front', 22 * 33_333, None)  # the state's frame never came: now a warning
    assert [r.levelno for r in caplog.records if '[sync-drop]' in r.getMessage()] == [logging.WARNING]
    assert sync.stats.states_dropped == 6


def test_settling_ends_at_a_drop_too_and_restarts_after_clear(caplog):
    clock = FakeClock()
    sync = SyncBuffer(['front'], search_range_us=50_000, clock=clock, settle_s=0.2)
    with caplog.at_level(logging.INFO, logger='portal_bridge.portal.sync'):
        sync.push_state(0, None)
        assert sync.push_frame('front', 0, None).observations
        sync.push_state(1 * 33_333, None)
        sync.push_frame('front', 4 * 33_333, None)  # settling: counted only
        clock.t += 0.3
        sync.push_state(20 * 33_333, None)
        sync.push_frame('front', 24 * 33_333, None)  # after it: the summary, then the warning
        messages = [(r.levelno, r.getMessage().split(']')[0] + ']') for r in caplog.records]
        assert messages == [(logging.INFO, '[sync-start]'), (logging.WARNING, '[sync-drop]')]
        caplog.clear()
        sync.clear()  # a new session starts over: its first drops are the start again
        sync.push_state(30 * 33_333, None)
        sync.push_frame('front', 34 * 33_333, None)
        assert not [r for r in caplog.records if r.levelno >= logging.WARNING]
    with pytest.raises(ValueError):
        SyncBuffer(['front'], 50_000, settle_s=-1)
