"""Which executed action answers which observation (the recorder's matching rule)."""

from __future__ import annotations

import math

import numpy as np
import pytest

pytest.importorskip('pyarrow', reason='datasets need pyarrow (requirements/*.txt)')
pytest.importorskip('av', reason='datasets need PyAV (requirements/*.txt)')

from portal_bridge.dataset.matching import ActionIn, FrameMatcher, ObservationIn  # noqa: E402

TICK = 33_333
WAIT = 500_000


def obs(t: int, received: int | None = None) -> ObservationIn:
    return ObservationIn(t, [t / 1e6], {}, received if received is not None else t)


def act(t: int, sender: str = 'pilot', reply: int = 0, received: int | None = None, v: float | None = None) -> ActionIn:
    return ActionIn(t, sender, [v if v is not None else t / 1e6], reply, received if received is not None else t)


def test_in_reply_to_wins_over_time_and_each_action_answers_once():
    m = FrameMatcher(TICK, WAIT)
    m.add_observation(obs(1_000_000))
    m.add_observation(obs(1_033_333))
    # stamped inside the first observation's tick, but it says it answers the second
    m.add_executed(act(1_010_000, reply=1_033_333))
    m.add_executed(act(1_020_000))  # uncorrelated: the first observation's tick
    frames = m.ready(1_040_000)
    assert [(f.observation_ts_us, f.action_ts_us) for f in frames] == [(1_000_000, 1_020_000), (1_033_333, 1_010_000)]
    assert (m.matched_by_reply, m.matched_by_time, m.unmatched_actions) == (1, 1, 0)


def test_an_action_that_arrives_before_its_observation_still_matches():
    m = FrameMatcher(TICK, WAIT)
    m.add_executed(act(2_000_100, reply=2_000_000, received=2_000_200))
    assert m.ready(2_000_300) == []
    m.add_observation(obs(2_000_000, received=2_000_400))
    (frame,) = m.ready(2_000_500)
    assert frame.action_ts_us == 2_000_100 and frame.action_sender == 'pilot'


def test_frames_wait_for_their_action_then_go_without_it_in_order():
    m = FrameMatcher(TICK, WAIT)
    m.add_observation(obs(0))
    m.add_observation(obs(TICK))
    m.add_executed(act(TICK + 5))  # the second is matched, the first not yet
    assert m.ready(WAIT - 1) == []  # the first still waits, and the second waits behind it
    frames = m.ready(WAIT)
    assert [f.action for f in frames][0] is None and frames[1].action_ts_us == TICK + 5
    assert m.frames_without_action == 1
    m.add_executed(act(10, reply=0, received=WAIT + 1))  # its observation is gone: unmatched
    assert m.ready(2 * WAIT + 1) == [] and m.unmatched_actions == 1


def test_an_action_outside_every_tick_answers_nothing():
    m = FrameMatcher(TICK, WAIT)
    m.add_observation(obs(1_000_000))
    m.add_executed(act(1_000_000 + TICK))  # one tick later is the next observation's
    m.add_executed(act(999_999))  # before the observation
    (frame,) = m.ready(1_000_000 + WAIT)
    assert frame.action is None
    assert m.ready(3_000_000) == [] and m.unmatched_actions == 2


def test_candidates_get_their_own_column_and_nan_when_silent():
    m = FrameMatcher(TICK, WAIT, candidates=('shadow', 'other'))
    m.add_observation(obs(0))
    m.add_executed(act(100, 'human'))
    m.add_candidate('shadow', act(200, 'shadow', v=7.0))
    m.add_candidate('stranger', act(200, 'stranger'))  # not listed: ignored
    assert m.ready(1000) == []  # 'other' may still come
    (frame,) = m.ready(WAIT)
    assert frame.action_sender == 'human' and dict(frame.candidates) == {'shadow': [7.0]}


def test_a_repeated_observation_is_one_frame():
    m = FrameMatcher(TICK, WAIT)
    m.add_observation(obs(5))
    m.add_observation(obs(5))
    m.add_executed(act(6))
    assert len(m.ready(10)) == 1 and m.flush() == []


def test_flush_ends_an_episode_with_every_observation():
    m = FrameMatcher(TICK, WAIT)
    for i in range(5):
        m.add_observation(obs(i * TICK))
    m.add_executed(act(2 * TICK + 1))
    m.add_executed(act(50 * TICK))
    frames = m.flush()
    assert [f.observation_ts_us for f in frames] == [i * TICK for i in range(5)]
    assert [f.action is not None for f in frames] == [False, False, True, False, False]
    assert m.unmatched_actions == 1 and not math.isnan(np.asarray(frames[2].action)[0])
