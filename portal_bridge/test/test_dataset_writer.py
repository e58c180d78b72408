"""The LeRobotDataset v3.0 writer, against a dataset lerobot itself wrote (../shared fixture copy).

The reference (test/fixtures/lerobot-v3.0-reference, written by lerobot 0.6.1) holds 2 episodes of
12 frames: frame i of episode e has state [i, -i, e] * 0.1, action [i + 1, -i - 1, e] * 0.1 and a
64x48 image whose first (5 i) mod 64 columns are 200. The same frames written here must give the
same info.json, parquet schemas (with their ``huggingface`` and ``pandas`` metadata), episode
columns and statistics, and read back exactly (parquet) and within the codec's loss (video).
"""

from __future__ import annotations

import json
from pathlib import Path
import signal
import subprocess
import sys

import numpy as np
import pytest

pa = pytest.importorskip('pyarrow', reason='datasets need pyarrow (requirements/*.txt)')
pytest.importorskip('av', reason='datasets need PyAV (requirements/*.txt)')
import pyarrow.parquet as pq  # noqa: E402

from portal_bridge.dataset import stats as dstats  # noqa: E402
from portal_bridge.dataset.schema import DatasetSchema, SchemaError  # noqa: E402
from portal_bridge.dataset.video import decode_frames  # noqa: E402
from portal_bridge.dataset.writer import Frame, LeRobotWriter  # noqa: E402

REFERENCE = Path(__file__).parent / 'fixtures' / 'lerobot-v3.0-reference'
NAMES = ('j_a', 'j_b', 'grip')


def reference_image(i: int) -> np.ndarray:
    img = np.zeros((48, 64, 3), np.uint8)
    img[:, : (5 * i) % 64] = 200
    return img


def reference_frame(e: int, i: int, sender: str = 'pilot') -> Frame:
    state = np.array([i, -i, e], np.float32) * np.float32(0.1)
    action = np.array([i + 1, -i - 1, e], np.float32) * np.float32(0.1)
    return Frame(state, {'front': reference_image(i)}, 1_000_000 + i, action, 2_000_000 + i, sender)


def schema(codec: str = 'h264-lossless', candidates: tuple[str, ...] = ()) -> DatasetSchema:
    return DatasetSchema(30, NAMES, NAMES, (('front', 48, 64),), candidates, codec)


def write_reference(root: Path, codec: str = 'h264-lossless') -> LeRobotWriter:
    writer = LeRobotWriter(root, schema(codec))
    for e in range(2):
        episode = writer.start_episode(f'task {e}')
        for i in range(12):
            episode.add(reference_frame(e, i))
        assert episode.save().result(timeout=60).frames == 12
    return writer


def read_json(path: Path) -> dict:
    return json.loads(path.read_text())


def test_info_json_matches_lerobot_and_adds_only_portal_features(tmp_path):
    write_reference(tmp_path / 'ds', 'av1').close()
    ours, ref = read_json(tmp_path / 'ds/meta/info.json'), read_json(REFERENCE / 'meta/info.json')
    assert set(ours) == set(ref)
    for key in (
        'codebase_version',
        'fps',
        'total_episodes',
        'total_frames',
        'total_tasks',
        'chunks_size',
        'data_path',
        'video_path',
        'splits',
        'robot_type',
    ):
        assert ours[key] == ref[key], key
    assert list(ours['features'])[:3] == list(ref['features'])[:3]
    assert list(ours['features'])[-5:] == list(ref['features'])[-5:]  # lerobot's defaults come last
    for key, ft in ref['features'].items():
        mine = ours['features'][key]
        assert (mine['dtype'], mine['shape'], mine['names']) == (ft['dtype'], ft['shape'], ft['names']), key
        for k in (
            'video.height',
            'video.width',
            'video.codec',
            'video.pix_fmt',
            'video.fps',
            'video.channels',
            'has_audio',
            'is_depth_map',
        ):
            if 'info' in ft:
                assert mine['info'][k] == ft['info'][k], k
    extra = set(ours['features']) - set(ref['features'])
    assert extra == {
        'observation.timestamp_us',
        'observation.frame_timestamps_us',
        'action.timestamp_us',
        'action.sender',
        'action.matched',
    }
    assert ours['features']['observation.frame_timestamps_us']['names'] == ['front']


def test_parquet_schemas_and_metadata_match_lerobot(tmp_path):
    write_reference(tmp_path / 'ds').close()
    ours = pq.read_table(tmp_path / 'ds/data/chunk-000/file-000.parquet')
    ref = pq.read_table(REFERENCE / 'data/chunk-000/file-000.parquet')
    for name in ref.schema.names:
        assert ours.schema.field(name).type == ref.schema.field(name).type, name
    hf_ours = json.loads(ours.schema.metadata[b'huggingface'])['info']['features']
    hf_ref = json.loads(ref.schema.metadata[b'huggingface'])['info']['features']
    assert {k: hf_ours[k] for k in hf_ref} == hf_ref
    assert hf_ours['action.sender'] == {'dtype': 'string', '_type': 'Value'}

    ep_ours = pq.read_table(tmp_path / 'ds/meta/episodes/chunk-000/file-000.parquet')
    ep_ref = pq.read_table(REFERENCE / 'meta/episodes/chunk-000/file-000.parquet')
    for name in ep_ref.schema.names:
        assert ep_ours.schema.field(name).type == ep_ref.schema.field(name).type, name
    tasks_ours, tasks_ref = (
        pq.read_table(tmp_path / 'ds/meta/tasks.parquet'),
        pq.read_table(REFERENCE / 'meta/tasks.parquet'),
    )
    assert tasks_ours.schema.remove_metadata() == tasks_ref.schema.remove_metadata()
    assert tasks_ours.to_pylist() == tasks_ref.to_pylist()
    assert json.loads(tasks_ours.schema.metadata[b'pandas'])['index_columns'] == ['task']


def test_episode_rows_and_stats_match_lerobot(tmp_path):
    write_reference(tmp_path / 'ds').close()
    ref_rows = pq.read_table(REFERENCE / 'meta/episodes/chunk-000/file-000.parquet').to_pylist()
    ours_rows = [
        pq.read_table(tmp_path / f'ds/meta/episodes/chunk-000/file-00{e}.parquet').to_pylist()[0] for e in range(2)
    ]
    for ref, ours in zip(ref_rows, ours_rows):
        for key in ('episode_index', 'tasks', 'length', 'dataset_from_index', 'dataset_to_index'):
            assert ours[key] == ref[key], key
        # lerobot appends episodes to one video file; here each episode has its own, from 0 s
        assert ours['videos/observation.images.front/from_timestamp'] == 0.0
        assert ours['videos/observation.images.front/to_timestamp'] == pytest.approx(12 / 30)
        assert ours['videos/observation.images.front/file_index'] == ours['data/file_index'] == ref['episode_index']
        for feature in ('observation.state', 'action', 'observation.images.front', 'timestamp', 'frame_index', 'index'):
            for stat in ('min', 'max', 'mean', 'std', 'count'):
                key = f'stats/{feature}/{stat}'
                np.testing.assert_allclose(ours[key], ref[key], rtol=1e-6, atol=1e-7, err_msg=key)
    ref_stats, our_stats = read_json(REFERENCE / 'meta/stats.json'), read_json(tmp_path / 'ds/meta/stats.json')
    for feature, st in ref_stats.items():
        for stat in ('min', 'max', 'mean', 'std', 'count'):
            np.testing.assert_allclose(
                our_stats[feature][stat], st[stat], rtol=1e-6, atol=1e-7, err_msg=f'{feature} {stat}'
            )
        for stat in st:
            assert np.shape(our_stats[feature][stat]) == np.shape(st[stat]), (feature, stat)


def test_frames_read_back_exactly_with_the_lossless_codec(tmp_path):
    write_reference(tmp_path / 'ds').close()
    table = pq.read_table(tmp_path / 'ds/data/chunk-000/file-001.parquet').to_pylist()
    assert [r['frame_index'] for r in table] == list(range(12))
    assert [r['index'] for r in table] == list(range(12, 24))
    assert {r['episode_index'] for r in table} == {1} and {r['task_index'] for r in table} == {1}
    for i, row in enumerate(table):
        want = reference_frame(1, i)
        assert row['observation.state'] == list(np.asarray(want.state, np.float32).astype(float))
        assert row['action'] == list(np.asarray(want.action, np.float32).astype(float))
        assert (row['observation.timestamp_us'], row['action.timestamp_us']) == (
            want.observation_ts_us,
            want.action_ts_us,
        )
        assert (row['action.sender'], row['action.matched']) == ('pilot', True)
        assert row['timestamp'] == pytest.approx(i / 30)
    frames = decode_frames(tmp_path / 'ds/videos/observation.images.front/chunk-000/file-001.mp4')
    assert [round(t * 30) for t, _ in frames] == list(range(12))
    for i, (t, img) in enumerate(frames):
        assert abs(t - i / 30) < 1e-4  # lerobot's lookup tolerance
        np.testing.assert_array_equal(img, reference_image(i))


def test_h264_frames_are_close(tmp_path):
    """Camera-like frames (gradients, a moving block, sensor noise) survive crf 20 yuv420p closely."""
    rng = np.random.default_rng(1)
    writer = LeRobotWriter(tmp_path / 'ds', DatasetSchema(30, NAMES, NAMES, (('cam', 120, 160),)))
    episode = writer.start_episode('camera')
    y, x = np.mgrid[0:120, 0:160]
    sent = []
    for i in range(20):
        img = np.stack([x * 1.5, y * 2.0, (x + y + 4 * i) % 256], axis=-1) + rng.normal(0, 4, (120, 160, 3))
        img[30:60, 8 * i % 130 : 8 * i % 130 + 30] = (250, 40, 40)
        img = np.clip(img, 0, 255).astype(np.uint8)
        sent.append(img)
        episode.add(Frame([0, 0, 0], {'cam': img}, i, [0, 0, 0], i, 'x'))
    episode.save().result(timeout=60)
    writer.close()
    frames = decode_frames(tmp_path / 'ds/videos/observation.images.cam/chunk-000/file-000.mp4')
    assert len(frames) == 20
    errors = [np.abs(img.astype(int) - want.astype(int)).mean() for (_, img), want in zip(frames, sent)]
    assert max(errors) < 6, errors  # lossy (the noise is mostly gone) but the same picture
    assert min(errors) > 0  # and it is lossy: this is not the lossless codec


def test_unmatched_frames_and_candidates_are_nan(tmp_path):
    writer = LeRobotWriter(tmp_path / 'ds', DatasetSchema(30, NAMES, NAMES, (), ('shadow',)))
    episode = writer.start_episode('t')
    episode.add(Frame([1, 2, 3], {}, 10))
    episode.add(Frame([1, 2, 3], {}, 20, [4, 5, 6], 21, 'human', {'shadow': [4.5, 5, 6]}))
    episode.save().result(timeout=30)
    writer.close()
    rows = pq.read_table(tmp_path / 'ds/data/chunk-000/file-000.parquet').to_pylist()
    assert all(np.isnan(rows[0]['action'])) and rows[0]['action.matched'] is False and rows[0]['action.sender'] == ''
    assert all(np.isnan(rows[0]['action.candidate.shadow']))
    assert rows[1]['action.candidate.shadow'] == [4.5, 5.0, 6.0] and rows[1]['action.sender'] == 'human'
    st = read_json(tmp_path / 'ds/meta/stats.json')
    assert st['action']['mean'] == [4.0, 5.0, 6.0]  # NaNs ignored, not propagated
    assert st['action.candidate.shadow']['max'] == [4.5, 5.0, 6.0]


def test_resuming_appends_episodes_and_keeps_tasks(tmp_path):
    write_reference(tmp_path / 'ds').close()
    writer = LeRobotWriter(tmp_path / 'ds', schema())
    episode = writer.start_episode('task 0')
    for i in range(5):
        episode.add(reference_frame(2, i))
    assert episode.save().result(timeout=60).episode_index == 2
    writer.close()
    info = read_json(tmp_path / 'ds/meta/info.json')
    assert (info['total_episodes'], info['total_frames'], info['total_tasks']) == (3, 29, 2)
    rows = pq.read_table(tmp_path / 'ds/data/chunk-000/file-002.parquet').to_pylist()
    assert [r['index'] for r in rows] == list(range(24, 29)) and {r['task_index'] for r in rows} == {0}
    st = read_json(tmp_path / 'ds/meta/stats.json')
    assert st['frame_index']['count'] == [29]


def test_another_schema_is_refused_and_nothing_is_written(tmp_path):
    write_reference(tmp_path / 'ds').close()
    before = sorted(p.relative_to(tmp_path) for p in (tmp_path / 'ds').rglob('*'))
    with pytest.raises(SchemaError, match='another schema.*action_names'):
        LeRobotWriter(tmp_path / 'ds', DatasetSchema(30, NAMES, ('x', 'y'), (('front', 48, 64),), (), 'h264-lossless'))
    with pytest.raises(SchemaError, match='cameras'):
        LeRobotWriter(tmp_path / 'ds', DatasetSchema(30, NAMES, NAMES, (('front', 96, 128),), (), 'h264-lossless'))
    assert sorted(p.relative_to(tmp_path) for p in (tmp_path / 'ds').rglob('*')) == before
    (tmp_path / 'other/meta').mkdir(parents=True)
    (tmp_path / 'other/meta/info.json').write_text('{"codebase_version": "v2.1"}')
    with pytest.raises(SchemaError, match='v2.1'):
        LeRobotWriter(tmp_path / 'other', schema())


@pytest.mark.parametrize(
    'frame, message',
    [
        (Frame([1, 2], {'front': reference_image(0)}, 0), 'state has 2 values'),
        (Frame([1, 2, 3], {}, 0), 'no frame of camera front'),
        (Frame([1, 2, 3], {'front': np.zeros((24, 32, 3), np.uint8)}, 0), "camera 'front' frame is"),
        (Frame([1, 2, 3], {'front': reference_image(0)}, 0, [1.0]), 'action has 1 values'),
    ],
)
def test_a_frame_that_does_not_fit_is_refused_and_not_appended(tmp_path, frame, message):
    writer = LeRobotWriter(tmp_path / 'ds', schema())
    episode = writer.start_episode('t')
    episode.add(reference_frame(0, 0))
    with pytest.raises(SchemaError, match=message):
        episode.add(frame)
    assert episode.frames == 1 and episode.encoders['front'].frames == 1
    episode.save().result(timeout=30)
    writer.close()
    assert read_json(tmp_path / 'ds/meta/info.json')['total_frames'] == 1


def test_odd_sizes_need_the_lossless_codec():
    with pytest.raises(SchemaError, match='even sizes'):
        DatasetSchema(30, NAMES, NAMES, (('front', 47, 64),))
    DatasetSchema(30, NAMES, NAMES, (('front', 47, 63),), (), 'h264-lossless')


_KILLED_MID_EPISODE = r"""
import os, signal, sys
sys.path.insert(0, {test_dir!r})
from test_dataset_writer import reference_frame, schema, write_reference
from portal_bridge.dataset.writer import LeRobotWriter
write_reference(__import__('pathlib').Path({root!r})).close()
writer = LeRobotWriter({root!r}, schema())
episode = writer.start_episode('interrupted')
for i in range(10):
    episode.add(reference_frame(7, i))
os.kill(os.getpid(), signal.SIGKILL)
"""


def test_kill_9_during_an_episode_leaves_the_saved_episodes_loadable(tmp_path):
    root = tmp_path / 'ds'
    code = _KILLED_MID_EPISODE.format(test_dir=str(Path(__file__).parent), root=str(root))
    proc = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    assert (root / '.staging').exists()  # the episode was being recorded when it died
    info = read_json(root / 'meta/info.json')
    assert (info['total_episodes'], info['total_frames']) == (2, 24)
    writer = LeRobotWriter(root, schema())  # reopening clears the staging area
    writer.close()
    assert not (root / '.staging').exists()
    rows = [r for p in sorted(root.glob('data/*/*.parquet')) for r in pq.read_table(p).to_pylist()]
    assert [r['index'] for r in rows] == list(range(24))


def test_a_crash_mid_save_is_rolled_back_when_reopened(tmp_path):
    root = tmp_path / 'ds'
    write_reference(root).close()
    # What a crash between moving an episode's files and its commit leaves: files of episode 2
    # without its meta/episodes record, and summaries that do not count it.
    for rel in ('data/chunk-000/file-00{}.parquet', 'videos/observation.images.front/chunk-000/file-00{}.mp4'):
        (root / rel.format(2)).write_bytes((root / rel.format(1)).read_bytes())
    (root / 'meta/info.json.tmp').write_text('{')
    writer = LeRobotWriter(root, schema())
    writer.close()
    assert not (root / 'data/chunk-000/file-002.parquet').exists()
    assert not (root / 'videos/observation.images.front/chunk-000/file-002.mp4').exists()
    assert not (root / 'meta/info.json.tmp').exists()
    assert read_json(root / 'meta/info.json')['total_episodes'] == 2


def test_discarded_and_empty_episodes_leave_nothing(tmp_path):
    writer = LeRobotWriter(tmp_path / 'ds', schema())
    episode = writer.start_episode('t')
    episode.add(reference_frame(0, 0))
    episode.discard()
    with pytest.raises(SchemaError, match='no frames'):
        writer.start_episode('t').save().result(timeout=30)
    writer.close()
    assert read_json(tmp_path / 'ds/meta/info.json')['total_episodes'] == 0
    assert not list((tmp_path / 'ds').glob('data/*/*')) and not list((tmp_path / 'ds').glob('videos/*/*/*'))


def test_image_stats_are_exact_per_channel():
    rng = np.random.default_rng(3)
    frames = [rng.integers(0, 256, (40, 50, 3)).astype(np.uint8) for _ in range(4)]
    st = dstats.ImageStats()
    for f in frames:
        st.add(f)
    got = st.stats()
    allpix = np.stack(frames).reshape(-1, 3).astype(np.float64) / 255
    np.testing.assert_allclose(got['mean'].ravel(), allpix.mean(axis=0))
    np.testing.assert_allclose(got['std'].ravel(), allpix.std(axis=0))
    np.testing.assert_allclose(got['min'].ravel(), allpix.min(axis=0))
    np.testing.assert_allclose(got['max'].ravel(), allpix.max(axis=0))
    assert got['count'].tolist() == [4] and got['q50'].shape == (3, 1, 1)


def test_aggregated_stats_equal_the_stats_of_all_frames():
    rng = np.random.default_rng(4)
    parts = [rng.normal(i, 1 + i, (n, 3)) for i, n in enumerate((5, 17, 40))]
    agg = dstats.aggregate({'x': dstats.vector_stats(p)} for p in parts)['x']
    whole = dstats.vector_stats(np.concatenate(parts))
    for stat in ('min', 'max', 'mean', 'std', 'count'):
        np.testing.assert_allclose(agg[stat], whole[stat], err_msg=stat)
