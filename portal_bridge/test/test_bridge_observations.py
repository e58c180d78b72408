"""Robot-side ROS topics become operator-side Observations, across two ROS domains and LiveKit."""

import array

import numpy as np
import pytest
from sensor_msgs.msg import CompressedImage, Image, JointState
from std_msgs.msg import Header
from support.ros_world import LATCHED
from support.waiting import wait_for_sync

from portal_bridge.portal import now_us
from portal_bridge.ros.stamps import us_to_stamp
from portal_bridge_msgs.msg import Observation

pytestmark = [pytest.mark.livekit, pytest.mark.ros]

CONTRACT = """
version: 1
fps: 30
videos:
  - { name: front, codec: h264 }
  - { name: wrist, codec: raw }
state:
  - { name: shoulder, dtype: f32 }
  - { name: elbow, dtype: f64 }
  - { name: gripper, dtype: bool }
action:
  - { name: shoulder, dtype: f32 }
  - { name: elbow, dtype: f64 }
"""
RNG = np.random.default_rng(11)


def image(pixels: np.ndarray, stamp_us: int, encoding: str = 'rgb8', pad: int = 0) -> Image:
    h, w, c = pixels.shape
    rows = np.zeros((h, w * c + pad), np.uint8)
    rows[:, : w * c] = pixels.reshape(h, w * c)
    msg = Image(header=Header(stamp=us_to_stamp(stamp_us), frame_id='cam'), height=h, width=w, encoding=encoding)
    msg.step = w * c + pad
    msg.data = array.array('B', rows.tobytes())
    return msg


def joint_state(stamp_us: int, **positions) -> JointState:
    names = list(positions)[::-1]  # deliberately not in contract order
    return JointState(
        header=Header(stamp=us_to_stamp(stamp_us)), name=names, position=[float(positions[n]) for n in names]
    )


def test_images_and_joint_states_become_observations(world):
    contract = world.contract(CONTRACT)
    world.robot_bridge(
        contract, **{'cameras.front.topic': '/front/image_raw', 'cameras.wrist.topic': '/wrist/image_raw'}
    )
    op = world.operator_bridge(contract)
    observations = world.operator_side.collect(Observation, '/operator_bridge/observation')
    joint_states = world.operator_side.collect(JointState, '/operator_bridge/joint_states')
    wrist_images = world.operator_side.collect(Image, '/operator_bridge/wrist/image_raw')
    active = world.operator_side.collect(
        type(op.active_operator_pub.msg_type()), '/operator_bridge/active_operator', LATCHED
    )
    pub_node = world.robot_side.node('camera_driver')
    front = pub_node.create_publisher(Image, '/front/image_raw', 10)
    wrist = pub_node.create_publisher(Image, '/wrist/image_raw', 10)
    joints = pub_node.create_publisher(JointState, 'joint_states', 10)
    wait_for_sync(lambda: op.observation_pub.get_subscription_count() >= 1)
    wait_for_sync(
        lambda: front.get_subscription_count() and wrist.get_subscription_count() and joints.get_subscription_count()
    )
    sent = {}
    for i in range(120):
        ts = now_us()
        px = RNG.integers(0, 256, (48, 64, 3), dtype=np.uint8)
        level = (i * 37) % 200 + 20  # neighbours differ by >= 37: lossy is not the same as mispaired
        flat = np.full((120, 160, 3), level, np.uint8)
        sent[ts] = (i, px, level)
        front.publish(image(flat[:, :, ::-1].copy(), ts, 'bgr8'))
        wrist.publish(image(px, ts, 'rgb8', pad=5))  # padded rows: step > width * 3
        joints.publish(joint_state(ts, shoulder=i * 0.5, elbow=-i / 3, gripper=i % 2))
        if len(observations) >= 20:
            break
        wait_for_sync(lambda: True)
        import time

        time.sleep(1 / 30)
    wait_for_sync(lambda: len(observations) >= 20, timeout=15, what='20 observations')
    for msg in observations:
        i, _, _ = sent[msg.timestamp_us]
        assert msg.header.stamp == us_to_stamp(msg.timestamp_us) and msg.header.frame_id == 'robot'
        assert list(msg.state.name) == ['shoulder', 'elbow', 'gripper']
        assert list(msg.state.position) == [np.float32(i * 0.5), -i / 3, float(i % 2)]
        assert list(msg.camera_names) == ['front', 'wrist']
        f, w = msg.images
        front_ts, wrist_ts = msg.frame_timestamps_us
        # each frame is the nearest one available in the window (a state can overtake its own frame) ...
        assert abs(front_ts - msg.timestamp_us) < 50_000 and abs(wrist_ts - msg.timestamp_us) < 50_000
        # ... and it is exactly the frame sent with its timestamp
        assert (w.encoding, w.width, w.height, w.step) == ('rgb8', 64, 48, 192)
        assert np.array_equal(np.frombuffer(w.data, np.uint8).reshape(48, 64, 3), sent[wrist_ts][1])  # lossless
        assert (f.width, f.height) == (160, 120)
        assert abs(float(np.frombuffer(f.data, np.uint8).mean()) - sent[front_ts][2]) < 15  # H264, right frame
        assert list(msg.stale) == [False, False] and list(msg.omitted_cameras) == []
    wait_for_sync(lambda: joint_states and wrist_images and active)
    assert list(joint_states[-1].name) == ['shoulder', 'elbow', 'gripper']
    assert wrist_images[-1].encoding == 'rgb8'
    assert active[-1].data == ''


def test_compressed_jpeg_goes_through_unchanged_on_mjpeg_track(world):
    contract = world.contract("""
version: 1
videos: [ { name: cam, codec: mjpeg } ]
state: [ { name: j, dtype: f32 } ]
""")
    world.robot_bridge(
        contract, **{'cameras.cam.topic': '/cam/image_raw/compressed', 'cameras.cam.transport': 'compressed'}
    )
    op = world.operator_bridge(contract)
    observations = world.operator_side.collect(Observation, '/operator_bridge/observation')
    node = world.robot_side.node('jpeg_camera')
    cam = node.create_publisher(CompressedImage, '/cam/image_raw/compressed', 10)
    joints = node.create_publisher(JointState, 'joint_states', 10)
    wait_for_sync(lambda: cam.get_subscription_count() and op.observation_pub.get_subscription_count())
    import io

    from PIL import Image as PILImage

    y, x = np.mgrid[0:60, 0:80]
    px = np.stack([x * 3, y * 4, (x + y) * 2], -1).astype(np.uint8)
    buf = io.BytesIO()
    PILImage.fromarray(px).save(buf, format='JPEG', quality=92)
    jpeg = buf.getvalue()
    for _ in range(50):
        ts = now_us()
        msg = CompressedImage(header=Header(stamp=us_to_stamp(ts)), format='rgb8; jpeg compressed bgr8')
        msg.data = array.array('B', jpeg)
        cam.publish(msg)
        joints.publish(joint_state(ts, j=1.0))
        if observations:
            break
        import time

        time.sleep(0.05)
    wait_for_sync(lambda: observations, timeout=10)
    img = observations[0].images[0]
    decoded = np.asarray(PILImage.open(io.BytesIO(jpeg)).convert('RGB'))
    assert np.array_equal(np.frombuffer(img.data, np.uint8).reshape(60, 80, 3), decoded)  # no re-encode
