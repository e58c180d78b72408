"""Interop with the reference Portal peer: livekit-portal (PyPI, 0.2.8) against our bridges.

The upstream implementation is the judge of wire compatibility here, not our own Portal code:
the livekit-portal Robot drives operator_bridge, the livekit-portal Operator drives robot_bridge,
on a real livekit-server, and every test asserts exact values on both sides: observations (state
values of every width, H264 frames paired by timestamp, PNG frames pixel-exact), actions with
dtype encoding and carry-forward, chunks, in_reply_to end-to-end latency, handoff both ways, RPC
both ways, and RTT. The reference peers run on one asyncio loop thread in this process
(support/reference_peer.py); the bridges run on two ROS domains (support/ros_world.py).
"""

from __future__ import annotations

from pathlib import Path
import time
import warnings

from diagnostic_msgs.msg import DiagnosticArray
import numpy as np
import pytest
from sensor_msgs.msg import Image, JointState
from std_msgs.msg import Float64MultiArray, Header, String
from std_srvs.srv import Trigger
from support.reference_peer import ReferencePeers, Repeater, is_sdk_request_timeout
from support.ros_world import LATCHED
from support.waiting import publish_until, wait_explained, wait_for_sync
from test_bridge_control import call
from test_bridge_observations import image, joint_state
from trajectory_msgs.msg import JointTrajectory, JointTrajectoryPoint

from portal_bridge.portal import ContractError, Robot, WireContract, now_us
from portal_bridge.portal.loop_thread import LoopThread
from portal_bridge.ros.stamps import seconds_to_duration, us_to_stamp
from portal_bridge_msgs.msg import Observation
from portal_bridge_msgs.srv import CallRpc, SetActiveOperator

pytestmark = [pytest.mark.livekit, pytest.mark.ros, pytest.mark.interop]

# Cameras of both transports and state fields of four widths. fps 30, tolerance 1.5: the match
# window is 50 ms either side of a state.
SENSORS = """
version: 1
fps: 30
ping_ms: 200
videos:
  - { name: front, codec: h264 }
  - { name: depth, codec: png }
state:
  - { name: shoulder, dtype: f32 }
  - { name: elbow, dtype: f64 }
  - { name: mode, dtype: i16 }
  - { name: gripper, dtype: bool }
action:
  - { name: shoulder, dtype: f32 }
"""
DEFAULT_CONTRACT = Path(__file__).resolve().parents[1] / 'config' / 'portal.yaml'
WINDOW_US = 50_000
STATE_NAMES = ['shoulder', 'elbow', 'mode', 'gripper']
# Of 90 states sent at 30 Hz: enough observations to check every field, codec and stamp many times
# over. What share of states a host turns into observations is measured by the benchmarks: on a
# slow host the sender rightly drops frames its data channel cannot take (publish-full), and
# their states find no frame.
MIN_OBSERVATIONS = 20

# Known defect of our robot side, pinned by test_h264_frames_captured_back_to_back_keep_their_own_stamps:
# two H264 frames captured back to back (< 1 ms apart) through the LiveKit Python SDK arrive as one
# frame showing the first picture with the second one's user_timestamp. Set to False once fixed.
H264_BURST_MISLABEL = False

# State only (every state is an observation at once), actions of four dtypes, one chunk.
ARM = """
version: 1
fps: 30
ping_ms: 200
state: [ { name: shoulder, dtype: f32 } ]
action:
  - { name: shoulder, dtype: f32 }
  - { name: elbow, dtype: f64 }
  - { name: wrist, dtype: i8 }
  - { name: gripper, dtype: bool }
action_chunks:
  - name: plan
    horizon: 5
    fields: [ { name: shoulder, dtype: f32 }, { name: elbow, dtype: f64 }, { name: gripper, dtype: bool } ]
"""

# What robot_bridge drives: three float joints, commanded in the controller's order.
CONTROLLER = """
version: 1
fps: 20
ping_ms: 200
state: [ { name: shoulder, dtype: f32 } ]
action:
  - { name: shoulder, dtype: f32 }
  - { name: elbow, dtype: f64 }
  - { name: gripper, dtype: f32 }
action_chunks:
  - name: plan
    horizon: 4
    fields: [ { name: shoulder, dtype: f32 }, { name: elbow, dtype: f64 }, { name: gripper, dtype: f32 } ]
"""
COMMAND_JOINTS = ['elbow', 'gripper', 'shoulder']  # the controller's order, not the contract's

SINGLE = """
version: 1
fps: 30
ping_ms: 200
state: [ { name: j, dtype: f32 } ]
action: [ { name: j, dtype: f32 } ]
"""


def f32(x: float) -> float:
    return float(np.float32(x))


@pytest.fixture
def reference(world):
    """livekit-portal peers in the world's room (closed before the bridges)."""
    peers = ReferencePeers(world.server, world.room)
    yield peers
    peers.close()
    for retry in peers.sdk_retries:
        warnings.warn(f'livekit-portal SDK attribute-reply race, retried: {retry}', stacklevel=1)


@pytest.fixture
def repeaters():
    made: list[Repeater] = []
    yield made
    for r in made:
        r.stop()


def bridge_service(world, reference, srv_type, name, request):
    """Call an operator_bridge handoff service; retried only if a livekit-portal robot hit its SDK race."""
    for attempt in range(3):
        resp = call(world.operator_side, srv_type, name, request)
        if resp.success or not is_sdk_request_timeout(resp.message) or attempt == 2:
            return resp
        reference.sdk_retries.append(f'{name}: {resp.message}')
    raise AssertionError('unreachable')


def diagnostic(world_side, name: str, predicate, timeout: float = 10.0) -> dict:
    """The values of the latest status ``name`` on /diagnostics for which ``predicate(values)`` holds."""
    arrays = world_side.collect(DiagnosticArray, '/diagnostics')

    def latest():
        for array in reversed(list(arrays)):
            for status in array.status:
                if status.name == name:
                    values = {kv.key: kv.value for kv in status.values}
                    return values if predicate(values) else None
        return None

    return wait_for_sync(latest, timeout, what=f'{name} on /diagnostics')


# -- camera content: numbered frames ----------------------------------------------------------------
def level(i: int) -> int:
    """Grey level of H264 frame i: neighbours differ by >= 37, so lossy is not the same as mispaired."""
    return (i * 37) % 200 + 20


def front_frame(i: int) -> np.ndarray:
    return np.full((120, 160, 3), level(i), np.uint8)


def depth_frame(i: int) -> np.ndarray:
    """Frame i of the PNG camera: noise seeded with i, so every frame is unique and incompressible."""
    return np.random.default_rng(i).integers(0, 256, (48, 64, 3), dtype=np.uint8)


def wait_for_observations(observations: list, receiver, sender) -> None:
    """At least MIN_OBSERVATIONS, or say what the receiving sync buffer and the sender counted."""

    def explain():
        m = receiver()
        return f'got {len(observations)}; receiver {m.sync} {m.transport}; sender {sender()}'

    wait_explained(lambda: len(observations) >= MIN_OBSERVATIONS, 30, f'{MIN_OBSERVATIONS} observations', explain)


def sensor_state(i: int) -> dict:
    return {'shoulder': i * 0.1, 'elbow': -i / 3, 'mode': (i * 7) % 600 - 300, 'gripper': i % 2 == 1}


def wire_state(i: int) -> list[float]:
    """What sensor_state(i) is after the wire: f32 rounded, f64 exact, i16 exact, bool 0/1."""
    s = sensor_state(i)
    return [f32(s['shoulder']), s['elbow'], float(s['mode']), float(s['gripper'])]


# ---------------------------------------------------------------------------------------------------
# 0. The contract file: the same portal.yaml means the same contract to livekit-portal and to us
# ---------------------------------------------------------------------------------------------------
EVERY_KEY = """
version: 1
fps: 15
slack: 7
tolerance: 1.1
state_reliable: false
action_reliable: true
reuse_stale_frames: true
ping_ms: 250
action_subscription: true
videos:
  - { name: front, codec: H264, max_bitrate_kbps: 8000 }
  - { name: side, codec: vp8 }
  - { name: wrist, codec: mjpeg, quality: 70 }
  - { name: depth, codec: png }
  - { name: ir, codec: raw }
state:
  - { name: a, dtype: f64 }
  - { name: b, dtype: F32 }
  - { name: c, dtype: i32 }
  - { name: d, dtype: i16 }
  - { name: e, dtype: i8 }
  - { name: f, dtype: u32 }
  - { name: g, dtype: u16 }
  - { name: h, dtype: u8 }
  - { name: i, dtype: bool }
action: [ { name: a, dtype: f32 }, { name: i, dtype: bool } ]
action_chunks:
  - { name: vla, horizon: 16, fields: [ { name: a, dtype: f32 }, { name: i, dtype: bool } ] }
  - { name: act, horizon: 4, fields: [ { name: a, dtype: f64 } ] }
"""


def _schema(fields) -> list:
    return [(f.name, f.dtype.name) for f in fields]


def their_contract(cfg) -> dict:
    return {
        'knobs': (
            cfg.fps,
            cfg.slack,
            f32(cfg.tolerance),
            cfg.ping_ms,
            cfg.state_reliable,
            cfg.action_reliable,
            cfg.reuse_stale_frames,
            cfg.action_subscription,
        ),  # fmt: skip
        'videos': [
            (v.name, v.codec.name, v.quality if v.codec.name == 'MJPEG' else None, v.max_bitrate_kbps)
            for v in cfg.video_track_specs
        ],
        'state': _schema(cfg.state_schema),
        'action': _schema(cfg.action_schema),
        'chunks': [(c.name, c.horizon, _schema(c.fields)) for c in cfg.action_chunks],
    }


def our_contract(c: WireContract) -> dict:
    return {
        'knobs': (
            c.fps,
            c.slack,
            f32(c.tolerance),
            c.ping_ms,
            c.state_reliable,
            c.action_reliable,
            c.reuse_stale_frames,
            c.action_subscription,
        ),  # fmt: skip
        'videos': [
            (v.name, v.codec.name, v.quality if v.codec.name == 'MJPEG' else None, v.max_bitrate_kbps) for v in c.videos
        ],
        'state': _schema(c.state),
        'action': _schema(c.action),
        'chunks': [(k.name, k.horizon, _schema(k.fields)) for k in c.action_chunks],
    }


@pytest.mark.parametrize(
    'text',
    [
        pytest.param(DEFAULT_CONTRACT.read_text(), id='config/portal.yaml'),
        pytest.param(EVERY_KEY, id='every-key'),
        pytest.param(SENSORS, id='sensors'),
        pytest.param(ARM, id='arm'),
        pytest.param('version: 1\n', id='minimal'),
        pytest.param('version: 2\n', id='version-2'),
        pytest.param('version: 1\nstate: [ { name: a, dtype: float64 } ]\n', id='bad-dtype'),
        pytest.param('version: 1\nvideos: [ { name: a, codec: h264 }, { name: a, codec: png } ]\n', id='dup-video'),
        pytest.param('version: 1\nvideos: [ { name: a, codec: png, max_bitrate_kbps: 10 } ]\n', id='bitrate-on-png'),
        pytest.param('version: 1\nvideos: [ { name: a, codec: mjpeg, quality: 0 } ]\n', id='mjpeg-quality-0'),
        pytest.param('version: 1\nfps: 0\n', id='fps-0'),
        pytest.param('version: 1\nbogus: 1\n', id='unknown-key'),
        pytest.param(
            'version: 1\nstall_behavior: omit\nmax_lag_ms: 100\n',
            id='stall-keys',
        ),
        pytest.param(
            'version: 1\nvideos: [ { name: a, codec: h264, simulcast: true, screencast: true, stall_behavior: freeze, '
            'max_lag_ms: 50 } ]\n',
            id='video-keys',
        ),
        pytest.param('version: 1\nstall_behavior: wait\n', id='bad-stall-behavior'),
        pytest.param('version: 1\nvideos: [ { name: a, codec: png, simulcast: true } ]\n', id='simulcast-on-png'),
    ],
)
def test_the_same_portal_yaml_is_the_same_contract_for_livekit_portal_and_us(text):
    lp = ReferencePeers.portal_module()
    try:
        theirs = their_contract(lp.OperatorConfig.from_yaml_str(text, 'session'))
    except lp.ConfigFileError as exc:
        theirs = f'rejected: {exc}'
    try:
        ours = our_contract(WireContract.from_yaml_str(text))
    except ContractError as exc:
        ours = f'rejected: {exc}'
    if isinstance(theirs, str) or isinstance(ours, str):
        assert isinstance(theirs, str) and isinstance(ours, str), f'livekit-portal: {theirs}\nours: {ours}'
    else:
        assert ours == theirs


# ---------------------------------------------------------------------------------------------------
# 1. livekit-portal Robot -> operator_bridge: observations
# ---------------------------------------------------------------------------------------------------
def test_portal_robot_observations_reach_operator_bridge_exactly(world, reference, repeaters):
    contract = world.contract(SENSORS)
    robot = reference.robot(contract)
    op = world.operator_bridge(contract)
    observations = world.operator_side.collect(Observation, '/operator_bridge/observation')
    wait_for_sync(lambda: op.observation_pub.get_subscription_count() >= 1, what='observation subscriber')
    wait_for_sync(lambda: op.operator.robot_identity() == 'robot')

    sent: dict[int, int] = {}
    total = 90

    def tick(i: int) -> None:
        if i >= total:
            return
        ts = now_us()
        sent[ts] = i
        robot.send_video_frame('front', front_frame(i), timestamp_us=ts)
        robot.send_video_frame('depth', depth_frame(i), timestamp_us=ts)
        robot.send_state(sensor_state(i), timestamp_us=ts)

    repeaters.append(Repeater(tick, 1 / 30))
    wait_for_sync(lambda: len(sent) >= total, 10, what='robot sent its frames')
    wait_for_observations(observations, op.operator.metrics, lambda: robot.metrics().transport)
    got = list(observations)
    assert len(got) <= total
    stamps = [m.timestamp_us for m in got]
    assert stamps == sorted(stamps) and len(set(stamps)) == len(stamps)  # in order, no duplicates
    for msg in got:
        i = sent[msg.timestamp_us]  # the state's own timestamp, sent by the robot
        assert msg.header.stamp == us_to_stamp(msg.timestamp_us) and msg.header.frame_id == 'robot'
        assert list(msg.state.name) == STATE_NAMES
        assert list(msg.state.position) == wire_state(i), i
        assert list(msg.camera_names) == ['front', 'depth']  # WebRTC tracks first, then frame video
        front_ts, depth_ts = msg.frame_timestamps_us
        assert abs(front_ts - msg.timestamp_us) < WINDOW_US and abs(depth_ts - msg.timestamp_us) < WINDOW_US
        assert msg.match_delta_us == max(abs(front_ts - msg.timestamp_us), abs(depth_ts - msg.timestamp_us))
        front, depth = msg.images
        assert (depth.encoding, depth.width, depth.height, depth.step) == ('rgb8', 64, 48, 192)
        assert bytes(depth.data) == depth_frame(sent[depth_ts]).tobytes()  # PNG: pixel-exact, that frame
        assert (front.encoding, front.width, front.height) == ('rgb8', 160, 120)
        mean = float(np.frombuffer(bytes(front.data), np.uint8).mean())
        assert abs(mean - level(sent[front_ts])) < 15, (mean, level(sent[front_ts]))  # H264: the frame of its ts
        assert list(msg.stale) == [False, False] and list(msg.omitted_cameras) == []


# ---------------------------------------------------------------------------------------------------
# 2. operator_bridge -> livekit-portal Robot: actions, chunks, in_reply_to
# ---------------------------------------------------------------------------------------------------
def claimed_portal_robot(world, reference, text):
    contract = world.contract(text)
    actions: list = []
    chunks: list = []

    def setup(robot):
        robot.on_action(actions.append)
        robot.on_action_chunk('plan', chunks.append)

    robot = reference.robot(contract, setup=setup)
    op = world.operator_bridge(contract)
    resp = bridge_service(world, reference, Trigger, '/operator_bridge/claim_control', Trigger.Request())
    assert resp.success, resp.message
    wait_for_sync(lambda: robot.active_operator() == 'operator' and op.operator.active_operator() == 'operator')
    return robot, op, actions, chunks


def action_msg(stamp_us=None, **values) -> JointState:
    names = list(values)
    msg = JointState(name=names, position=[float(values[n]) for n in names])
    if stamp_us:
        msg.header = Header(stamp=us_to_stamp(stamp_us))
    return msg


def chunk_msg(rows, stamp_us=None) -> JointTrajectory:
    """Rows in contract order (shoulder, elbow, gripper), sent with the joints in another order."""
    msg = JointTrajectory(joint_names=['gripper', 'elbow', 'shoulder'])
    msg.points = [
        JointTrajectoryPoint(positions=[row[2], row[1], row[0]], time_from_start=seconds_to_duration(r * 0.1))
        for r, row in enumerate(rows)
    ]
    if stamp_us:
        msg.header = Header(stamp=us_to_stamp(stamp_us))
    return msg


def test_operator_bridge_actions_and_chunks_reach_portal_robot_exactly(world, reference):
    robot, op, actions, chunks = claimed_portal_robot(world, reference, ARM)
    pub = world.operator_side.node('policy').create_publisher(JointState, '/operator_bridge/action', 10)
    # f32 rounds, f64 is exact, i8 truncates toward zero, bool is "non-zero"
    publish_until(
        lambda: actions, lambda i: pub.publish(action_msg(gripper=0.5, wrist=-3.7, elbow=-1.25, shoulder=0.1))
    )
    first = {'shoulder': f32(0.1), 'elbow': -1.25, 'wrist': -3, 'gripper': True}
    for a in actions:
        assert a.values == first and a.sender == 'operator' and a.in_reply_to_ts_us is None
        assert type(a.values['wrist']) is int and type(a.values['gripper']) is bool
    # a partial action: fields not named keep their last value (carry-forward); i8 saturates at 127
    pub.publish(action_msg(wrist=500.0))
    wait_for_sync(lambda: actions[-1].values['wrist'] == 127, what='partial action')
    assert actions[-1].values == {'shoulder': f32(0.1), 'elbow': -1.25, 'wrist': 127, 'gripper': True}
    assert all(a.values == first for a in actions[:-1])  # ordered: the partial one came last
    assert actions[-1].timestamp_us > actions[-2].timestamp_us and actions[-1].sender == 'operator'

    rows = [[0.1 * r, -r / 7, float(r % 2)] for r in range(5)]
    traj_pub = world.operator_side.node('planner').create_publisher(
        JointTrajectory, '/operator_bridge/action_chunk', 10
    )
    wait_for_sync(lambda: traj_pub.get_subscription_count())
    traj_pub.publish(chunk_msg(rows))
    wait_for_sync(lambda: chunks, what='chunk on the Portal robot')
    chunk = chunks[0]
    assert (chunk.name, chunk.horizon, chunk.sender, chunk.in_reply_to_ts_us) == ('plan', 5, 'operator', None)
    assert chunk.data['shoulder'].dtype == np.float32 and chunk.data['gripper'].dtype == np.bool_
    assert chunk.data['shoulder'].tolist() == [f32(row[0]) for row in rows]
    assert chunk.data['elbow'].tolist() == [row[1] for row in rows]
    assert chunk.data['gripper'].tolist() == [False, True, False, True, False]
    m = robot.metrics().transport
    assert (m.actions_received, m.action_chunks_received) == (len(actions), 1)


def test_action_answering_an_observation_gives_portal_robot_e2e_latency(world, reference, repeaters):
    robot, op, actions, chunks = claimed_portal_robot(world, reference, ARM)
    observations = world.operator_side.collect(Observation, '/operator_bridge/observation')
    wait_for_sync(lambda: op.observation_pub.get_subscription_count() >= 1)
    repeaters.append(Repeater(lambda i: robot.send_state({'shoulder': i * 0.5}), 1 / 30))
    wait_for_sync(lambda: len(observations) >= 5, what='observations of the Portal robot')
    assert robot.metrics().policy.correlated_received == 0
    pub = world.operator_side.node('policy').create_publisher(JointState, '/operator_bridge/action', 10)
    traj_pub = world.operator_side.node('planner').create_publisher(
        JointTrajectory, '/operator_bridge/action_chunk', 10
    )
    wait_for_sync(lambda: pub.get_subscription_count() and traj_pub.get_subscription_count())
    answered = [m.timestamp_us for m in observations[1:4]]
    for k, ts in enumerate(answered):
        pub.publish(action_msg(ts, shoulder=float(k), elbow=0.0, wrist=0.0, gripper=0.0))  # answers that obs
    pub.publish(action_msg(12345, shoulder=9.0))  # a stamp of no observation: not an answer
    traj_pub.publish(chunk_msg([[0.0, 0.0, 0.0]] * 5, stamp_us=observations[4].timestamp_us))
    wait_for_sync(lambda: len(actions) >= 4 and chunks, what='answers on the Portal robot')
    assert [a.in_reply_to_ts_us for a in actions] == [*answered, None]
    assert [a.values['shoulder'] for a in actions] == [0.0, 1.0, 2.0, 9.0]
    assert chunks[0].in_reply_to_ts_us == observations[4].timestamp_us
    policy = robot.metrics().policy
    assert policy.correlated_received == 4  # three actions and the chunk
    # robot clock: state sent -> observation -> ROS -> answer -> LiveKit -> robot
    assert 0 < policy.e2e_us_p50 <= policy.e2e_us_p95 < 10_000_000, policy


# ---------------------------------------------------------------------------------------------------
# 3. livekit-portal Operator <-> robot_bridge: observations, actions, chunks
# ---------------------------------------------------------------------------------------------------
def test_robot_bridge_observations_reach_portal_operator_exactly(world, reference, repeaters):
    contract = world.contract(SENSORS)
    bridge = world.robot_bridge(
        contract, **{'cameras.front.topic': '/front/image_raw', 'cameras.depth.topic': '/depth/image_raw'}
    )
    observations: list = []
    viewer = reference.operator(contract, 'viewer', setup=lambda o: o.on_observation(observations.append))
    node = world.robot_side.node('drivers')
    front = node.create_publisher(Image, '/front/image_raw', 10)
    depth = node.create_publisher(Image, '/depth/image_raw', 10)
    joints = node.create_publisher(JointState, 'joint_states', 10)
    wait_for_sync(
        lambda: front.get_subscription_count() and depth.get_subscription_count() and joints.get_subscription_count()
    )
    sent: dict[int, int] = {}
    total = 90

    def tick(i: int) -> None:
        if i >= total:
            return
        ts = now_us()
        sent[ts] = i
        front.publish(image(front_frame(i), ts, 'rgb8'))
        depth.publish(image(depth_frame(i)[:, :, ::-1].copy(), ts, 'bgr8'))  # BGR in, RGB on the wire
        s = sensor_state(i)
        joints.publish(joint_state(ts, shoulder=s['shoulder'], elbow=s['elbow'], mode=s['mode'], gripper=s['gripper']))

    repeaters.append(Repeater(tick, 1 / 30))
    wait_for_sync(lambda: len(sent) >= total, 10, what='robot sent its frames')
    wait_for_observations(observations, viewer.metrics, lambda: bridge.robot.metrics().transport)
    got = list(observations)
    assert len(got) <= total
    mislabelled: list[int] = []
    stamps = [o.timestamp_us for o in got]
    assert stamps == sorted(stamps) and len(set(stamps)) == len(stamps)
    for obs in got:
        i = sent[obs.timestamp_us]
        s = sensor_state(i)
        assert obs.state == {
            'shoulder': f32(s['shoulder']),
            'elbow': s['elbow'],
            'mode': s['mode'],
            'gripper': s['gripper'],
        }
        assert type(obs.state['mode']) is int and type(obs.state['gripper']) is bool
        assert set(obs.frames) == {'front', 'depth'}
        f, d = obs.frames['front'], obs.frames['depth']
        assert f.source == reference.lp.FrameSource.LIVE and d.source == reference.lp.FrameSource.LIVE
        assert abs(f.timestamp_us - obs.timestamp_us) < WINDOW_US and abs(d.timestamp_us - obs.timestamp_us) < WINDOW_US
        assert (d.width, d.height) == (64, 48)
        assert bytes(d.data) == depth_frame(sent[d.timestamp_us]).tobytes()  # PNG: pixel-exact, that frame
        assert (f.width, f.height, len(f.data)) == (160, 120, 160 * 120 * 3)
        mean = float(np.frombuffer(bytes(f.data), np.uint8).mean())
        j = sent[f.timestamp_us]
        if abs(mean - level(j)) >= 15 and H264_BURST_MISLABEL and abs(mean - level(j - 1)) < 15:
            mislabelled.append(j)  # the known defect: the frame before, with this frame's stamp (see below)
            continue
        assert abs(mean - level(j)) < 15, (mean, level(j))  # H264: the frame of its timestamp
    if mislabelled:
        warnings.warn(f"H264 frames labelled with the next frame's timestamp: {mislabelled}", stacklevel=1)


@pytest.mark.xfail(
    H264_BURST_MISLABEL,
    strict=True,
    reason='known defect: H264 frames captured back to back through the LiveKit Python SDK carry the wrong '
    "user_timestamp (the first picture arrives with the second frame's stamp); when this passes, set "
    'H264_BURST_MISLABEL to False',
)
def test_h264_frames_captured_back_to_back_keep_their_own_stamps(livekit_server, room_name, tmp_path):
    """Our robot (robot_bridge's Portal robot) sends pairs of H264 frames back to back; livekit-portal judges.

    robot_bridge does this whenever its camera thread catches up with two queued images. livekit-
    portal's own Robot, fed the same pairs, delivers every frame with its own stamp.
    """
    path = tmp_path / 'portal.yaml'
    path.write_text('version: 1\nfps: 30\nvideos: [ { name: front, codec: h264 } ]\n')
    peers = ReferencePeers(livekit_server, room_name)
    loop = LoopThread('our-robot')
    robot = Robot(WireContract.from_yaml_file(str(path)))
    frames: list = []

    def on_frame(track, frame):
        frames.append((frame.timestamp_us, float(np.frombuffer(bytes(frame.data), np.uint8).mean())))

    try:
        loop.run(robot.connect(livekit_server.url, peers.token('robot')), 20)
        peers.operator(str(path), 'viewer', setup=lambda o: o.on_video_frame('front', on_frame))
        sent: dict[int, int] = {}
        publish_until(lambda: frames, lambda i: robot.send_video_frame('front', front_frame(0)), what='video flowing')
        frames.clear()
        for i in range(0, 90, 2):
            for j in (i, i + 1):  # two frames, microseconds apart
                ts = now_us()
                sent[ts] = j
                robot.send_video_frame('front', front_frame(j), timestamp_us=ts)
            time.sleep(2 / 30)  # pacing: one pair per two frame periods
        wait_for_sync(lambda: frames and sent.get(frames[-1][0], 0) >= 80, 5, what='the last pairs')
        received = [(sent[ts], mean) for ts, mean in frames if ts in sent]
        assert len(received) >= 20
        mislabelled = [(j, mean) for j, mean in received if abs(mean - level(j)) >= 15]
        assert mislabelled == [], f"{len(mislabelled)} of {len(received)} frames carry another frame's stamp"
    finally:
        peers.close()
        try:
            loop.run(robot.disconnect(), 10)
        finally:
            loop.stop()


def test_portal_operator_actions_become_commands_once_it_has_claimed_control(world, reference, repeaters):
    contract = world.contract(CONTROLLER)
    robot = world.robot_bridge(contract, command_topic='/cmd', command_joints=COMMAND_JOINTS, action_timeout_ms=5000)
    got = world.robot_side.collect(Float64MultiArray, '/cmd')
    observations: list = []
    pilot = reference.operator(contract, 'pilot', setup=lambda o: o.on_observation(observations.append))
    repeaters.append(Repeater(lambda i: pilot.send_action({'shoulder': 0.1, 'elbow': -1.25, 'gripper': 0.75})))
    # before claiming: the actions reach the robot and its gate drops them
    wait_for_sync(lambda: robot.robot.metrics().transport.dropped.get('gate', 0) >= 3, what='gated actions')
    assert got == [] and robot.robot.active_operator() is None
    reference.set_active_operator(pilot, 'pilot')
    assert robot.robot.active_operator() == 'pilot'
    wait_for_sync(lambda: pilot.active_operator() == 'pilot', what="the Portal operator's mirror")
    wait_for_sync(lambda: len(got) >= 5, what='commands')
    assert all(list(m.data) == [-1.25, 0.75, f32(0.1)] for m in got), [list(m.data) for m in got[:5]]

    # answers to robot_bridge's observations give robot_bridge the end-to-end latency
    js = world.robot_side.node('arm').create_publisher(JointState, 'joint_states', 10)
    publish_until(
        lambda: len(observations) >= 3,
        lambda i: js.publish(
            JointState(header=Header(stamp=us_to_stamp(now_us())), name=['shoulder'], position=[float(i)])
        ),
    )
    for obs in observations[:3]:
        pilot.send_action({'shoulder': 0.1, 'elbow': -1.25, 'gripper': 0.75}, in_reply_to_ts_us=obs.timestamp_us)
    wait_for_sync(lambda: robot.robot.metrics().policy.correlated_received == 3, what='correlated actions')
    policy = robot.robot.metrics().policy
    assert 0 < policy.e2e_us_p50 <= policy.e2e_us_p95 < 10_000_000, policy


def test_portal_operator_chunk_becomes_one_joint_trajectory(world, reference):
    contract = world.contract(CONTROLLER)
    robot = world.robot_bridge(
        contract, command_type='joint_trajectory', chunk_mode='trajectory', command_topic='/traj',
        command_joints=COMMAND_JOINTS,
    )  # fmt: skip
    got = world.robot_side.collect(JointTrajectory, '/traj')
    pilot = reference.operator(contract, 'pilot')
    reference.set_active_operator(pilot, 'pilot')
    assert robot.robot.active_operator() == 'pilot'
    rows = [[0.1 * r, -r / 7, 0.25 * r] for r in range(4)]  # contract order: shoulder, elbow, gripper
    columns = {'gripper': [r[2] for r in rows], 'shoulder': [r[0] for r in rows], 'elbow': [r[1] for r in rows]}
    pilot.send_action_chunk('plan', columns)
    wait_for_sync(lambda: got, what='trajectory')
    traj = got[0]
    assert list(traj.joint_names) == COMMAND_JOINTS
    assert [list(p.positions) for p in traj.points] == [[r[1], f32(r[2]), f32(r[0])] for r in rows]
    assert [p.time_from_start for p in traj.points] == [seconds_to_duration(r / 20) for r in range(4)]
    assert robot.robot.metrics().transport.action_chunks_received == 1
    # a single action is a one-point trajectory, one tick ahead
    pilot.send_action({'shoulder': 0.5, 'elbow': 2.0, 'gripper': 0.0})
    wait_for_sync(lambda: len(got) >= 2, what='single action as trajectory')
    assert [list(p.positions) for p in got[1].points] == [[2.0, 0.0, 0.5]]
    assert got[1].points[0].time_from_start == seconds_to_duration(1 / 20)


# ---------------------------------------------------------------------------------------------------
# 4. Handoff both ways
# ---------------------------------------------------------------------------------------------------
class Phases:
    """Both operators stream all the time; their values say who sent them and in which phase.

    pilot (livekit-portal Operator) sends 10 + phase, copilot (operator_bridge) 20 + phase. The
    phase changes only after a handoff has returned, so the executed values show whose actions the
    robot took when (see check_control_segments).
    """

    def __init__(self, world, pilot, repeaters) -> None:
        self.phase = 0
        pub = world.operator_side.node('copilot_teleop').create_publisher(JointState, '/operator_bridge/action', 10)
        wait_for_sync(lambda: pub.get_subscription_count())
        repeaters.append(Repeater(lambda i: pilot.send_action({'j': 10.0 + self.phase})))
        repeaters.append(Repeater(lambda i: pub.publish(JointState(name=['j'], position=[20.0 + self.phase]))))


def check_control_segments(executed) -> None:
    """``executed``: (sender, value) in execution order. Control went pilot -> copilot -> pilot.

    Whatever the robot executed between two handoffs comes from the operator in control then, and
    each operator's value of the phase it was given control in is among it. Values of earlier
    phases may be among it too: they were in flight as control arrived (the gate judges on
    arrival), but never a value sent before that operator's own earlier ones were delivered.
    Accepting anyone else in between would break the sequence of senders.
    """
    segments: list = []
    for sender, value in executed:
        if not segments or segments[-1][0] != sender:
            segments.append((sender, set()))
        segments[-1][1].add(value)
    assert [s for s, _ in segments] == ['pilot', 'copilot', 'pilot'], segments
    for (_, values), allowed, required in zip(
        segments, ({10.0, 11.0}, {20.0, 21.0, 22.0}, {11.0, 12.0, 13.0}), (11.0, 22.0, 13.0)
    ):
        assert required in values and values <= allowed, segments


def test_handoff_both_ways_with_robot_bridge(world, reference, repeaters):
    contract = world.contract(SINGLE)
    robot = world.robot_bridge(contract, command_topic='/cmd', action_timeout_ms=5000)
    got = world.robot_side.collect(Float64MultiArray, '/cmd')
    copilot = world.operator_bridge(contract, 'copilot')
    pilot = reference.operator(contract, 'pilot')
    phases = Phases(world, pilot, repeaters)
    wait_for_sync(lambda: robot.robot.metrics().transport.dropped.get('gate', 0) >= 10, what='both gated')
    assert got == []

    # operator_bridge's service hands control to the livekit-portal operator
    resp = call(
        world.operator_side, SetActiveOperator, '/operator_bridge/set_active_operator',
        SetActiveOperator.Request(identity='pilot'),
    )  # fmt: skip
    assert (resp.success, resp.previous, resp.active) == (True, '', 'pilot'), resp.message
    phases.phase = 1
    wait_for_sync(lambda: pilot.active_operator() == 'pilot' and any(m.data[0] == 11.0 for m in got))

    # the livekit-portal operator hands control to operator_bridge ...
    reference.set_active_operator(pilot, 'copilot')
    assert robot.robot.active_operator() == 'copilot'
    phases.phase = 2
    wait_for_sync(lambda: copilot.operator.active_operator() == 'copilot' and pilot.active_operator() == 'copilot')
    wait_for_sync(lambda: any(m.data[0] == 22.0 for m in got), what="copilot's actions")

    # ... and takes it back
    reference.set_active_operator(pilot, 'pilot')
    assert robot.robot.active_operator() == 'pilot'
    phases.phase = 3
    wait_for_sync(lambda: any(m.data[0] == 13.0 for m in got), what="pilot's actions again")
    check_control_segments(('pilot' if m.data[0] < 20 else 'copilot', m.data[0]) for m in got)
    wait_for_sync(lambda: copilot.operator.active_operator() == 'pilot')


def test_handoff_both_ways_with_portal_robot(world, reference, repeaters):
    contract = world.contract(SINGLE)
    accepted: list = []
    changes: list = []

    def setup(robot):
        robot.on_action(accepted.append)
        robot.on_active_operator_changed(changes.append)

    robot = reference.robot(contract, setup=setup)
    copilot = world.operator_bridge(contract, 'copilot')
    latched = world.operator_side.collect(String, '/operator_bridge/active_operator', LATCHED)
    pilot = reference.operator(contract, 'pilot')
    phases = Phases(world, pilot, repeaters)
    wait_for_sync(lambda: robot.operators() == ['copilot', 'pilot'], what='the Portal robot sees both operators')
    wait_for_sync(
        lambda: (
            pilot.metrics().transport.actions_sent >= 10 and copilot.operator.metrics().transport.actions_sent >= 10
        ),
        what='both operators streaming',
    )
    assert accepted == [] and robot.active_operator() is None

    # operator_bridge's service hands control to the livekit-portal operator
    resp = bridge_service(
        world, reference, SetActiveOperator, '/operator_bridge/set_active_operator',
        SetActiveOperator.Request(identity='pilot'),
    )  # fmt: skip
    assert (resp.success, resp.previous, resp.active) == (True, '', 'pilot'), resp.message
    assert robot.active_operator() == 'pilot'
    phases.phase = 1
    wait_for_sync(lambda: any(a.values['j'] == 11.0 for a in accepted), what="pilot's actions")

    # the livekit-portal operator hands control to operator_bridge ...
    reference.set_active_operator(pilot, 'copilot')
    assert robot.active_operator() == 'copilot'
    phases.phase = 2
    wait_for_sync(lambda: copilot.operator.active_operator() == 'copilot' and latched[-1].data == 'copilot')
    wait_for_sync(lambda: any(a.values['j'] == 22.0 for a in accepted), what="copilot's actions")

    # ... and takes it back
    reference.set_active_operator(pilot, 'pilot')
    assert robot.active_operator() == 'pilot'
    phases.phase = 3
    wait_for_sync(lambda: any(a.values['j'] == 13.0 for a in accepted), what="pilot's actions again")
    wait_for_sync(lambda: copilot.operator.active_operator() == 'pilot' and latched[-1].data == 'pilot')

    for a in accepted:  # the gate's label is who sent the value
        assert a.sender == ('pilot' if a.values['j'] < 20 else 'copilot'), a
    check_control_segments((a.sender, a.values['j']) for a in accepted)
    assert changes == ['pilot', 'copilot', 'pilot']


# ---------------------------------------------------------------------------------------------------
# 5. RPC both ways
# ---------------------------------------------------------------------------------------------------
def test_call_rpc_from_operator_bridge_to_portal_robot(world, reference):
    contract = world.contract(SINGLE)
    calls: list = []

    def echo(data):
        calls.append(data)
        return f'{data.caller_identity}|{data.payload}'

    def jammed(data):
        raise reference.lp.RpcError.Error(code=2101, message='gripper jammed', data=None)

    def setup(robot):
        robot.register_rpc_method('echo', echo)
        robot.register_rpc_method('jammed', jammed)

    reference.robot(contract, setup=setup)
    world.operator_bridge(contract)
    name = '/operator_bridge/call_rpc'
    routed = call(world.operator_side, CallRpc, name, CallRpc.Request(method='echo', payload='{"speed": 0.5}'))
    assert (routed.success, routed.error_code, routed.response) == (True, 0, 'operator|{"speed": 0.5}')
    direct = CallRpc.Request(method='echo', payload='ü' * 3, destination='robot', timeout_s=5.0)
    resp = call(world.operator_side, CallRpc, name, direct)
    assert (resp.success, resp.error_code, resp.response) == (True, 0, 'operator|üüü')
    assert [c.payload for c in calls] == ['{"speed": 0.5}', 'üüü']
    assert [c.caller_identity for c in calls] == ['operator', 'operator']
    fail = call(world.operator_side, CallRpc, name, CallRpc.Request(method='jammed'))
    assert (fail.success, fail.error_code, fail.response) == (False, 2101, 'gripper jammed')
    missing = call(world.operator_side, CallRpc, name, CallRpc.Request(method='nope'))
    assert (missing.success, missing.error_code) == (False, 1400), missing.response  # method not supported


def test_portal_operator_perform_rpc_calls_robot_bridge_trigger_services(world, reference):
    contract = world.contract(SINGLE)
    served: list = []
    node = world.robot_side.node('arm_services')

    def home(request, response):
        served.append('home')
        response.success, response.message = True, f'homed {len(served)}'
        return response

    def park(request, response):
        served.append('park')
        response.success, response.message = False, 'brakes engaged'
        return response

    node.create_service(Trigger, '/home', home)
    node.create_service(Trigger, '/arm/park', park)
    world.robot_bridge(contract, rpc_methods=['home', 'park'], rpc_services=['/home', '/arm/park'])
    pilot = reference.operator(contract, 'pilot')
    assert reference.run(pilot.perform_rpc('home', '{}')) == 'homed 1'
    assert reference.run(pilot.perform_rpc('home', destination='robot', response_timeout_ms=5000)) == 'homed 2'
    with pytest.raises(reference.lp.PortalError) as failed:
        reference.run(pilot.perform_rpc('park'))
    assert 'rpc error 1500: brakes engaged' in str(failed.value)
    assert served == ['home', 'home', 'park']


# ---------------------------------------------------------------------------------------------------
# 6. RTT
# ---------------------------------------------------------------------------------------------------
def test_rtt_between_portal_robot_and_operator_bridge(world, reference):
    contract = world.contract(SINGLE)
    robot = reference.robot(contract)
    op = world.operator_bridge(contract)

    def both_measured():
        theirs, ours = robot.metrics().rtt, op.operator.metrics().rtt
        return theirs.pongs_received >= 3 and ours.pongs_received >= 3

    wait_explained(both_measured, 10, 'pongs both ways', lambda: (robot.metrics().rtt, op.operator.metrics().rtt))
    theirs, ours = robot.metrics().rtt, op.operator.metrics().rtt
    # livekit-portal recorded our pongs (we answer its pings to it only) ...
    assert 0 < theirs.rtt_us_last < 1_000_000 and theirs.pongs_received <= theirs.pings_sent, theirs
    # ... and we recorded its pongs to our pings, and nothing else
    assert 0 < ours.rtt_us_last < 1_000_000 and ours.pongs_received <= ours.pings_sent, ours
    assert ours.pongs_ignored == 0, ours
    values = diagnostic(world.operator_side, 'operator_bridge: rtt', lambda v: int(v['pongs_received']) >= 3)
    assert 0 < int(values['rtt_us_last']) < 1_000_000 and values['pongs_ignored'] == '0', values

    # a third peer: livekit-portal broadcasts its pongs, so pongs answering the other operator's pings
    # reach us too; we ignore them instead of taking them for round trips of ours (K4)
    observer = reference.operator(contract, 'observer')
    wait_for_sync(lambda: op.operator.metrics().rtt.pongs_ignored >= 3, 10, what='foreign pongs ignored')
    ours = op.operator.metrics().rtt
    assert ours.pongs_received <= ours.pings_sent and 0 < ours.rtt_us_last < 1_000_000, ours
    assert observer.metrics().rtt.pongs_received >= 1


def test_rtt_between_portal_operator_and_robot_bridge(world, reference):
    contract = world.contract(SINGLE)
    robot = world.robot_bridge(contract)
    pilot = reference.operator(contract, 'pilot')

    def both_measured():
        return pilot.metrics().rtt.pongs_received >= 3 and robot.robot.metrics().rtt.pongs_received >= 3

    wait_explained(both_measured, 10, 'pongs both ways', lambda: (pilot.metrics().rtt, robot.robot.metrics().rtt))
    theirs, ours = pilot.metrics().rtt, robot.robot.metrics().rtt
    assert 0 < theirs.rtt_us_last < 1_000_000 and theirs.pongs_received <= theirs.pings_sent, theirs
    assert 0 < ours.rtt_us_last < 1_000_000 and ours.pongs_received <= ours.pings_sent, ours
    assert ours.pongs_ignored == 0, ours
    values = diagnostic(world.robot_side, 'robot_bridge: rtt', lambda v: int(v['pongs_received']) >= 3)
    assert 0 < int(values['rtt_us_last']) < 1_000_000 and values['pongs_ignored'] == '0', values
    assert int(values['pings_sent']) >= int(values['pongs_received'])
