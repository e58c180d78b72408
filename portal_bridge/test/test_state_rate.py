"""State forwarding at state_rate_hz, decided by stamps (no ROS)."""

import random

import pytest

from portal_bridge.portal.sync_buffer import SyncBuffer
from portal_bridge.ros.state_rate import FramePacedStates, StateRateLimiter


def admitted(limiter, stamps):
    return [s for s in stamps if limiter.admit(s)]


def test_a_100_hz_stream_is_forwarded_at_30_hz_with_its_phase():
    limiter = StateRateLimiter(30.0)
    out = admitted(limiter, [i * 10_000 for i in range(3001)])  # 30 s of 100 Hz
    assert len(out) == pytest.approx(901, abs=1)
    gaps = [b - a for a, b in zip(out, out[1:])]
    assert min(gaps) >= 30_000 and max(gaps) <= 40_000
    assert limiter.skipped == 3001 - len(out)


def test_the_arrival_order_and_bursts_do_not_matter_only_the_stamps():
    """A backlog delivered at once (the executor was busy) still yields states a period apart."""
    limiter = StateRateLimiter(30.0)
    rng = random.Random(7)
    stamps = [i * 10_000 + rng.randint(-500, 500) for i in range(2000)]
    out = admitted(limiter, stamps)  # whatever the arrival times were, only stamps are looked at
    gaps = [b - a for a, b in zip(out, out[1:])]
    assert min(gaps) >= 1e6 / 30 / 2, 'two states closer than half a period would compete for one frame'
    assert len(out) / (stamps[-1] / 1e6) == pytest.approx(30, rel=0.02)


def test_after_a_gap_the_next_state_is_at_least_half_a_period_later():
    limiter = StateRateLimiter(30.0)
    assert limiter.admit(0)
    assert limiter.admit(500_000)  # after a 0.5 s gap: forwarded at once
    assert not limiter.admit(510_000)  # not 10 ms later
    assert limiter.admit(520_000)  # >= half a period (16.7 ms) after it
    # then the phase from the gap on: due max(516 667 + 33 333, 520 000 + 16 667) = 550 000
    assert not limiter.admit(549_000)
    assert limiter.admit(550_000)


def test_a_clock_that_jumps_back_starts_the_schedule_over():
    limiter = StateRateLimiter(30.0)
    assert limiter.admit(10_000_000)
    assert limiter.admit(2_000_000)  # a replayed bag looping, sim time reset: not silenced forever
    assert not limiter.admit(2_010_000)


def test_rate_zero_forwards_everything_and_bad_rates_are_refused():
    assert admitted(StateRateLimiter(0.0), [1, 2, 3]) == [1, 2, 3]
    with pytest.raises(ValueError):
        StateRateLimiter(float('nan'))
    with pytest.raises(ValueError):
        StateRateLimiter(-1.0)


# -- pacing by the camera ------------------------------------------------------------------------------

FRAME_US = 1e6 / 30


def sim_streams(seconds=60, seed=3):
    """A 100 Hz joint driver and a 30 fps camera on one host, each with a few ms of jitter."""
    rng = random.Random(seed)
    joints = [round(i * 10_000 + rng.uniform(0, 3_000)) for i in range(seconds * 100)]
    frames = [round(i * FRAME_US + 7_000 + rng.uniform(0, 4_000)) for i in range(seconds * 30)]
    return joints, frames


def merged(joints, frames, lag_us=0):
    """Arrival order at robot_bridge: each message when stamped (states ``lag_us`` later)."""
    events = [(s + lag_us, 'state', s) for s in joints] + [(f, 'frame', f) for f in frames]
    return sorted(events)


def nearest_frame(stamp, frames):
    return min(frames, key=lambda f: abs(f - stamp))


def operator_drops(states, frames, video_delay_us=40_000):
    """Portal's sync on the operator: the forwarded states and every frame, in arrival order.

    Video reaches the operator later than the states (encoding, jitter buffer, decoding: 30-60 ms
    on one host), so states wait for their frames and are matched knowing the next state.
    """
    sync = SyncBuffer(['front'], search_range_us=50_000)
    events = sorted([(s, 0, s) for s in states] + [(f + video_delay_us, 1, f) for f in frames])
    for _, kind, ts in events:
        sync.push_state(ts, None) if kind == 0 else sync.push_frame('front', ts, None)
    return sync.stats.states_dropped, sync.stats.observations_emitted


def test_one_state_per_frame_the_nearest_and_the_operator_drops_none():
    joints, frames = sim_streams()
    paced = FramePacedStates(FRAME_US)
    sent = []
    for _, kind, ts in merged(joints, frames):
        picked = paced.offer(ts, ts) if kind == 'state' else paced.on_frame(ts, 0.0)
        sent += [(p, nearest_frame(p, frames)) for p, _ in picked]
    assert len(sent) >= len(frames) - 1  # the first frame may come before any state
    assert all(abs(s - f) <= 13_000 for s, f in sent)  # the nearest of a 100 Hz stream (with its jitter)
    states = [s for s, _ in sent]
    assert states == sorted(set(states))
    dropped, emitted = operator_drops(states, frames)
    assert dropped == 0 and emitted == len(states)


def test_states_selected_by_rate_can_lose_their_frame_and_paced_ones_cannot():
    """Stamps captured in the demo at a '[sync-drop] ... track front is 51 ms ahead' (relative, us).

    Rate selection forwarded three states 30 and 28.8 ms apart across two frame periods: the
    first took the frame at -15.6 ms, the frame at +17.8 ms is nearer the third, so the middle one
    had none and was dropped. Paced by that camera, each frame gets the state nearest to it.
    """
    frames = [-82_400, -49_000, -15_600, 17_800, 51_300, 84_700]
    by_rate = [-96_500, -63_200, -30_000, 0, 28_800, 62_100]
    assert operator_drops(by_rate, frames)[0] == 1
    joints = list(range(-100_000, 100_000, 10_000))  # the 100 Hz driver those were picked from
    paced = FramePacedStates(FRAME_US)
    sent = []
    for _, kind, ts in merged(joints, frames):
        picked = paced.offer(ts, ts) if kind == 'state' else paced.on_frame(ts, 0.0)
        sent += [p for p, _ in picked]
    assert len(sent) == len(frames) and operator_drops(sent, frames)[0] == 0


def test_states_that_arrive_after_their_frame_are_still_paired_one_per_frame():
    joints, frames = sim_streams(seconds=10)
    paced = FramePacedStates(FRAME_US)
    sent = []
    for _, kind, ts in merged(joints, frames, lag_us=5_000):  # joint states 5 ms behind the camera
        picked = paced.offer(ts, ts) if kind == 'state' else paced.on_frame(ts, 0.0)
        sent += [p for p, _ in picked]
    assert sent == sorted(set(sent)) and len(sent) >= len(frames) - 2
    assert operator_drops(sent, frames)[0] == 0


def test_pacing_stops_when_the_camera_is_silent_and_old_states_are_never_sent():
    paced = FramePacedStates(FRAME_US, silent_s=0.5)
    assert not paced.pacing(0.0)
    assert paced.offer(1_000, 'a') == []
    assert paced.on_frame(2_000, now=10.0) == []  # its nearest state may still come
    assert paced.offer(3_500, 'b') == [(1_000, 'a')]  # a state after the frame: decided, 'a' is nearer
    assert paced.pacing(10.4) and not paced.pacing(10.6)
    assert paced.offer(500, 'older than one sent') == []
    assert paced.on_frame(40_000, now=10.1) == []
    assert paced.on_frame(200_000, now=10.2) == []  # 'b' is more than a frame period from 40 000
    assert paced.offer(400_000, 'far from every frame') == []  # more than a frame period away: none
