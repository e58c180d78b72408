"""robot_bridge says which input is missing: no camera publisher, silent joint_states, recovery."""

import threading

from diagnostic_msgs.msg import DiagnosticArray
import numpy as np
import pytest
from sensor_msgs.msg import Image, JointState
from std_msgs.msg import Float64MultiArray
from support.waiting import wait_for_sync
from test_bridge_observations import image, joint_state

from portal_bridge.portal import now_us

pytestmark = [pytest.mark.livekit, pytest.mark.ros]

CONTRACT = """
version: 1
fps: 30
videos: [ { name: front, codec: h264 } ]
state: [ { name: j1, dtype: f32 } ]
action: [ { name: j1, dtype: f32 } ]
"""


def inputs_status(diags, node='robot_bridge'):
    found = [s for d in diags for s in d.status if s.name == f'{node}: inputs']
    return found[-1] if found else None


def publish_while(stop, pub, make, period):
    def run():
        while not stop.is_set():
            pub.publish(make())
            stop.wait(period)

    threading.Thread(target=run, daemon=True).start()


def test_missing_camera_is_reported_stale_and_recovers(world):
    robot = world.robot_bridge(world.contract(CONTRACT), input_timeout_ms=300)
    diags = world.robot_side.collect(DiagnosticArray, '/diagnostics')
    node = world.robot_side.node('drivers')
    js = node.create_publisher(JointState, 'joint_states', 10)
    stop = threading.Event()

    def states():
        while not stop.is_set():
            js.publish(joint_state(now_us(), j1=0.5))
            stop.wait(0.02)

    threading.Thread(target=states, daemon=True).start()
    try:
        # Joint states flow, the camera has no publisher: WARN naming the camera and its topic.
        wait_for_sync(
            lambda: (
                (s := inputs_status(diags)) is not None
                and s.level == bytes([1])
                and 'camera front: no publisher on /front/image_raw' in s.message
            ),
            timeout=12,
            what='camera reported missing',
        )
        values = {kv.key: kv.value for kv in inputs_status(diags).values}
        assert values['joint_states.state'] == 'fresh' and values['camera front.state'] == 'no publisher'
        # The camera appears: OK again, and the robot had said so in one log line each way.
        cam = node.create_publisher(Image, '/front/image_raw', 10)

        def frames():
            while not stop.is_set():
                cam.publish(image(np.zeros((16, 16, 3), np.uint8), now_us()))
                stop.wait(1 / 30)

        threading.Thread(target=frames, daemon=True).start()
        wait_for_sync(
            lambda: (s := inputs_status(diags)) is not None and s.level == bytes([0]),
            timeout=12,
            what='inputs OK after the camera appeared',
        )
        values = {kv.key: kv.value for kv in inputs_status(diags).values}
        assert values['camera front.state'] == 'fresh' and values['camera front.publishers'] == '1'
        assert robot.inputs.names == ['joint_states', 'camera front']
    finally:
        stop.set()


def test_a_robot_with_no_input_at_all_is_an_error(world):
    world.robot_bridge(world.contract(CONTRACT), input_timeout_ms=300)
    diags = world.robot_side.collect(DiagnosticArray, '/diagnostics')
    wait_for_sync(
        lambda: (s := inputs_status(diags)) is not None and s.level == bytes([2]),
        timeout=12,
        what='ERROR when nothing comes in',
    )
    assert 'the robot sends nothing' in inputs_status(diags).message


def test_the_operator_names_the_silent_robot_track_and_a_missing_action_publisher(world):
    """The robot's camera is silent and the operator is in control with nobody sending actions.

    The operator says which robot track is silent (not "the publisher's frame metadata": the
    robot sends no placeholder frames) and that nothing publishes its actions; both recover.
    """
    world.robot_bridge(world.contract(CONTRACT), input_timeout_ms=300)
    drivers = world.robot_side.node('drivers')
    stop = threading.Event()
    js = drivers.create_publisher(JointState, 'joint_states', 10)
    publish_while(stop, js, lambda: joint_state(now_us(), j1=0.5), 0.02)
    op = world.operator_bridge(
        world.contract(CONTRACT),
        identity='pilot',
        auto_claim=True,
        input_timeout_ms=500,
        action_type='float64_multi_array',
    )
    diags = world.operator_side.collect(DiagnosticArray, '/diagnostics')
    try:
        wait_for_sync(
            lambda: (
                (s := inputs_status(diags, 'operator_bridge')) is not None
                and s.level == bytes([1])
                and "front: the robot has sent nothing on its video track 'front' yet" in s.message
                and 'this operator is in control, but nothing publishes on /operator_bridge/action' in s.message
            ),
            timeout=10,
            what='operator reports the silent track and the missing action publisher',
        )
        values = {kv.key: kv.value for kv in inputs_status(diags, 'operator_bridge').values}
        assert values['states.state'] == 'fresh' and values['front.state'] == 'waiting'
        assert op.operator.metrics().transport.dropped.get('no-timestamp', 0) == 0

        cam = drivers.create_publisher(Image, '/front/image_raw', 10)
        publish_while(stop, cam, lambda: image(np.zeros((16, 16, 3), np.uint8), now_us()), 1 / 30)
        teleop = world.operator_side.node('teleop')
        act = teleop.create_publisher(Float64MultiArray, '/operator_bridge/action', 10)
        publish_while(stop, act, lambda: Float64MultiArray(data=[0.1]), 1 / 30)
        wait_for_sync(
            lambda: (s := inputs_status(diags, 'operator_bridge')) is not None and s.level == bytes([0]),
            timeout=10,
            what='operator inputs OK once the camera and the actions flow',
        )
        values = {kv.key: kv.value for kv in inputs_status(diags, 'operator_bridge').values}
        assert values['front.state'] == 'fresh' and values['actions.publishers'] == '1'
        assert op.operator.metrics().transport.dropped.get('no-timestamp', 0) == 0
    finally:
        stop.set()
