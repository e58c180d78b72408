#!/usr/bin/env python3
"""Load a dataset written by portal_bridge with lerobot itself and compare it with what was written.

Not part of `make test`: lerobot pulls torch and CUDA wheels (about 5 GB). Run it in a venv of its
own after writing a dataset (the recorder, bag_to_lerobot, or --write below):

    python3.12 -m venv /tmp/lerobotenv && /tmp/lerobotenv/bin/pip install 'lerobot[dataset]==0.6.1'
    .venvs/jazzy-py312/bin/python scripts/check_lerobot_load.py --write /tmp/portal-ds
    /tmp/lerobotenv/bin/python scripts/check_lerobot_load.py /tmp/portal-ds

With a path it loads ``LeRobotDataset(repo_id, root=path)`` (video decoded by lerobot's backend),
then checks every frame against the parquet files and the videos decoded by PyAV: states,
actions, indices, task strings, the sender labels, and each camera frame within ``--tolerance``
(mean absolute difference, 0-255). Exit 0 when everything matches.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
import sys


def write_sample(root: Path) -> None:
    """Two episodes of camera-like frames, with a handoff and a candidate (portal_bridge venv)."""
    import numpy as np

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / 'portal_bridge'))
    from portal_bridge.dataset.schema import DatasetSchema
    from portal_bridge.dataset.writer import Frame, LeRobotWriter

    names = ('shoulder', 'elbow', 'gripper')
    schema = DatasetSchema(30, names, names, (('front', 96, 128), ('wrist', 48, 64)), ('shadow',), 'h264')
    writer = LeRobotWriter(root, schema)
    rng = np.random.default_rng(0)
    for e, task in enumerate(('pick the cube', 'place the cube')):
        episode = writer.start_episode(task)
        for i in range(45):
            y, x = np.mgrid[0:96, 0:128]
            front = np.stack([x * 2, y * 2, (x + y + 5 * i) % 256], -1) + rng.normal(0, 3, (96, 128, 3))
            front = np.clip(front, 0, 255).astype(np.uint8)
            wrist = np.full((48, 64, 3), (10 + 4 * i) % 256, np.uint8)
            state = [i * 0.01, -i * 0.02, e * 0.5]
            action = None if i == 0 else [s + 0.1 for s in state]
            sender = 'policy' if i < 20 else 'human'
            shadow = {'shadow': [s + 0.35 for s in state]} if i % 3 else {}
            ts = 1_000_000 * (e + 1) + i * 33_333
            frame = Frame(
                state,
                {'front': front, 'wrist': wrist},
                ts,
                action,
                ts + 5000,
                sender,
                shadow,
                {'front': ts, 'wrist': ts - 1000},
            )
            episode.add(frame)
        episode.save().result()
    writer.close()
    print(f'wrote {root}')


def check(root: Path, tolerance: float) -> int:
    from lerobot.datasets.lerobot_dataset import LeRobotDataset
    import numpy as np
    import pyarrow.parquet as pq

    ds = LeRobotDataset('portal_bridge/check', root=root)
    info = json.loads((root / 'meta/info.json').read_text())
    print(
        f'lerobot loaded {root}: {ds.num_episodes} episodes, {ds.num_frames} frames, fps {ds.fps}, '
        f'cameras {ds.meta.video_keys}'
    )
    rows = [r for p in sorted(root.glob('data/*/*.parquet')) for r in pq.read_table(p).to_pylist()]
    assert ds.num_frames == len(rows) == info['total_frames'], (ds.num_frames, len(rows))
    assert ds.num_episodes == info['total_episodes']
    import av

    decoded = {}
    for key in ds.meta.video_keys:
        for path in sorted((root / 'videos' / key).glob('*/*.mp4')):
            with av.open(str(path)) as c:
                decoded[(key, path)] = [f.to_ndarray(format='rgb24') for f in c.decode(video=0)]
    worst = 0.0
    for i, row in enumerate(rows):
        item = ds[i]
        for key in ('observation.state', 'action'):
            got, want = item[key].numpy(), np.asarray(row[key], dtype=np.float32)
            assert np.array_equal(np.isnan(got), np.isnan(want)) and np.allclose(
                got[~np.isnan(got)], want[~np.isnan(want)]
            ), (i, key)
        for key in ('frame_index', 'episode_index', 'index', 'task_index'):
            assert int(item[key]) == row[key], (i, key)
        assert item['action.sender'] == row['action.sender'], i
        assert item['task'] == ds.meta.tasks.iloc[row['task_index']].name
        ep = row['episode_index']
        for key in ds.meta.video_keys:
            path = root / info['video_path'].format(video_key=key, chunk_index=ep // 1000, file_index=ep % 1000)
            want = decoded[(key, path)][row['frame_index']]
            got = (item[key].numpy().transpose(1, 2, 0) * 255).round().astype(np.int16)
            worst = max(worst, float(np.abs(got - want.astype(np.int16)).mean()))
    print(
        f'every frame matches: states, actions, indices, tasks, senders; camera frames within {worst:.2f} '
        f'of the PyAV decode (tolerance {tolerance})'
    )
    return 0 if worst <= tolerance else 1


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('root', type=Path)
    parser.add_argument('--write', action='store_true', help='write a sample dataset at ROOT instead')
    parser.add_argument('--tolerance', type=float, default=1.0)
    args = parser.parse_args()
    if args.write:
        write_sample(args.root)
        return 0
    return check(args.root, args.tolerance)


if __name__ == '__main__':
    sys.exit(main())
