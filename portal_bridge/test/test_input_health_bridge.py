"""robot_bridge says which input is missing: no camera publisher, silent joint_states, recovery."""

import threading

from diagnostic_msgs.msg import DiagnosticArray
import numpy as np
import pytest
from sensor_msgs.msg import Image, JointState
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


def inputs_status(diags):
    found = [s for d in diags for s in d.status if s.name == 'robot_bridge: inputs']
    return found[-1] if found else None


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
            timeout=8,
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
            timeout=8,
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
        timeout=8,
        what='ERROR when nothing comes in',
    )
    assert 'the robot sends nothing' in inputs_status(diags).message
