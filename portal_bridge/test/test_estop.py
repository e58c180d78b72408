"""The robot's command output end to end: e-stop, latching, trajectory chunks, alignment, services.

robot_bridge runs on the robot's ROS domain against a real livekit-server; a Portal operator
(portal_bridge's core ``Operator`` on its own loop thread) drives it through the room, streaming
at 30 Hz the whole time, the way a teleop or a policy would. What the controller would receive is
collected on the command topic.
"""

from __future__ import annotations

import threading
import time

from diagnostic_msgs.msg import DiagnosticArray
from geometry_msgs.msg import Twist
import numpy as np
import pytest
from sensor_msgs.msg import JointState
from std_msgs.msg import Bool, Float64MultiArray
from std_srvs.srv import Trigger
from support.ros_world import LATCHED
from support.waiting import wait_for_sync
from test_bridge_control import call
from trajectory_msgs.msg import JointTrajectory

from portal_bridge.portal import Operator, WireContract, mint_token, now_us
from portal_bridge.portal.errors import EMERGENCY_STOP_REFUSED, SET_ACTIVE_OPERATOR_REFUSED, RpcCallError
from portal_bridge.portal.loop_thread import LoopThread
from portal_bridge.portal.protocol import EMERGENCY_STOP_RPC
from portal_bridge_msgs.srv import SetActiveOperator

pytestmark = [pytest.mark.livekit, pytest.mark.ros]

ARM = """
version: 1
fps: 30
state: [ { name: j1, dtype: f32 }, { name: j2, dtype: f32 } ]
action: [ { name: j1, dtype: f32 }, { name: j2, dtype: f32 } ]
action_chunks:
  - { name: plan, horizon: 30, fields: [ { name: j1, dtype: f32 }, { name: j2, dtype: f32 } ] }
"""
BASE = """
version: 1
fps: 30
state: [ { name: odom_x, dtype: f64 } ]
action: [ { name: linear_x, dtype: f32 }, { name: angular_z, dtype: f32 } ]
"""
MEASURED = {'j1': 0.25, 'j2': -0.5}
TOPICS = {'twist': '/cmd_vel', 'float64_multi_array': '/cmd', 'joint_trajectory': '/traj'}
MESSAGES = {'twist': Twist, 'float64_multi_array': Float64MultiArray, 'joint_trajectory': JointTrajectory}


class PortalOperator:
    """A Portal operator on its own loop thread, optionally streaming actions at 30 Hz."""

    def __init__(self, world, contract_path: str, identity: str) -> None:
        self.identity = identity
        self.loop = LoopThread(f'op-{identity}')
        self.op = Operator(WireContract.from_yaml_file(contract_path))
        token = mint_token(world.server.api_key, world.server.api_secret, identity, world.room)
        self.loop.run(self.op.connect(world.server.url, token), 20)
        wait_for_sync(lambda: self.op.robot_identity() is not None, 10, what='operator sees the robot')
        self._stop = threading.Event()
        self._thread = None

    def claim(self) -> None:
        self.loop.run(self.op.claim_control(), 10)

    def stream(self, values: dict, period: float = 1 / 30) -> None:
        def run():
            while not self._stop.is_set():
                self.op.send_action(values)
                self._stop.wait(period)

        self._thread = threading.Thread(target=run, daemon=True)
        self._thread.start()

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(2)
        try:
            self.loop.run(self.op.disconnect(), 10)
        finally:
            self.loop.stop()


@pytest.fixture
def operators():
    made = []
    yield made
    for o in made:
        o.close()


@pytest.fixture
def measured_joints(world):
    """joint_states at 50 Hz with fixed positions, as a joint_state_broadcaster would.

    Stopped and joined before the world's nodes are destroyed, pass or fail.
    """
    pub = world.robot_side.node('broadcaster').create_publisher(JointState, 'joint_states', 10)
    stop = threading.Event()

    def run():
        while not stop.is_set():
            pub.publish(JointState(name=list(MEASURED), position=list(MEASURED.values())))
            stop.wait(0.02)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    yield
    stop.set()
    thread.join(2)


def is_motion(command_type: str, msg) -> bool:
    if command_type == 'twist':
        return msg.linear.x != 0.0 or msg.angular.z != 0.0
    if command_type == 'joint_trajectory':
        return len(msg.points) > 0
    return list(msg.data) != [MEASURED['j1'], MEASURED['j2']]


@pytest.mark.parametrize(
    'command_type,on_timeout',
    [
        ('twist', 'zero'),
        ('twist', 'stop'),
        ('float64_multi_array', 'hold'),
        ('float64_multi_array', 'zero'),
        ('joint_trajectory', 'hold'),
        ('joint_trajectory', 'zero'),
    ],
)
def test_estop_sends_one_safe_command_while_operator_keeps_streaming(
    world, measured_joints, operators, command_type, on_timeout
):
    contract = world.contract(BASE if command_type == 'twist' else ARM)
    topic = TOPICS[command_type]
    robot = world.robot_bridge(
        contract,
        command_type=command_type,
        command_topic=topic,
        on_timeout=on_timeout,
        action_timeout_ms=5000,
        allowed_operators=['pilot'],
    )
    got = world.robot_side.collect(MESSAGES[command_type], topic)
    estopped = world.robot_side.collect(Bool, '/robot_bridge/emergency_stopped', LATCHED)
    pilot = PortalOperator(world, contract, 'pilot')
    operators.append(pilot)
    pilot.claim()
    pilot.stream({'linear_x': 0.5, 'angular_z': 0.1} if command_type == 'twist' else {'j1': 1.0, 'j2': 1.0})
    wait_for_sync(lambda: sum(is_motion(command_type, m) for m in got) >= 10, 10, what='commands flowing')
    if command_type != 'twist':
        wait_for_sync(lambda: 'j2' in robot._measured, 5, what='measured joint positions')

    n0 = len(got)
    resp = call(world.robot_side, Trigger, '/robot_bridge/emergency_stop', Trigger.Request())
    assert resp.success and 'latched' in resp.message, resp.message
    time.sleep(1.5)  # the operator keeps streaming at 30 Hz meanwhile
    after = got[n0:]
    safe = [i for i, m in enumerate(after) if not is_motion(command_type, m)]
    assert len(safe) == 1, f'expected exactly one safe command after the e-stop, got {after}'
    assert safe[0] == len(after) - 1, f'motion after the safe command: {after[safe[0] + 1 :]}'
    assert safe[0] <= 2, f'{safe[0]} motion commands delivered after the e-stop was requested'
    last = after[-1]
    if command_type == 'twist':
        assert (last.linear.x, last.angular.z) == (0.0, 0.0)
    elif command_type == 'joint_trajectory':
        assert last.points == [] and list(last.joint_names) == ['j1', 'j2']
    else:
        assert list(last.data) == [0.25, -0.5]  # stopped where the arm is, not at zero or at the target
    assert robot.robot.active_operator() is None
    wait_for_sync(lambda: pilot.op.active_operator() is None, 5, what='room cleared the pointer')
    wait_for_sync(lambda: estopped and estopped[-1].data is True, 3, what='emergency_stopped latched True')
    assert robot.robot.metrics().transport.dropped.get('gate-locked-out', 0) > 0

    # Latched: a Portal claim and a local handoff are both refused with the reason.
    with pytest.raises(RpcCallError) as refused:
        pilot.claim()
    assert refused.value.code == SET_ACTIVE_OPERATOR_REFUSED and 'emergency stop' in refused.value.message
    local = call(
        world.robot_side,
        SetActiveOperator,
        '/robot_bridge/set_active_operator',
        SetActiveOperator.Request(identity='pilot'),
    )
    assert not local.success and 'emergency stop' in local.message
    diags = world.robot_side.collect(DiagnosticArray, '/diagnostics')
    wait_for_sync(lambda: any(s.name == 'robot_bridge: safety' for d in diags for s in d.status), 3)
    status = next(s for d in diags for s in d.status if s.name == 'robot_bridge: safety')
    assert status.level == bytes([2]) and 'EMERGENCY STOP' in status.message

    # Reset: publishes nothing, restarts nothing; a new claim is needed, then commands flow again.
    n1 = len(got)
    reset = call(world.robot_side, Trigger, '/robot_bridge/reset_emergency_stop', Trigger.Request())
    assert reset.success, reset.message
    wait_for_sync(lambda: estopped[-1].data is False, 3)
    time.sleep(0.5)
    assert len(got) == n1, f'reset published {got[n1:]}'
    again = call(world.robot_side, Trigger, '/robot_bridge/reset_emergency_stop', Trigger.Request())
    assert not again.success and 'no emergency stop' in again.message
    pilot.claim()
    wait_for_sync(lambda: any(is_motion(command_type, m) for m in got[n1:]), 5, what='driving again after reset')


def test_hold_is_refused_for_twist_at_startup(world):
    import logging
    import threading

    before = {t.name for t in threading.enumerate()}
    contract = world.contract(BASE)
    with pytest.raises(SystemExit) as exc:
        world.robot_bridge(contract, command_type='twist', on_timeout='hold', wait=False)
    assert exc.value.code == 2
    # The refused node undid its setup: logging is back (a later node or test must not log into
    # it) and none of its threads is left running.
    assert logging.getLogger('portal_bridge').propagate and not logging.getLogger('portal_bridge').handlers
    wait_for_sync(lambda: not ({t.name for t in threading.enumerate() if t.is_alive()} - before), 5)


def test_estop_topic_latches_like_the_service(world, operators):
    contract = world.contract(BASE)
    robot = world.robot_bridge(
        contract, command_type='twist', on_timeout='zero', action_timeout_ms=5000, emergency_stop_topic='/hw_estop'
    )
    got = world.robot_side.collect(Twist, '/cmd_vel')
    pilot = PortalOperator(world, contract, 'pilot')
    operators.append(pilot)
    pilot.claim()
    pilot.stream({'linear_x': 0.5, 'angular_z': 0.0})
    wait_for_sync(lambda: len(got) >= 5, 10)
    button = world.robot_side.node('button').create_publisher(Bool, '/hw_estop', 10)
    wait_for_sync(lambda: (button.publish(Bool(data=True)), robot.safety.estopped)[1], 5, interval=0.05)
    time.sleep(0.5)
    assert got[-1].linear.x == 0.0 and sum(m.linear.x == 0.0 for m in got) == 1


def test_an_operator_latches_the_estop_by_portal_rpc_and_strangers_may_not(world, operators):
    """``portal_bridge.emergency_stop``: the local e-stop, one safe command, for allowed operators only."""
    contract = world.contract(BASE)
    robot = world.robot_bridge(
        contract,
        command_type='twist',
        on_timeout='zero',
        action_timeout_ms=5000,
        allowed_operators=['pilot', 'spotter'],
    )
    got = world.robot_side.collect(Twist, '/cmd_vel')
    estopped = world.robot_side.collect(Bool, '/robot_bridge/emergency_stopped', LATCHED)
    pilot, spotter, stranger = (PortalOperator(world, contract, name) for name in ('pilot', 'spotter', 'stranger'))
    operators.extend([pilot, spotter, stranger])
    pilot.claim()
    pilot.stream({'linear_x': 0.5, 'angular_z': 0.0})
    wait_for_sync(lambda: len(got) >= 5, 10, what='commands flowing')
    wait_for_sync(lambda: {'pilot', 'spotter', 'stranger'} <= set(robot.robot.operators()), 10, what='roster')

    with pytest.raises(RpcCallError) as refused:  # in the room, but not allowed to stop it
        stranger.loop.run(stranger.op.perform_rpc(EMERGENCY_STOP_RPC, 'prank', destination='robot'), 10)
    assert refused.value.code == EMERGENCY_STOP_REFUSED and 'stranger' in refused.value.message
    assert not robot.safety.estopped and robot.counts().get('estop-rpc-refused') == 1

    n0 = len(got)
    answer = spotter.loop.run(spotter.op.perform_rpc(EMERGENCY_STOP_RPC, 'person in the cell', destination='robot'), 10)
    assert answer == 'emergency stop latched' and robot.safety.estopped
    time.sleep(1.0)  # the pilot keeps streaming at 30 Hz meanwhile
    # Commands before the safe one were executed while the RPC was still on its way (a network round
    # trip, unlike the local service); from the safe command on, nothing moves.
    after = got[n0:]
    assert [m.linear.x for m in after][-1] == 0.0 and sum(m.linear.x == 0.0 for m in after) == 1, after
    wait_for_sync(lambda: estopped and estopped[-1].data is True, 3, what='emergency_stopped latched True')
    wait_for_sync(lambda: pilot.op.active_operator() is None, 5, what='room cleared the pointer')
    again = pilot.loop.run(pilot.op.perform_rpc(EMERGENCY_STOP_RPC, '', destination='robot'), 10)
    assert again == 'emergency stop already latched'
    with pytest.raises(RpcCallError) as latched:
        pilot.claim()
    assert latched.value.code == SET_ACTIVE_OPERATOR_REFUSED and 'spotter' in latched.value.message


def test_one_second_trajectory_chunk_every_second_publishes_once_each_and_never_trips(world, operators):
    contract = world.contract(ARM)
    robot = world.robot_bridge(
        contract,
        command_type='joint_trajectory',
        command_topic='/traj',
        chunk_mode='trajectory',
        on_timeout='hold',
        action_timeout_ms=300,
    )
    got = world.robot_side.collect(JointTrajectory, '/traj')
    policy = PortalOperator(world, contract, 'policy')
    operators.append(policy)
    policy.claim()
    rows = np.tile(np.arange(30, dtype=np.float32)[:, None], (1, 2))
    for k in range(5):
        policy.op.send_action_chunk('plan', rows + 100 * k)
        time.sleep(1.0)
    time.sleep(0.2)
    assert len(got) == 5, f'{len(got)} trajectories for 5 chunks'
    for k, traj in enumerate(got):
        assert len(traj.points) == 30 and traj.points[0].positions[0] == 100 * k
        last = traj.points[-1].time_from_start
        assert abs(last.sec + last.nanosec / 1e9 - 29 / 30) < 1e-6
    assert robot.safety.trips == 0, robot.safety.reason


@pytest.mark.parametrize('chunk_mode', ['trajectory', 'stepped'])
def test_chunk_alignment_skips_rows_already_past_after_a_150_ms_round_trip(world, operators, chunk_mode):
    contract = world.contract(ARM)
    command_type = 'joint_trajectory' if chunk_mode == 'trajectory' else 'float64_multi_array'
    topic = TOPICS[command_type]
    robot = world.robot_bridge(
        contract, command_type=command_type, command_topic=topic, chunk_mode=chunk_mode, action_timeout_ms=2000
    )
    got = world.robot_side.collect(MESSAGES[command_type], topic)
    policy = PortalOperator(world, contract, 'policy')
    operators.append(policy)
    states = []
    policy.op.on_state(states.append)
    policy.claim()
    js = world.robot_side.node('broadcaster').create_publisher(JointState, 'joint_states', 10)
    wait_for_sync(lambda: (js.publish(JointState(name=['j1', 'j2'], position=[0.0, 0.0])), states)[1], 10, 0.05)
    observed = states[-1].timestamp_us
    time.sleep(max(0.150 - (now_us() - observed) / 1e6, 0.0))  # the policy answers 150 ms after the observation
    rows = np.tile(np.arange(30, dtype=np.float32)[:, None], (1, 2))  # row r carries the value r
    sent_at = now_us()
    policy.op.send_action_chunk('plan', rows, in_reply_to_ts_us=observed)
    wait_for_sync(lambda: got, 5, what='first command of the chunk')
    elapsed_at_send = (sent_at - observed) / 1e6
    if chunk_mode == 'trajectory':
        traj = got[0]
        first = int(traj.points[0].positions[0])
        assert len(traj.points) == 30 - first
        t0 = traj.points[0].time_from_start
        offset = t0.sec + t0.nanosec / 1e9
        assert 0 <= offset < 1 / 30 + 1e-9
    else:
        first = int(got[0].data[0])
        wait_for_sync(lambda: int(got[-1].data[0]) == 29, 3, what='last row played')
        values = [int(m.data[0]) for m in got]
        assert values == sorted(values) and values[0] == first
    # Rows 0-4 (0-133 ms) were past when the policy sent its answer; a few ms of transport may add one.
    assert first >= int(np.ceil(elapsed_at_send * 30 - 1e-9)) and 5 <= first <= 7, first
    assert robot.counts().get('chunk-rows-skipped') == first


def test_a_raising_service_callback_never_silences_emergency_stop(world):
    contract = world.contract(BASE)
    robot = world.robot_bridge(contract, command_type='twist', on_timeout='zero')

    def boom(request, response):
        raise RuntimeError('a bug in a service callback')

    robot.safety_host.create_service(Trigger, '~/boom_safety', boom)
    robot.service_host.create_service(Trigger, '~/boom_services', boom)
    for name in ('/robot_bridge/boom_safety', '/robot_bridge/boom_services', '/robot_bridge/boom_safety'):
        resp = call(world.robot_side, Trigger, name, Trigger.Request())
        assert not resp.success and 'a bug in a service callback' in resp.message
    assert robot.safety_host.alive and robot.service_host.alive
    resp = call(world.robot_side, Trigger, '/robot_bridge/emergency_stop', Trigger.Request(), timeout=5)
    assert resp.success and robot.safety.estopped
    ok = call(world.robot_side, SetActiveOperator, '/robot_bridge/set_active_operator', SetActiveOperator.Request())
    assert ok.success  # the services thread still answers too
