"""A hostile participant in the room: refused, ignored and counted, while the real session goes on.

The rogue runs in its own process (``support/rogue_peer.py``) with a valid token: LiveKit lets any
participant send to anyone, so everything the bridges receive from it has to be checked by them.
Each check counts exactly what the rogue sent, by the counter the receiving bridge must move.
"""

from __future__ import annotations

from collections import Counter
import math
import threading
import time

import pytest
from sensor_msgs.msg import JointState
from std_msgs.msg import Float64MultiArray
from support.rogue_peer import RogueProcess
from support.traffic import numbered_actions, robot_traffic
from support.waiting import publish_until, wait_explained, wait_for_sync
from test_bridge_control import call

from portal_bridge.portal.errors import SET_ACTIVE_OPERATOR_REFUSED
from portal_bridge.portal.protocol import ACTIVE_OPERATOR_ATTR, ROLE_ATTR
from portal_bridge_msgs.msg import Observation
from portal_bridge_msgs.srv import SetActiveOperator

pytestmark = [pytest.mark.livekit, pytest.mark.ros, pytest.mark.slow]

CONTRACT = """
version: 1
fps: 30
action_subscription: true
videos: [ { name: cam, codec: h264 } ]
state: [ { name: j1, dtype: f32 }, { name: j2, dtype: f32 } ]
action: [ { name: j1, dtype: f32 }, { name: j2, dtype: f32 } ]
action_chunks:
  - { name: plan, horizon: 8, fields: [ { name: j1, dtype: f32 }, { name: j2, dtype: f32 } ] }
"""

# The flood: 3 000 junk packets at 60/s, a real session's own packet rate (30 states and 30 actions
# a second), for 50 s, paced. The livekit SDK parses every packet in Python in one in-order event
# queue per room (video frames have their own), so junk delays the robot's states, never its video:
# the control path (actions in order, their rate) must not suffer, while observations, which need a
# state and its frame within the sync's slack, come out only as far as this process keeps up. That
# capacity is the SDK's per-event cost times the host's speed (this process hosts both bridges): at
# 1.2 CPUs of this VM (a cgroup quota) a 60/s flood left 8.7-29.5 observations/s, at 1 CPU 1.4-9.6/s
# (the session alone managed 4.4-4.6/s there), at full speed 28-30/s. So the test asserts the control path's
# rate, that observations keep coming and that they are back at the host's own rate once the flood
# ends; docs/reliability.md has the numbers.
FLOOD = 3_000
FLOOD_RATE = 60.0


class Stamped:
    """Messages with their arrival time, for rates over a window."""

    def __init__(self) -> None:
        self.items: list[tuple[float, object]] = []
        self._lock = threading.Lock()

    def __call__(self, msg) -> None:
        with self._lock:
            self.items.append((time.monotonic(), msg))

    def __len__(self) -> int:
        return len(self.items)

    def between(self, t0: float, t1: float) -> list:
        with self._lock:
            return [m for t, m in self.items if t0 <= t <= t1]


def drops(session) -> Counter:
    return Counter(session.metrics().transport.dropped)


def moved(before: Counter, after: Counter) -> Counter:
    return Counter({k: after[k] - before[k] for k in after if after[k] != before[k]})


@pytest.fixture
def rogue_of(world):
    made = []

    def make(identity: str, role: str = '') -> RogueProcess:
        r = RogueProcess(world.server, world.room, identity, world.contract(CONTRACT, f'{identity}.yaml'), role)
        made.append(r)
        return r

    yield make
    for r in made:
        r.close()


def test_rogue_flood_on_every_topic_is_counted_while_the_session_goes_on(world, rogue_of):
    contract = world.contract(CONTRACT)
    robot = world.robot_bridge(contract, command_topic='/cmd', allowed_operators=['pilot'], action_timeout_ms=2000)
    # The flood shares the room's one in-order event queue with the robot's states, while video has its
    # own: on a slow host states then reach the pilot several ticks after their frames, and with the
    # default slack (5 ticks) the sync rightly drops them (seen: 1557 states and 1557 frames received,
    # 925 states dropped). A second of slack covers that, as it covers retransmissions in test_faults.
    pilot = world.operator_bridge(contract, identity='pilot', auto_claim=True, sync_slack=30)
    wait_for_sync(lambda: robot.robot.active_operator() == 'pilot' and pilot.operator.active_operator() == 'pilot')
    commands, observations = Stamped(), Stamped()
    world.robot_side.node('controller').create_subscription(Float64MultiArray, '/cmd', commands, 100)
    world.operator_side.node('recorder').create_subscription(
        Observation, '/operator_bridge/observation', observations, 100
    )
    traffic = robot_traffic(world.robot_side.node('drivers'), 160, 120, '/cam/image_raw')
    actions = numbered_actions(world.operator_side.node('policy'), '/operator_bridge/action', code=0.5)
    traffic.start()
    actions.start()
    try:
        wait_for_sync(lambda: len(observations) > 10 and len(commands) > 10, 30, what='the session is running')
        rogue = rogue_of('rogue')

        # Control: a claim outside allowed_operators is refused with Portal's code; nothing moves.
        refused = rogue('claim', robot='robot', who='rogue')
        assert refused['code'] == SET_ACTIVE_OPERATOR_REFUSED and 'allowed_operators' in refused['message']
        assert robot.robot.active_operator() == 'pilot'

        # Impersonation: claiming the robot role and a pointer of its own changes nothing.
        rogue('attributes', attrs={ROLE_ATTR: 'robot', ACTIVE_OPERATOR_ATTR: 'rogue'})
        wait_for_sync(lambda: drops(pilot.operator)['second-robot'] >= 1, what='second robot ignored')
        assert pilot.operator.robot_identity() == 'robot' and pilot.operator.active_operator() == 'pilot'

        # The session's rate on this host, just before the flood.
        b0 = time.monotonic()
        time.sleep(5.0)
        b1 = time.monotonic()
        base_obs, base_cmd = len(observations.between(b0, b1)) / (b1 - b0), len(commands.between(b0, b1)) / (b1 - b0)

        # The flood: every Portal topic either bridge reads, malformed every way, plus valid pings.
        robot_before, pilot_before = drops(robot.robot), drops(pilot.operator)
        ignored_before = (robot.robot.metrics().rtt.pongs_ignored, pilot.operator.metrics().rtt.pongs_ignored)
        pilot_m0 = pilot.operator.metrics()
        t0 = time.monotonic()
        flood = rogue('flood', robot='robot', operator='pilot', n=FLOOD, rate=FLOOD_RATE)
        rogue('pings', dest='robot', n=500)
        assert flood['total'] >= FLOOD
        to_robot, to_pilot = Counter(flood['sent']['robot']), Counter(flood['sent']['pilot'])

        def counted(bridge, before, sent, ignored0):
            got = moved(before, drops(bridge))
            got['pongs_ignored'] = bridge.metrics().rtt.pongs_ignored - ignored0
            return all(got[k] >= v for k, v in sent.items())

        wait_for_sync(
            lambda: (
                counted(robot.robot, robot_before, to_robot, ignored_before[0])
                and counted(pilot.operator, pilot_before, to_pilot, ignored_before[1])
            ),
            240,
            what='every flood packet counted',
        )
        t1 = time.monotonic()
        robot_moved, pilot_moved = moved(robot_before, drops(robot.robot)), moved(pilot_before, drops(pilot.operator))
        for key in ('gate', 'bad-rtt'):
            assert robot_moved[key] == to_robot[key], (key, robot_moved, to_robot)
        for key in ('not-robot', 'bad-rtt'):
            assert pilot_moved[key] == to_pilot[key], (key, pilot_moved, to_pilot)
        assert robot.robot.metrics().rtt.pongs_ignored - ignored_before[0] == to_robot['pongs_ignored']
        assert pilot.operator.metrics().rtt.pongs_ignored - ignored_before[1] == to_pilot['pongs_ignored']
        assert robot_moved['pong-backlog'] <= 500

        # Meanwhile the real session went on: observations out, the pilot's actions in, in order.
        flood_s = t1 - t0
        obs_during = observations.between(t0, t1)
        cmd_during = commands.between(t0, t1)
        m1 = pilot.operator.metrics()
        print(f'before the flood: {base_obs:.1f} observations/s, {base_cmd:.1f} commands/s; '
              f'flood of {flood["total"]} packets counted in {flood_s:.1f} s; during it: '
              f'{len(obs_during) / flood_s:.1f} observations/s, {len(cmd_during) / flood_s:.1f} commands/s; '
              f'the pilot received {m1.transport.states_received - pilot_m0.transport.states_received} states, '
              f'{m1.transport.frames_received["cam"] - pilot_m0.transport.frames_received["cam"]} frames, '
              f'sync dropped {m1.sync.states_dropped - pilot_m0.sync.states_dropped} states '
              f'({m1.sync.states_dropped_overflow - pilot_m0.sync.states_dropped_overflow} on overflow), '
              f'{m1.sync.late_frames_dropped - pilot_m0.sync.late_frames_dropped} late frames, '
              f'{sum(m1.buffers.evictions.values()) - sum(pilot_m0.buffers.evictions.values())} frames evicted')  # fmt: skip
        # The pilot's actions at 30 Hz: during the flood at least two thirds of that rate (or of what
        # this host sustained just before) reaches the controller. Observations keep coming, and
        # once the flood ends they are back at two thirds of the host's own rate within 30 s.
        assert base_obs > 0 and base_cmd > 0, 'the session was not running before the flood'
        assert len(cmd_during) >= (2 / 3) * min(30, base_cmd) * flood_s, "the pilot's actions stalled during the flood"
        assert obs_during, 'observations stopped during the flood'
        target = (2 / 3) * min(30, base_obs)

        def back_to_rate() -> bool:
            t = time.monotonic()
            return t - 3 >= t1 and len(observations.between(t - 3, t)) >= 3 * target

        wait_for_sync(back_to_rate, 30, interval=0.2, what=f'observations back at {target:.1f}/s after the flood')
        print(f'observations back at {target:.1f}/s {time.monotonic() - t1:.1f} s after the flood was counted')

        # Byte streams: junk chunks (gated), junk frame video and executed records (not the robot's),
        # a stream over the chunk size limit, all read to the end and dropped, none buffered whole.
        robot_before, pilot_before = drops(robot.robot), drops(pilot.operator)
        streams = rogue('streams', robot='robot', operator='pilot', n=30, oversize=1_300_000)
        # (the flood's pings may still be answered meanwhile: pong-backlog is not a stream counter)
        stream_keys = ('gate', 'not-robot', 'oversized-stream', 'stream-error', 'internal-error')

        def stream_drops(bridge, before):
            got = moved(before, drops(bridge))
            return Counter({k: got[k] for k in stream_keys if got[k]})

        for bridge, before, sent in (
            (robot.robot, robot_before, streams['sent']['robot']),
            (pilot.operator, pilot_before, streams['sent']['pilot']),
        ):
            try:
                wait_for_sync(lambda b=bridge, s=sent, r=before: stream_drops(b, r) == Counter(s), 60)
            except AssertionError:
                pass  # the assertion below says what differs
            assert stream_drops(bridge, before) == Counter(sent), (moved(before, drops(bridge)), sent)

        # A video track named like the robot's camera, frames without timestamps: not the robot's.
        before = drops(pilot.operator)['not-robot']
        rogue('untimed_video', name='cam')
        wait_for_sync(lambda: drops(pilot.operator)['not-robot'] > before, 30, what='untimed frames dropped')
        assert rogue('stop_video')['frames'] > 0

        n_obs, n_cmd = len(observations), len(commands)
        wait_for_sync(lambda: len(observations) > n_obs + 30 and len(commands) > n_cmd + 30, 20, what='still going')
    finally:
        actions.stop()
        traffic.stop()

    for bridge in (robot.robot, pilot.operator):
        d = drops(bridge)
        assert not d['internal-error'] and not d['stream-error'], d
        assert bridge.is_connected
    assert 'internal-error' not in robot.counts() and 'internal-error' not in pilot.counts()
    assert robot.robot.active_operator() == 'pilot' and pilot.operator.robot_identity() == 'robot'
    sent = [tuple(m.data) for _, m in commands.items]
    assert all(code == 0.5 for _, code in sent), 'a command did not come from the pilot'
    seq = [j1 for j1, _ in sent]
    assert seq == sorted(seq), "the pilot's actions arrived out of order"


def test_faulty_active_operator_never_reaches_the_controller(world, rogue_of):
    contract = world.contract(CONTRACT)
    robot = world.robot_bridge(
        contract,
        command_topic='/cmd',
        allowed_operators=['pilot', 'faulty'],
        action_limits_lower=[-1.0, -1.0],
        action_limits_upper=[1.0, 1.0],
        limit_policy='reject',
        on_timeout='stop',
    )
    pilot = world.operator_bridge(contract, identity='pilot')
    commands = world.robot_side.collect(Float64MultiArray, '/cmd')
    faulty = rogue_of('faulty', role='operator')
    assert faulty('claim', robot='robot', who='faulty') == {'ok': ''}
    wait_for_sync(lambda: pilot.operator.active_operator() == 'faulty')

    before_drops, before_counts = drops(robot.robot), Counter(robot.counts())
    received_before = robot.robot.metrics().transport.actions_received
    repeats = 400
    sent = faulty('faulty_actions', robot='robot', repeats=repeats, outside=5.0)
    actions, chunks = Counter(sent['actions']), Counter(sent['chunks'])
    assert sum(actions.values()) >= 9 * repeats
    expected_drops = Counter({k: actions[k] + chunks[k] for k in ('bad-payload', 'schema-mismatch')})
    expected_drops['unknown-chunk'] = chunks['unknown-chunk']
    expected_drops['oversized-stream'] = chunks['oversized-stream']
    expected_bridge = Counter({k: actions[k] + chunks[k] for k in ('nan-action', 'limit-rejected')})
    good = [tuple(sent['good_values'])] * actions['accepted']

    def bridge_moved():
        now = Counter(robot.counts())
        return Counter({k: now[k] - before_counts[k] for k in expected_bridge})

    wait_explained(
        lambda: moved(before_drops, drops(robot.robot)) == expected_drops and bridge_moved() == expected_bridge,
        120,
        'every broken action and chunk counted by its reason',
        lambda: (
            f'core drops moved {dict(moved(before_drops, drops(robot.robot)))}, expected {dict(expected_drops)}; '
            f'bridge counters moved {dict(bridge_moved())}, expected {dict(expected_bridge)}; '
            f'actions decoded {robot.robot.metrics().transport.actions_received - received_before}'
        ),
    )
    wait_for_sync(lambda: len(commands) >= len(good), 30, what='the good actions')
    time.sleep(0.5)  # anything that should not arrive has had its chance
    got = [tuple(m.data) for m in commands]
    assert got == [pytest.approx(v) for v in good]  # only the well-formed, in-limit actions, each once
    assert all(not math.isnan(v) and abs(v) <= 1.0 for m in commands for v in m.data)
    decoded = robot.robot.metrics().transport.actions_received - received_before
    assert decoded == actions['accepted'] + actions['nan-action'] + actions['limit-rejected']

    # The pilot takes over through its own bridge's service and drives; the faulty operator is gated.
    resp = call(world.operator_side, SetActiveOperator, '/operator_bridge/set_active_operator',
                SetActiveOperator.Request(identity='pilot'))  # fmt: skip
    assert resp.success and resp.previous == 'faulty', resp.message
    pub = world.operator_side.node('teleop').create_publisher(JointState, '/operator_bridge/action', 10)
    n = len(commands)
    publish_until(lambda: any(tuple(m.data) == (0.75, -0.75) for m in commands[n:]),
                  lambda i: pub.publish(JointState(name=['j1', 'j2'], position=[0.75, -0.75])))  # fmt: skip
    before = drops(robot.robot)['gate']
    faulty('faulty_actions', robot='robot', repeats=1, outside=5.0)
    wait_for_sync(lambda: drops(robot.robot)['gate'] - before >= 9, 20, what='the faulty operator gated')
    assert all(tuple(m.data) == (0.75, -0.75) for m in commands[n:])
    assert 'internal-error' not in drops(robot.robot) and robot.robot.is_connected
