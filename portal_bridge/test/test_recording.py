"""Observations and executed actions recorded as a rosbag2 MCAP bag, read back independently.

What `ros2 bag record -s mcap /operator_bridge/observation /operator_bridge/executed_actions`
does: take the serialized messages from the subscriptions and write them with their type
definitions. Written here with rosbags (rosbag2 folder: metadata.yaml + .mcap), read back with
mcap_ros2 (a different implementation), and compared with what the robot side published.
"""

import os
import time

from ament_index_python.packages import get_package_share_directory
import numpy as np
import pytest
from sensor_msgs.msg import Image, JointState
from support.ros_world import RELIABLE
from support.waiting import publish_until, wait_for_sync
from test_bridge_observations import image, joint_state
import yaml

pytest.importorskip('rosbags', reason='the recording tests write bags with rosbags (pip install rosbags)')
pytest.importorskip('mcap_ros2', reason='the recording tests read bags with mcap-ros2-support (pip install it)')
from rosbags.rosbag2 import StoragePlugin, Writer  # noqa: E402
from rosbags.typesys import Stores, get_types_from_msg, get_typestore  # noqa: E402

from portal_bridge.portal import now_us
from portal_bridge_msgs.msg import ExecutedAction, Observation

pytestmark = [pytest.mark.livekit, pytest.mark.ros]

CONTRACT = """
version: 1
fps: 30
action_subscription: true
videos: [ { name: wrist, codec: raw } ]
state: [ { name: j1, dtype: f64 }, { name: j2, dtype: f64 } ]
action: [ { name: j1, dtype: f64 }, { name: j2, dtype: f64 } ]
"""


def typestore_with_portal_msgs():
    store = get_typestore(Stores.ROS2_KILTED)
    share = get_package_share_directory('portal_bridge_msgs')
    types = {}
    for name in ('Observation', 'ExecutedAction'):
        with open(os.path.join(share, 'msg', f'{name}.msg')) as f:
            types.update(get_types_from_msg(f.read(), f'portal_bridge_msgs/msg/{name}'))
    store.register(types)
    return store


def test_record_observations_and_executed_actions_to_mcap(world, tmp_path):
    contract = world.contract(CONTRACT)
    world.robot_bridge(contract, command_topic='/cmd')
    op = world.operator_bridge(contract, auto_claim=True)
    wait_for_sync(lambda: op.operator.active_operator() == 'operator')

    recorded = {'/operator_bridge/observation': [], '/operator_bridge/executed_actions': []}
    recorder = world.operator_side.node('recorder')
    for topic, msg_type in (
        ('/operator_bridge/observation', Observation),
        ('/operator_bridge/executed_actions', ExecutedAction),
    ):
        recorder.create_subscription(
            msg_type, topic, lambda raw, t=topic: recorded[t].append((time.time_ns(), raw)), RELIABLE, raw=True
        )
    node = world.robot_side.node('drivers')
    cam = node.create_publisher(Image, '/wrist/image_raw', 10)
    js = node.create_publisher(JointState, 'joint_states', 10)
    policy = world.operator_side.node('policy').create_publisher(JointState, '/operator_bridge/action', 10)
    sent = {}

    def step(i):
        ts = now_us()
        px = np.random.default_rng(i).integers(0, 256, (24, 32, 3), dtype=np.uint8)
        sent[ts] = (px, float(i), -float(i))
        cam.publish(image(px, ts))
        js.publish(joint_state(ts, j1=float(i), j2=-float(i)))
        policy.publish(JointState(name=['j1', 'j2'], position=[i * 0.01, 0.5]))

    publish_until(
        lambda: (
            len(recorded['/operator_bridge/observation']) >= 20
            and len(recorded['/operator_bridge/executed_actions']) >= 5
        ),
        step,
    )

    # -- write a rosbag2 folder with the serialized messages, as `ros2 bag record -s mcap` does ----
    store = typestore_with_portal_msgs()
    bag = tmp_path / 'bag'
    snapshot = {topic: list(msgs) for topic, msgs in recorded.items()}
    with Writer(bag, version=9, storage_plugin=StoragePlugin.MCAP) as writer:
        for topic, msgs in snapshot.items():
            msgtype = 'portal_bridge_msgs/msg/' + ('Observation' if topic.endswith('observation') else 'ExecutedAction')
            conn = writer.add_connection(topic, msgtype, typestore=store)
            for recv_ns, raw in msgs:
                writer.write(conn, recv_ns, raw)
    metadata = yaml.safe_load((bag / 'metadata.yaml').read_text())['rosbag2_bagfile_information']
    assert metadata['storage_identifier'] == 'mcap'
    assert metadata['message_count'] == sum(len(m) for m in snapshot.values())

    # -- read it back with an independent reader ------------------------------------------------
    from mcap.reader import make_reader
    from mcap_ros2.decoder import DecoderFactory

    observations, actions = [], []
    with open(next(bag.glob('*.mcap')), 'rb') as f:
        for _, channel, message, decoded in make_reader(
            f, decoder_factories=[DecoderFactory()]
        ).iter_decoded_messages():
            (observations if channel.topic.endswith('observation') else actions).append((message.log_time, decoded))
    assert len(observations) == len(snapshot['/operator_bridge/observation'])
    assert len(actions) == len(snapshot['/operator_bridge/executed_actions'])
    assert [t for t, _ in observations] == [t for t, _ in snapshot['/operator_bridge/observation']]
    for _, obs in observations:
        _, j1, j2 = sent[obs.timestamp_us]
        assert obs.header.stamp.sec * 1_000_000 + obs.header.stamp.nanosec // 1000 == obs.timestamp_us
        assert list(obs.state.name) == ['j1', 'j2'] and list(obs.state.position) == [j1, j2]
        assert list(obs.camera_names) == ['wrist']
        img = obs.images[0]
        frame_ts = obs.frame_timestamps_us[0]
        assert abs(frame_ts - obs.timestamp_us) < 50_000  # the nearest frame available in the window
        assert (img.width, img.height, img.encoding) == (32, 24, 'rgb8')
        assert np.array_equal(np.frombuffer(bytes(img.data), np.uint8).reshape(24, 32, 3), sent[frame_ts][0])
    for _, act in actions:
        assert act.sender == 'operator' and act.rows == 1 and list(act.names) == ['j1', 'j2']
        assert act.values[1] == 0.5
