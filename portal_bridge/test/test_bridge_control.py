"""Handoff, access control, watchdog, emergency stop, RPC and diagnostics through the ROS bridges."""

import threading
import time

from diagnostic_msgs.msg import DiagnosticArray
from geometry_msgs.msg import Twist
import pytest
from sensor_msgs.msg import JointState
from std_msgs.msg import Float64MultiArray, String
from std_srvs.srv import Trigger
from support.ros_world import LATCHED
from support.waiting import publish_until, wait_for_sync

from portal_bridge_msgs.srv import CallRpc, SetActiveOperator

pytestmark = [pytest.mark.livekit, pytest.mark.ros]

ARM = """
version: 1
state: [ { name: j1, dtype: f32 } ]
action: [ { name: j1, dtype: f32 }, { name: j2, dtype: f32 } ]
"""
BASE = """
version: 1
state: [ { name: odom_x, dtype: f64 } ]
action: [ { name: linear_x, dtype: f32 }, { name: angular_z, dtype: f32 } ]
"""


def call(domain, srv_type, name, request, timeout=20.0):
    node = domain.node(f'client_{len(domain.nodes)}')
    client = node.create_client(srv_type, name)
    assert client.wait_for_service(10), f'{name} not available'
    future = client.call_async(request)
    wait_for_sync(future.done, timeout, what=f'{name} response')
    return future.result()


def act(pub, j1, j2=0.0):
    pub.publish(JointState(name=['j1', 'j2'], position=[float(j1), float(j2)]))


def test_handoff_between_two_operator_nodes_and_inactive_actions_never_reach_controller(world):
    contract = world.contract(ARM)
    robot = world.robot_bridge(contract, command_topic='/cmd')
    alice = world.operator_bridge(contract, 'alice', namespace='alice')
    bob = world.operator_bridge(contract, 'bob', namespace='bob')
    got = world.robot_side.collect(Float64MultiArray, '/cmd')
    node = world.operator_side.node('pilots')
    a_pub = node.create_publisher(JointState, '/alice/operator_bridge/action', 10)
    b_pub = node.create_publisher(JointState, '/bob/operator_bridge/action', 10)
    assert call(world.operator_side, Trigger, '/alice/operator_bridge/claim_control', Trigger.Request()).success
    wait_for_sync(lambda: robot.robot.active_operator() == 'alice' and bob.operator.active_operator() == 'alice')
    publish_until(lambda: any(m.data[0] == 1.0 for m in got), lambda i: (act(a_pub, 1.0), act(b_pub, 666.0)))
    resp = call(
        world.operator_side,
        SetActiveOperator,
        '/alice/operator_bridge/set_active_operator',
        SetActiveOperator.Request(identity='bob'),
    )
    assert (resp.success, resp.previous, resp.active) == (True, 'alice', 'bob'), resp.message
    wait_for_sync(lambda: alice.operator.active_operator() == 'bob')
    publish_until(lambda: any(m.data[0] == 2.0 for m in got), lambda i: (act(b_pub, 2.0), act(a_pub, 777.0)))
    time.sleep(0.3)
    values = {m.data[0] for m in got}
    assert values <= {1.0, 2.0}, values  # nothing from whoever was not in control
    assert robot.robot.metrics().transport.dropped.get('gate', 0) > 0
    release = call(world.operator_side, Trigger, '/bob/operator_bridge/release_control', Trigger.Request())
    assert release.success
    wait_for_sync(lambda: robot.robot.active_operator() is None)
    latched = world.operator_side.collect(String, '/bob/operator_bridge/active_operator', LATCHED)
    wait_for_sync(lambda: latched and latched[-1].data == '')


def test_identity_outside_allowed_operators_cannot_take_control(world):
    contract = world.contract(ARM)
    robot = world.robot_bridge(contract, allowed_operators=['alice'])
    world.operator_bridge(contract, 'mallory', namespace='mallory')
    resp = call(world.operator_side, Trigger, '/mallory/operator_bridge/claim_control', Trigger.Request())
    assert not resp.success and 'not authorized' in resp.message and '2003' in resp.message
    local = call(
        world.robot_side,
        SetActiveOperator,
        '/robot_bridge/set_active_operator',
        SetActiveOperator.Request(identity='mallory'),
    )
    assert not local.success and 'allowed_operators' in local.message
    assert robot.robot.active_operator() is None
    # Each refusal counted once, where it happened: the RPC's by the core, the service's by the node.
    assert robot.robot.metrics().transport.dropped.get('handoff-refused') == 1
    assert robot.counts().get('local-handoff-refused') == 1 and 'handoff-refused' not in robot.counts()
    ok = call(
        world.robot_side,
        SetActiveOperator,
        '/robot_bridge/set_active_operator',
        SetActiveOperator.Request(identity='alice'),
    )
    assert ok.success and ok.active == 'alice'


def test_watchdog_zeroes_twist_within_timeout_and_says_why(world):
    contract = world.contract(BASE)
    robot = world.robot_bridge(contract, command_type='twist', on_timeout='zero', action_timeout_ms=300)
    world.operator_bridge(contract, auto_claim=True)
    wait_for_sync(lambda: robot.robot.active_operator() == 'operator')
    stamps = []
    node = world.robot_side.node('base')
    node.create_subscription(Twist, '/cmd_vel', lambda m: stamps.append((time.monotonic(), m.linear.x)), 50)
    pub = world.operator_side.node('teleop').create_publisher(JointState, '/operator_bridge/action', 10)
    publish_until(
        lambda: len(stamps) >= 5, lambda i: pub.publish(JointState(name=['linear_x'], position=[0.5])), period=0.05
    )
    wait_for_sync(lambda: any(v == 0.0 for _, v in stamps), timeout=5, what='zero Twist')
    last_move = max(t for t, v in stamps if v == 0.5)
    zero_at = min(t for t, v in stamps if v == 0.0 and t > last_move)
    assert zero_at - last_move < 0.3 + 0.15, zero_at - last_move  # timeout + one watchdog tick + delivery
    assert robot.safety.trips == 1 and "no action from active operator 'operator'" in robot.safety.reason
    diags = world.robot_side.collect(DiagnosticArray, '/diagnostics')
    wait_for_sync(lambda: any(s.name == 'robot_bridge: safety' for d in diags for s in d.status), timeout=3)
    status = next(s for d in diags for s in d.status if s.name == 'robot_bridge: safety')
    assert status.level == bytes([1]) and 'no action from active operator' in status.message
    assert {kv.key: kv.value for kv in status.values}['trips'] == '1'


def test_emergency_stop_clears_operator_and_zeroes_output(world):
    contract = world.contract(BASE)
    robot = world.robot_bridge(contract, command_type='twist', on_timeout='zero', action_timeout_ms=5000)
    op = world.operator_bridge(contract, auto_claim=True)
    got = world.robot_side.collect(Twist, '/cmd_vel')
    pub = world.operator_side.node('teleop').create_publisher(JointState, '/operator_bridge/action', 10)
    publish_until(lambda: got, lambda i: pub.publish(JointState(name=['linear_x'], position=[1.0])))
    resp = call(world.robot_side, Trigger, '/robot_bridge/emergency_stop', Trigger.Request())
    assert resp.success, resp.message
    wait_for_sync(lambda: got[-1].linear.x == 0.0, timeout=2)
    assert robot.robot.active_operator() is None
    wait_for_sync(lambda: op.operator.active_operator() is None)
    n = len(got)
    for _ in range(5):
        pub.publish(JointState(name=['linear_x'], position=[1.0]))
        time.sleep(0.05)
    time.sleep(0.3)
    assert all(m.linear.x == 0.0 for m in got[n - 1 :])  # nothing moves after the stop


def test_portal_rpc_calls_ros_trigger_service(world):
    contract = world.contract(ARM)
    homed = []

    def home(request, response):
        homed.append(True)
        response.success, response.message = True, 'homed in 1.2 s'
        return response

    world.robot_side.node('arm_services').create_service(Trigger, '/arm/home', home)
    world.robot_bridge(contract, rpc_methods=['home', 'calibrate'], rpc_services=['/arm/home', '/arm/calibrate'])
    world.operator_bridge(contract)
    ok = call(world.operator_side, CallRpc, '/operator_bridge/call_rpc', CallRpc.Request(method='home'))
    assert (ok.success, ok.response, ok.error_code) == (True, 'homed in 1.2 s', 0) and homed
    missing = call(world.operator_side, CallRpc, '/operator_bridge/call_rpc', CallRpc.Request(method='calibrate'))
    assert not missing.success and missing.error_code == 1500 and 'not available' in missing.response


def test_a_ros_service_answering_after_the_rpc_timeout_is_dropped_cleanly(world):
    contract = world.contract(ARM)
    released = threading.Event()

    def slow(request, response):
        released.wait(5)
        response.success, response.message = True, 'late'
        return response

    # The slow service has its own executor thread, so it can answer late without blocking the others.
    from rclpy.executors import SingleThreadedExecutor
    from rclpy.node import Node

    server = Node('slow_arm', context=world.robot_side.context)
    server.create_service(Trigger, '/arm/slow', slow)
    executor = SingleThreadedExecutor(context=world.robot_side.context)
    executor.add_node(server)
    spinner = threading.Thread(target=executor.spin, daemon=True)
    spinner.start()
    robot = world.robot_bridge(contract, rpc_methods=['slow'], rpc_services=['/arm/slow'], rpc_service_timeout_ms=300)
    loop_errors = []
    robot.loop.loop.call_soon_threadsafe(
        robot.loop.loop.set_exception_handler, lambda loop, ctx: loop_errors.append(ctx.get('exception', ctx))
    )
    world.operator_bridge(contract)
    t0 = time.monotonic()
    resp = call(world.operator_side, CallRpc, '/operator_bridge/call_rpc', CallRpc.Request(method='slow'))
    assert not resp.success and resp.error_code == 1500 and 'did not answer within 0.3 s' in resp.response
    assert time.monotonic() - t0 < 3.0
    released.set()  # the reply now arrives after the RPC gave up
    time.sleep(0.5)
    assert loop_errors == []
    again = call(world.operator_side, CallRpc, '/operator_bridge/call_rpc', CallRpc.Request(method='slow'))
    assert again.success and again.response == 'late'  # the bridge still works
    executor.shutdown()
    server.destroy_node()


def test_diagnostics_carry_the_numbers(world):
    contract = world.contract("""
version: 1
fps: 30
videos: [ { name: cam, codec: raw } ]
state: [ { name: j1, dtype: f32 } ]
action: [ { name: j1, dtype: f32 } ]
""")
    robot = world.robot_bridge(contract)
    op = world.operator_bridge(contract, auto_claim=True)
    import numpy as np
    from test_bridge_observations import image, joint_state

    from portal_bridge.portal import now_us
    from portal_bridge_msgs.msg import Observation

    world.operator_side.collect(Observation, '/operator_bridge/observation')
    node = world.robot_side.node('drivers')
    cam = node.create_publisher(type(image(np.zeros((2, 2, 3), np.uint8), 1)), '/cam/image_raw', 10)
    js = node.create_publisher(JointState, 'joint_states', 10)
    r_diag = world.robot_side.collect(DiagnosticArray, '/diagnostics')
    o_diag = world.operator_side.collect(DiagnosticArray, '/diagnostics')

    def send(i):
        ts = now_us()
        cam.publish(image(np.zeros((8, 8, 3), np.uint8), ts))
        js.publish(joint_state(ts, j1=float(i)))

    publish_until(lambda: op.operator.metrics().sync.observations_emitted >= 40, send)
    # The second array from now on was computed after the 40th observation (one may be in flight).
    n_o, n_r = len(o_diag), len(r_diag)
    publish_until(lambda: len(o_diag) >= n_o + 2 and len(r_diag) >= n_r + 2, send)

    def statuses(arrays):
        return {s.name: (s.level, s.message, {kv.key: kv.value for kv in s.values}) for s in arrays[-1].status}

    o, r = statuses(o_diag), statuses(r_diag)
    operator_tasks = ('connection', 'sync', 'transport', 'rtt', 'gate', 'conversion', 'latency', 'inputs')
    robot_tasks = ('connection', 'transport', 'rtt', 'policy', 'gate', 'safety', 'conversion', 'latency', 'inputs')
    assert set(o) == {f'operator_bridge: {t}' for t in operator_tasks}
    assert set(r) == {f'robot_bridge: {t}' for t in robot_tasks}
    latency = r['robot_bridge: latency'][2]
    assert 0 <= int(latency['state_bridge_us_p50']) < 100_000 and 0 <= int(latency['frame_delivery_us_p50']) < 1_000_000
    assert 0 <= int(o['operator_bridge: latency'][2]['observation_bridge_us_p50']) < 1_000_000
    level, message, values = o['operator_bridge: connection']
    assert level == bytes([0]) and message == 'connected' and values['reconnect_count'] == '0'
    _, message, sync = o['operator_bridge: sync']
    assert int(sync['observations_emitted']) >= 40 and float(sync['observations_per_s']) > 5
    # a state that overtakes its frame pairs with the previous one: within the 50 ms window
    assert 0 <= int(sync['match_delta_us_p50']) < 50_000 and int(sync['match_delta_us_p95']) < 50_000
    _, _, transport = o['operator_bridge: transport']
    assert float(transport['cam.fps']) > 5 and int(transport['cam.frames_received']) >= 40
    assert r['robot_bridge: gate'][2]['active_operator'] == 'operator'
    _, _, rtt = o['operator_bridge: rtt']
    assert int(rtt['pings_sent']) >= 1
    assert robot.robot.is_connected
