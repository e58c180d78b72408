"""Bad input on either side is survived, counted and logged once; good data keeps flowing."""

import array
import math
import time

import numpy as np
import pytest
from rclpy.serialization import serialize_message
from sensor_msgs.msg import Image, JointState
from std_msgs.msg import Float64MultiArray, Header
from support.waiting import publish_until, wait_for_sync
from test_bridge_observations import image, joint_state

from portal_bridge.portal import now_us
from portal_bridge.ros.stamps import us_to_stamp
from portal_bridge_msgs.msg import Observation

pytestmark = [pytest.mark.livekit, pytest.mark.ros]

CONTRACT = """
version: 1
videos: [ { name: front, codec: h264 }, { name: depth, codec: png } ]
state: [ { name: j1, dtype: f32 }, { name: j2, dtype: f32 } ]
action: [ { name: j1, dtype: f32 }, { name: j2, dtype: f32 } ]
"""


def test_robot_side_bad_input_is_counted_and_good_data_flows(world):
    contract = world.contract(CONTRACT)
    robot = world.robot_bridge(contract)
    op = world.operator_bridge(contract)
    observations = world.operator_side.collect(Observation, '/operator_bridge/observation')
    node = world.robot_side.node('drivers')
    front = node.create_publisher(Image, '/front/image_raw', 10)
    depth = node.create_publisher(Image, '/depth/image_raw', 10)
    js = node.create_publisher(JointState, 'joint_states', 10)
    wait_for_sync(
        lambda: front.get_subscription_count() and depth.get_subscription_count() and js.get_subscription_count()
    )
    ts = now_us()
    bad = Image(header=Header(stamp=us_to_stamp(ts)), height=4, width=4, encoding='32FC1', step=16)
    bad.data = array.array('B', bytes(64))
    front.publish(bad)  # unsupported encoding
    short = image(np.zeros((4, 4, 3), np.uint8), ts)
    short.height = 40
    front.publish(short)  # data too short for its height
    zero = Image(header=Header(stamp=us_to_stamp(ts)), height=0, width=0, encoding='rgb8', step=0)
    front.publish(zero)
    js.publish(JointState(name=['j1'], position=[1.0]))  # lacks j2, stamp zero
    js.publish(JointState(header=Header(stamp=us_to_stamp(ts)), name=['j1', 'j2'], position=[1.0]))  # fewer positions
    front.publish(image(np.zeros((8, 8, 3), np.uint8), ts))  # too small for H264
    wire = serialize_message(image(np.zeros((4, 4, 3), np.uint8), ts))
    front.publish(wire[:-10])  # a lying CDR buffer: its data length points past its end
    wait_for_sync(
        lambda: (
            {
                'unsupported-encoding',
                'short-data',
                'empty-image',
                'missing-joints',
                'zero-stamp',
                'invalid-frame-dimensions',
                'bad-cdr',
            }
            <= set(robot.counts())
        ),
        what='bad inputs counted',
    )

    def good(i):
        t = now_us()
        front.publish(image(np.full((19, 33, 3), 100, np.uint8), t))  # odd size on H264: cropped, counted
        depth.publish(image(np.full((9, 13, 3), i % 250, np.uint8), t, 'bgr8'))  # odd is fine on PNG
        js.publish(joint_state(t, j1=float(i), j2=2.0))

    publish_until(lambda: len(observations) >= 5, good)
    obs = observations[-1]
    (fw, fh), depth_size = [(im.width, im.height) for im in obs.images]
    assert depth_size == (13, 9)  # PNG frame video keeps odd sizes exactly
    assert fw % 2 == 0 and fh % 2 == 0 and fw <= 33 and fh <= 19  # cropped to even (WebRTC may align further)
    assert robot.counts()['odd-size-cropped'] >= 1
    assert 'internal-error' not in robot.counts() and robot.robot.is_connected and op.operator.is_connected


def test_operator_side_bad_actions_are_counted_never_sent(world):
    contract = world.contract(CONTRACT)
    robot = world.robot_bridge(
        contract,
        command_topic='/cmd',
        action_limits_lower=[-1.0, -1.0],
        action_limits_upper=[1.0, 1.0],
        limit_policy='reject',
    )
    op = world.operator_bridge(contract, auto_claim=True)
    wait_for_sync(lambda: robot.robot.active_operator() == 'operator')
    got = world.robot_side.collect(Float64MultiArray, '/cmd')
    pub = world.operator_side.node('policy').create_publisher(JointState, '/operator_bridge/action', 10)
    wait_for_sync(lambda: pub.get_subscription_count())
    pub.publish(JointState(name=['j1', 'wrist'], position=[0.5, 0.1]))  # unknown joint (j1 still sent)
    pub.publish(JointState(name=['j1'], position=[math.nan]))  # NaN: dropped on the operator
    wait_for_sync(lambda: {'unknown-joints', 'nan-action'} <= set(op.counts()))
    wait_for_sync(lambda: got and list(got[-1].data) == [0.5, 0.0])
    pub.publish(JointState(name=['j1', 'j2'], position=[5.0, 0.0]))  # outside limits: rejected by the robot
    wait_for_sync(lambda: robot.counts().get('limit-rejected') == 1)
    time.sleep(0.2)
    assert all(abs(v) <= 1.0 for m in got for v in m.data)


def test_robot_rejects_nan_and_clamps_when_configured(world):
    """NaN never reaches a controller even when a peer sends it straight over Portal."""
    contract = world.contract(CONTRACT)
    robot = world.robot_bridge(
        contract, command_topic='/cmd', action_limits_lower=[-1.0, -2.0], action_limits_upper=[1.0, 2.0]
    )
    got = world.robot_side.collect(Float64MultiArray, '/cmd')
    import asyncio

    from support.portal_peers import Peers

    from portal_bridge.portal import WireContract

    async def peer():
        async with Peers(world.server, world.room) as peers:
            op = await peers.operator(WireContract.from_yaml_str(CONTRACT), 'raw-peer', claim=True)
            op.send_action({'j1': math.nan, 'j2': 0.5})
            op.send_action({'j1': 3.0, 'j2': -3.0})
            for _ in range(200):
                if got:
                    break
                await asyncio.sleep(0.02)

    asyncio.run(peer())
    wait_for_sync(lambda: got)
    assert [list(m.data) for m in got] == [[1.0, -2.0]]  # NaN rejected, the other clamped
    assert robot.counts()['nan-action'] == 1 and robot.counts()['limit-clamped'] == 1
