"""bag_to_lerobot on bags written here: episodes, handoff splits, both storage formats, bad bags."""

from __future__ import annotations

import json
import os

from ament_index_python.packages import get_package_share_directory
import numpy as np
import pytest

pytest.importorskip('pyarrow', reason='datasets need pyarrow (requirements/*.txt)')
pytest.importorskip('av', reason='datasets need PyAV (requirements/*.txt)')
pytest.importorskip('rosbags', reason='bag conversion reads bags with rosbags')
import pyarrow.parquet as pq  # noqa: E402
from rosbags.rosbag2 import StoragePlugin, Writer  # noqa: E402
from rosbags.typesys import Stores, get_types_from_msg, get_typestore  # noqa: E402

from portal_bridge.cli import bag_to_lerobot  # noqa: E402
from portal_bridge.dataset.bag_convert import BagError, convert_bag  # noqa: E402

pytestmark = pytest.mark.ros  # the message definitions come from the built portal_bridge_msgs

T0 = 1_800_000_000_000_000
TICK = 33_333


def typestore():
    store = get_typestore(Stores.ROS2_JAZZY)
    share = get_package_share_directory('portal_bridge_msgs')
    for name in ('Observation', 'ExecutedAction', 'EpisodeEvent'):
        with open(os.path.join(share, 'msg', f'{name}.msg')) as f:
            store.register(get_types_from_msg(f.read(), f'portal_bridge_msgs/msg/{name}'))
    return store


STORE = typestore()
T = STORE.types


def header(ts: int, frame_id: str = ''):
    return T['std_msgs/msg/Header'](
        stamp=T['builtin_interfaces/msg/Time'](sec=ts // 1_000_000, nanosec=ts % 1_000_000 * 1000), frame_id=frame_id
    )


def observation(i: int, encoding: str = 'rgb8'):
    """An Observation as the recorder publishes it (serialized with rosbags: exact CDR, as a bag holds it)."""
    ts = T0 + i * TICK
    px = np.full((6, 8, 3), (i * 7) % 256, np.uint8)
    f64 = np.array([i * 0.1, -i * 0.1])
    state = T['sensor_msgs/msg/JointState'](
        header=header(ts), name=['j1', 'j2'], position=f64, velocity=np.array([]), effort=np.array([])
    )
    img = T['sensor_msgs/msg/Image'](
        header=header(ts, 'cam'), height=6, width=8, encoding=encoding, is_bigendian=0, step=24, data=px.reshape(-1)
    )
    return T['portal_bridge_msgs/msg/Observation'](
        header=header(ts, 'robot'),
        timestamp_us=ts,
        state=state,
        camera_names=['cam'],
        images=[img],
        frame_timestamps_us=np.array([ts], np.uint64),
        stale=np.array([False]),
        omitted_cameras=[],
        match_delta_us=0,
    )


def executed(i: int, sender: str):
    ts = T0 + i * TICK + 5000
    return T['portal_bridge_msgs/msg/ExecutedAction'](
        header=header(ts, 'robot'),
        sender=sender,
        timestamp_us=ts,
        in_reply_to_ts_us=T0 + i * TICK,
        chunk='',
        rows=1,
        names=['j1', 'j2'],
        values=np.array([i * 0.1 + 1, 0.5]),
    )


def write_bag(path, messages, storage=StoragePlugin.MCAP):
    with Writer(path, version=9, storage_plugin=storage) as writer:
        conns = {}
        for t, topic, msg in messages:
            if topic not in conns:
                conns[topic] = writer.add_connection(topic, msg.__msgtype__, typestore=STORE)
            writer.write(conns[topic], t, STORE.serialize_cdr(msg, msg.__msgtype__))
    return path


def session(n: int = 20, handoff_at: int = 10, bad: int = -1):
    out = []
    for i in range(n):
        t = (T0 + i * TICK) * 1000 + 2_000_000  # received 2 ms after the state
        out.append((t, '/recorder/observation', observation(i, 'bgr8' if i == bad else 'rgb8')))
        out.append((t + 10_000_000, '/recorder/executed_actions', executed(i, 'policy' if i < handoff_at else 'human')))
    return out


@pytest.mark.parametrize('storage', [StoragePlugin.MCAP, StoragePlugin.SQLITE3])
def test_a_bag_without_events_is_one_episode(tmp_path, storage):
    bag = write_bag(tmp_path / 'bag', session(), storage)
    report = convert_bag(bag, tmp_path / 'ds', task='wipe the table', video_codec='h264-lossless')
    assert report.episodes == [(0, 20, 'wipe the table')]
    assert (report.observations, report.executed_actions, report.unmatched_actions) == (20, 20, 0)
    rows = pq.read_table(tmp_path / 'ds/data/chunk-000/file-000.parquet').to_pylist()
    assert [r['observation.timestamp_us'] for r in rows] == [T0 + i * TICK for i in range(20)]
    for i, r in enumerate(rows):
        assert r['action'] == pytest.approx([i * 0.1 + 1, 0.5])
        assert r['action.sender'] == ('policy' if i < 10 else 'human')
    info = json.loads((tmp_path / 'ds/meta/info.json').read_text())
    assert info['features']['action']['names'] == ['j1', 'j2'] and info['total_frames'] == 20


def test_split_on_handoff_gives_one_episode_per_driver(tmp_path):
    bag = write_bag(tmp_path / 'bag', session())
    report = convert_bag(bag, tmp_path / 'ds', split_on_handoff=True)
    assert [(i, n) for i, n, _ in report.episodes] == [(0, 10), (1, 10)]
    second = pq.read_table(tmp_path / 'ds/data/chunk-000/file-001.parquet').to_pylist()
    assert {r['action.sender'] for r in second} == {'human'} and second[0]['frame_index'] == 0


def test_a_bad_frame_is_refused_and_counted_the_rest_written(tmp_path):
    bag = write_bag(tmp_path / 'bag', session(bad=3))
    report = convert_bag(bag, tmp_path / 'ds')
    assert report.frames_refused == 1 and 'bgr8' in next(iter(report.refused))
    assert report.episodes[0][1] == 19


def test_a_lying_cdr_buffer_is_skipped_and_counted(tmp_path):
    messages = session()
    bag = tmp_path / 'bag'
    with Writer(bag, version=9, storage_plugin=StoragePlugin.MCAP) as writer:
        conns = {}
        for n, (t, topic, msg) in enumerate(messages):
            if topic not in conns:
                conns[topic] = writer.add_connection(topic, msg.__msgtype__, typestore=STORE)
            raw = bytes(STORE.serialize_cdr(msg, msg.__msgtype__))
            writer.write(conns[topic], t, raw[: len(raw) // 2] if n == 6 else raw)  # observation 3, cut short
    report = convert_bag(bag, tmp_path / 'ds')
    assert report.undecodable == {'/recorder/observation': 1}
    assert report.episodes[0][1] == 19 and report.unmatched_actions == 1  # its action answered nothing


def test_bags_that_cannot_give_a_dataset_say_why_and_write_nothing(tmp_path, capsys):
    only_actions = write_bag(tmp_path / 'a', [(1, '/recorder/executed_actions', executed(0, 'policy'))])
    with pytest.raises(BagError, match='no portal_bridge_msgs/msg/Observation'):
        convert_bag(only_actions, tmp_path / 'ds')
    only_obs = write_bag(tmp_path / 'b', [(1, '/recorder/observation', observation(0))])
    assert bag_to_lerobot.main([str(only_obs), str(tmp_path / 'ds')]) == 1
    assert 'no executed actions' in capsys.readouterr().err
    assert not (tmp_path / 'ds').exists()
