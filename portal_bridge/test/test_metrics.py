"""Metric semantics (spec §5): percentiles, means, jitter, counters and reset."""

from portal_bridge.portal.metrics import RING_SIZE, Jitter, MetricsRecorder, SampleRing, percentile


def test_percentile_rounds_half_away_from_zero():
    s = [10, 20, 30, 40]
    # p50 of 4 samples: 0.5 * 3 = 1.5 rounds up to index 2
    assert percentile(s, 0.5) == 30
    assert percentile([1, 2], 0.5) == 2  # 0.5 -> 1 (Python's round() would give 0)
    assert percentile([1, 2, 3, 4, 5, 6], 0.5) == 4  # 2.5 -> 3
    assert percentile(list(range(100)), 0.95) == 94  # 94.05 -> 94
    assert percentile([], 0.5) is None
    assert percentile([7], 0.95) == 7


def test_ring_keeps_last_256_and_integer_mean():
    ring = SampleRing()
    for i in range(1000):
        ring.add(i)
    assert len(ring) == RING_SIZE
    assert ring.sorted()[0] == 1000 - RING_SIZE
    assert ring.mean() == sum(range(1000 - RING_SIZE, 1000)) // RING_SIZE
    small = SampleRing()
    for v in (1, 2, 2):
        small.add(v)
    assert small.mean() == 1  # 5 // 3


def test_jitter_converges_and_truncates_toward_zero():
    j = Jitter()
    # constant transit: jitter stays 0
    for i in range(10):
        j.update(i * 1000, i * 1000 + 500)
    assert j.value == 0
    # alternating transit of +-100: D = 200 each step -> converges to 200 from below
    j = Jitter()
    for i in range(400):
        j.update(i * 1000, i * 1000 + (100 if i % 2 else -100))
    assert 185 <= j.value <= 200
    # decreasing: (|D| - J) negative truncates toward zero
    j.value = 20
    j._prev = (0, 0)
    j.update(1000, 1000)  # D = 0: J += (0 - 20) / 16 = -1.25 -> -1
    assert j.value == 19


def test_recorder_counters_per_track_and_reset():
    m = MetricsRecorder()
    m.frame_received('a', 0, 10, nbytes=100)
    m.frame_received('a', 33_333, 33_350, nbytes=50)
    m.frame_received('b', 0, 5)
    for _ in range(3):
        m.state_sent()
    m.drop('gate', 2)
    m.rtt_sample(0)
    m.correlation(100, 1100)
    m.correlation(0, 50)  # not correlated: skipped
    m.correlation(2000, 1000)  # from the future: skipped
    snap = m.snapshot(video_fill={'a': 1}, state_fill=2)
    assert snap.transport.frames_received == {'a': 2, 'b': 1}
    assert snap.transport.bytes_received == {'a': 150}
    assert snap.transport.states_sent == 3
    assert snap.transport.dropped == {'gate': 2}
    assert snap.rtt.rtt_us_last == 1 and snap.rtt.pongs_received == 1
    assert snap.policy.correlated_received == 1 and snap.policy.e2e_us_p50 == 1000
    assert snap.buffers.video_fill == {'a': 1} and snap.buffers.state_fill == 2
    assert snap.sync.match_delta_us_p50 is None
    m.reset()
    snap = m.snapshot()
    assert snap.transport.frames_received == {} and snap.rtt.rtt_us_last is None
    assert snap.policy.correlated_received == 0 and snap.transport.dropped == {}


def test_recorder_methods_count_every_metric():
    m = MetricsRecorder()
    m.frame_sent('cam')  # a WebRTC frame: no byte count
    m.frame_sent('png', 300)
    m.frame_sent('png', 200)
    m.frame_publisher_full('png')
    m.action_sent()
    m.action_chunk_sent()
    m.action_chunk_sent()
    m.ping_sent()
    m.pong_ignored()
    m.state_received(0, 100)
    m.state_received(33_333, 33_533)  # D = 100: J = 100 // 16
    m.action_received(0, 500, in_reply_to_ts_us=200)
    m.action_received(1000, 1500)  # answers no observation
    m.action_chunk_received(0, 900, in_reply_to_ts_us=100)
    t = m.snapshot().transport
    assert t.frames_sent == {'cam': 1, 'png': 2} and t.bytes_sent == {'png': 500}
    assert t.frames_dropped_publisher_full == {'png': 1}
    assert (t.actions_sent, t.action_chunks_sent) == (1, 2)
    assert (t.states_received, t.state_jitter_us) == (2, 6)
    assert (t.actions_received, t.action_chunks_received) == (2, 1)
    snap = m.snapshot()
    assert (snap.rtt.pings_sent, snap.rtt.pongs_ignored, snap.rtt.pongs_received) == (1, 1, 0)
    assert snap.policy.correlated_received == 2
    assert sorted(m.e2e.sorted()) == [300, 800]


def test_a_very_late_pong_to_our_own_ping_is_a_sample_not_another_peers_pong():
    """Under a flood pongs came back 30 s late; a 32-ping memory counted them as foreign (ignored)."""
    from support.portal_peers import fixture_contract

    from portal_bridge.portal import Robot
    from portal_bridge.portal.room.rtt import OWN_PINGS_REMEMBERED
    from portal_bridge.portal.wire.packets import RTT_PONG, encode_rtt

    robot = Robot(fixture_contract())
    for ts in range(1, 101):  # 100 pings at 1 Hz, none answered yet
        robot._rtt.remember(ts)
    robot._rtt.on_packet(encode_rtt(RTT_PONG, 1), 'operator')  # the pong to the oldest, 99 pings later
    robot._rtt.on_packet(encode_rtt(RTT_PONG, 1), 'operator')  # answered twice: the second is not ours any more
    robot._rtt.on_packet(encode_rtt(RTT_PONG, 123456), 'rogue')  # never sent by us
    rtt = robot.metrics().rtt
    assert (rtt.pongs_received, rtt.pongs_ignored) == (1, 2)
    for ts in range(1000, 1000 + OWN_PINGS_REMEMBERED + 1):
        robot._rtt.remember(ts)
    assert 1000 not in robot._rtt._own_pings and len(robot._rtt._own_pings) == OWN_PINGS_REMEMBERED  # bounded
