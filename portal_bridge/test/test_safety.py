"""The command-output state machine (safety.py): unit and property tests, no ROS, no server.

Time is a plain float passed in, so every test is exact and instant.
"""

import math

from hypothesis import given, settings
from hypothesis import strategies as st
import pytest

from portal_bridge.control.safety import TIMEOUT_POLICIES, CommandSafety, Emit, SafetyState, align_chunk

T = 0.3  # action timeout
HOLD = 1 / 30


def machine(on_timeout='hold', hold_resends=True, timeout=T):
    return CommandSafety(timeout_s=timeout, on_timeout=on_timeout, hold_period_s=HOLD, hold_resends=hold_resends)


def driving(on_timeout='hold', **kw):
    sm = machine(on_timeout, **kw)
    sm.operator_changed('alice', 0.0)
    assert sm.action('alice', 'a0', 0.0) == [Emit('command', 'a0')]
    return sm


def run_clock(sm, start, end, step=0.02):
    out = []
    i = 0
    while (t := start + i * step) <= end + 1e-12:
        out += [(round(t, 6), e) for e in sm.tick(t)]
        i += 1
    return out


# -- basic transitions -------------------------------------------------------------------------------------
def test_claim_alone_arms_nothing_and_publishes_nothing():
    sm = machine('zero')
    assert sm.operator_changed('alice', 0.0) == []
    assert run_clock(sm, 0.0, 5.0) == []
    assert sm.state is SafetyState.IDLE and sm.trips == 0


def test_only_the_active_operator_drives():
    sm = machine()
    assert sm.action('alice', 'x', 0.0) == []  # nobody active
    sm.operator_changed('alice', 0.0)
    assert sm.action('bob', 'x', 0.0) == []
    assert sm.rejected_sender == 2
    assert sm.action('alice', 'x', 0.0) == [Emit('command', 'x')]


@pytest.mark.parametrize('policy', TIMEOUT_POLICIES)
def test_watchdog_trips_at_timeout_and_applies_policy_once(policy):
    sm = driving(policy)
    out = run_clock(sm, 0.0, 1.0)
    assert sm.trips == 1 and sm.tripped and 'alice' in sm.reason and '300' in sm.reason
    if policy == 'zero':
        assert [e for _, e in out] == [Emit('zero')]
        assert 0.3 < out[0][0] <= 0.3 + 0.02 + 1e-9
    elif policy == 'hold':
        assert all(e == Emit('hold', 'a0') for _, e in out)
        assert 20 <= len(out) <= 22  # every 1/30 s from the trip to 1.0 s
    else:
        assert out == []


def test_hold_never_resends_when_type_forbids_it():
    sm = driving('hold', hold_resends=False)
    assert run_clock(sm, 0.0, 2.0) == []
    assert sm.tripped


def test_trajectory_is_never_resent_by_hold_and_watchdog_counts_from_its_end():
    sm = machine('hold')
    sm.operator_changed('alice', 0.0)
    assert sm.trajectory('alice', 'traj', 1.0, 0.0) == [Emit('command', 'traj')]
    assert run_clock(sm, 0.0, 1.28) == []  # 1 s trajectory + 0.3 s timeout: still driving
    assert sm.state is SafetyState.DRIVING
    assert run_clock(sm, 1.32, 3.0) == []  # tripped at end + timeout, and nothing re-sent
    assert sm.tripped


def test_one_second_chunk_every_second_never_trips_and_publishes_once_each():
    sm = machine('hold')
    sm.operator_changed('alice', 0.0)
    emitted = []
    t = 0.0
    for k in range(5):
        emitted += sm.trajectory('alice', f'traj{k}', 1.0, k * 1.0)
        emitted += [e for _, e in run_clock(sm, k * 1.0 + 0.02, k * 1.0 + 0.98)]
        t = k + 1.0
    assert emitted == [Emit('command', f'traj{k}') for k in range(5)]
    assert sm.trips == 0 and t == 5.0


def test_stepped_chunk_plays_rows_at_their_times_then_holds_last_row():
    sm = machine('hold')
    sm.operator_changed('alice', 0.0)
    first = sm.stepped('alice', ['r0', 'r1', 'r2'], 0.0, 0.125, 0.0)  # binary-exact times
    assert first == [Emit('command', 'r0')]
    out = run_clock(sm, 0.03125, 0.28125, 0.03125)
    assert [(t, e.command) for t, e in out] == [(0.125, 'r1'), (0.25, 'r2')]
    assert sm.state is SafetyState.DRIVING
    later = run_clock(sm, 0.3125, 0.75, 0.03125)
    assert later and later[0][0] > 0.25 + T and all(e == Emit('hold', 'r2') for _, e in later)


def test_stepped_late_clock_sends_only_the_newest_due_row():
    sm = machine('stop')
    sm.operator_changed('alice', 0.0)
    sm.stepped('alice', ['r0', 'r1', 'r2', 'r3'], 0.0, 0.1, 0.0)
    assert sm.tick(0.35) == [Emit('command', 'r3')]
    assert sm.rows_skipped == 2


def test_single_action_supersedes_a_playing_chunk():
    sm = machine('stop')
    sm.operator_changed('alice', 0.0)
    sm.stepped('alice', ['r0', 'r1', 'r2'], 0.0, 0.1, 0.0)
    assert sm.action('alice', 'a', 0.05) == [Emit('command', 'a')]
    assert run_clock(sm, 0.06, 0.3, 0.01) == []


def test_release_applies_policy_and_handoff_keeps_deadline_and_drops_rows():
    sm = machine('zero')
    sm.operator_changed('alice', 0.0)
    sm.stepped('alice', ['r0', 'r1', 'r2'], 0.0, 0.1, 0.0)
    assert sm.operator_changed('bob', 0.05) == []
    assert not sm.playing  # alice's rows never play under bob
    assert sm.action('alice', 'late', 0.06) == []
    sm2 = driving('zero')
    assert sm2.operator_changed(None, 0.1) == [Emit('zero')]
    assert sm2.state is SafetyState.STOPPED and not sm2.tripped and 'released' in sm2.reason


def test_handoff_does_not_extend_the_watchdog():
    sm = driving('zero')
    sm.operator_changed('bob', 0.2)
    out = run_clock(sm, 0.2, 0.4)
    assert [e for _, e in out] == [Emit('zero')] and out[0][0] <= T + 0.02 + 1e-9


# -- emergency stop -------------------------------------------------------------------------------------
@pytest.mark.parametrize('policy', TIMEOUT_POLICIES)
def test_estop_sends_one_safe_command_then_nothing_until_reset_and_new_handoff(policy):
    sm = driving(policy)
    assert sm.estop('button', 0.1) == [Emit('safe')]
    assert sm.estop('again', 0.15) == []
    assert sm.state is SafetyState.ESTOPPED and sm.operator is None
    assert sm.action('alice', 'x', 0.2) == []
    assert sm.operator_changed('alice', 0.2) == []  # a pointer change cannot unlatch it
    assert sm.action('alice', 'x', 0.2) == []
    assert sm.trajectory('alice', 'x', 1.0, 0.2) == []
    assert sm.stepped('alice', ['x'], 0.0, 0.1, 0.2) == []
    assert run_clock(sm, 0.2, 3.0) == []
    assert sm.rejected_estopped == 4
    assert sm.reset(3.0) is True and sm.reset(3.0) is False
    assert sm.state is SafetyState.IDLE
    assert sm.action('alice', 'x', 3.1) == []  # reset restarts nothing: a new handoff is needed
    assert run_clock(sm, 3.0, 4.0) == []
    sm.operator_changed('alice', 4.0)
    assert sm.action('alice', 'y', 4.0) == [Emit('command', 'y')]


def test_configure_validates_and_changes_nothing_on_a_bad_value():
    sm = driving('hold')
    with pytest.raises(ValueError):
        sm.configure(timeout_s=0)
    with pytest.raises(ValueError):
        sm.configure(timeout_s=math.nan)
    with pytest.raises(ValueError):
        sm.configure(on_timeout='coast')
    assert (sm.timeout_s, sm.on_timeout) == (T, 'hold')
    sm.configure(timeout_s=1.0, on_timeout='zero')
    assert run_clock(sm, 0.0, 0.98) == []
    assert [e for _, e in run_clock(sm, 1.0, 1.1)] == [Emit('zero')]


# -- chunk alignment --------------------------------------------------------------------------------------
def test_align_chunk_skips_rows_already_due():
    # 150 ms after the observation at 30 fps: rows 0-4 (0..133 ms) are past, row 5 is due in 16.7 ms.
    a = align_chunk(30, 30.0, 1_000_000, 1_150_000)
    assert a.first_row == 5 and a.skipped == 5
    assert a.first_offset_s == pytest.approx(5 / 30 - 0.150)


@pytest.mark.parametrize('reply', [None, 0, 2_000_000])
def test_align_chunk_without_or_with_future_reply_starts_now(reply):
    a = align_chunk(10, 30.0, reply, 1_000_000)
    assert (a.first_row, a.first_offset_s) == (0, 0.0)


def test_align_chunk_entirely_past_is_none():
    assert align_chunk(10, 10.0, 1_000_000, 2_000_001) is None
    assert align_chunk(0, 10.0, None, 1) is None


@given(
    horizon=st.integers(1, 100),
    fps=st.sampled_from([5.0, 10.0, 15.0, 30.0, 50.0, 100.0]),
    delay_us=st.integers(0, 3_000_000),
)
def test_align_chunk_property(horizon, fps, delay_us):
    now = 10_000_000
    a = align_chunk(horizon, fps, now - delay_us, now)
    row_time = lambda r: now - delay_us + r * 1e6 / fps  # noqa: E731
    if a is None:
        assert row_time(horizon - 1) < now
        return
    assert 0 <= a.first_row < horizon and a.first_offset_s >= 0
    assert row_time(a.first_row) >= now - 1e-3  # the first kept row is not in the past
    if a.first_row:
        assert row_time(a.first_row - 1) < now  # and the one before it was
    assert a.first_offset_s == pytest.approx(max((row_time(a.first_row) - now) / 1e6, 0.0), abs=1e-6)


# -- properties over random event sequences ---------------------------------------------------------------
TICK = 0.02
events = st.lists(
    st.one_of(
        st.tuples(st.just('wait'), st.floats(0.001, 0.5)),
        st.tuples(st.just('action'), st.sampled_from(['alice', 'bob'])),
        st.tuples(st.just('traj'), st.sampled_from(['alice', 'bob']), st.floats(0.0, 1.5)),
        st.tuples(st.just('stepped'), st.sampled_from(['alice', 'bob']), st.integers(1, 6)),
        st.tuples(st.just('operator'), st.sampled_from(['alice', 'bob', None])),
        st.tuples(st.just('estop')),
        st.tuples(st.just('reset')),
    ),
    max_size=40,
)


def simulate(sm, script):
    """Run the script with a tick every TICK, yielding (time, event, emits) after each step."""
    now = 0.0
    n = 0
    for ev in script:
        kind = ev[0]
        if kind == 'wait':
            end = now + ev[1]
            t = math.floor(now / TICK + 1) * TICK
            while t <= end:
                yield t, ('tick',), sm.tick(t)
                t += TICK
            now = end
            continue
        n += 1
        if kind == 'action':
            out = sm.action(ev[1], f'cmd{n}', now)
        elif kind == 'traj':
            out = sm.trajectory(ev[1], f'traj{n}', ev[2], now)
        elif kind == 'stepped':
            out = sm.stepped(ev[1], [f'row{n}.{i}' for i in range(ev[2])], 0.0, 0.05, now)
        elif kind == 'operator':
            out = sm.operator_changed(ev[1], now)
        elif kind == 'estop':
            out = sm.estop('test', now)
        else:
            sm.reset(now)
            out = []
        yield now, ev, out


@settings(max_examples=400, deadline=None)
@given(script=events, policy=st.sampled_from(TIMEOUT_POLICIES), resends=st.booleans())
def test_no_motion_after_estop_until_reset_and_a_new_handoff(script, policy, resends):
    sm = machine(policy, resends)
    latched = False
    handed = False
    for _, ev, out in simulate(sm, script):
        if ev[0] == 'estop':
            assert all(not e.is_motion for e in out)
            latched, handed = True, False
            continue
        if ev[0] == 'reset':
            latched = False
            continue
        if ev[0] == 'operator' and ev[1] is not None and not latched:
            handed = True
        if latched or (sm.estops and not handed):
            assert all(not e.is_motion for e in out), (ev, out)
        if latched:
            assert out == []  # not even a zero: the safe command was sent once


@settings(max_examples=400, deadline=None)
@given(script=events, policy=st.sampled_from(TIMEOUT_POLICIES), resends=st.booleans())
def test_each_trajectory_is_published_at_most_once(script, policy, resends):
    sm = machine(policy, resends)
    sent = [e.command for _, _, out in simulate(sm, script) for e in out if e.command and 'traj' in str(e.command)]
    assert len(sent) == len(set(sent))


@settings(max_examples=400, deadline=None)
@given(script=events, policy=st.sampled_from(TIMEOUT_POLICIES), resends=st.booleans())
def test_watchdog_trips_within_timeout_plus_one_tick_of_last_input_or_trajectory_end(script, policy, resends):
    sm = machine(policy, resends)
    expiry = None  # time by which the watchdog must have tripped, while driving
    for t, ev, out in simulate(sm, script):
        if sm.state is SafetyState.DRIVING:
            if ev[0] in ('action', 'traj', 'stepped') and out:
                end = ev[2] if ev[0] == 'traj' else (ev[2] - 1) * 0.05 if ev[0] == 'stepped' else 0.0
                expiry = t + end + T + TICK
            assert expiry is None or t <= expiry + 1e-9, (t, expiry, ev)
        else:
            expiry = None


@settings(max_examples=400, deadline=None)
@given(script=events)
def test_zero_policy_sends_exactly_one_zero_per_driving_episode(script):
    sm = machine('zero')
    episode_zeros = None
    state = sm.state
    for _, _, out in simulate(sm, script):
        zeros = sum(e.kind == 'zero' for e in out)
        if state is not SafetyState.DRIVING and sm.state is SafetyState.DRIVING:
            episode_zeros = 0
        if zeros:
            assert state is SafetyState.DRIVING and episode_zeros == 0, 'zero outside or twice in an episode'
            episode_zeros += zeros
            assert sm.state is SafetyState.STOPPED
        if state is SafetyState.DRIVING and sm.state is SafetyState.STOPPED:
            assert zeros == 1  # every end of an episode other than an e-stop sends its zero
        state = sm.state
