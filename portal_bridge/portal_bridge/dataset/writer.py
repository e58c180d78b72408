"""Writing LeRobotDataset v3.0: episodes staged while recorded, committed whole, resumable.

Layout (``codebase_version`` v3.0, as lerobot 0.6 reads it)::

    meta/info.json                                 features, fps, totals, path templates
    meta/stats.json                                statistics of the whole dataset
    meta/tasks.parquet                             task_index and task (the pandas index)
    meta/episodes/chunk-CCC/file-FFF.parquet       one row per episode: length, indices, stats
    data/chunk-CCC/file-FFF.parquet                one row per frame
    videos/<observation.images.cam>/chunk-CCC/file-FFF.mp4

This writer keeps one data, episode and video file per episode (file ``FFF`` of chunk ``CCC``
holds episode ``CCC * 1000 + FFF``), which the format allows and which makes appending safe: an
episode never rewrites a file an earlier episode wrote. While recorded, an episode lives in
``.staging/``; saving encodes its videos, writes its parquet files there, then moves them into
place with the episode's ``meta/episodes`` file last. That file is the commit: when a dataset is
opened, anything beyond the last committed episode (a crash mid-save) is removed and the
summaries (``info.json``, ``stats.json``, ``tasks.parquet``) are rebuilt from the committed
episodes, each written to a temporary file and renamed. A kill during an episode therefore loses
that episode only.
"""

from __future__ import annotations

from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
import json
import logging
import os
from pathlib import Path
import shutil
import threading
from typing import Any, Mapping, Optional, Sequence

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from . import stats as dstats
from .files import arrow_type, hf_feature, tasks_of, tasks_table, write_json, write_parquet
from .schema import (
    ACTION,
    ACTION_MATCHED,
    ACTION_SENDER,
    ACTION_TS,
    CODEBASE_VERSION,
    FRAME_TS,
    OBSERVATION_TS,
    STATE,
    DatasetSchema,
    SchemaError,
    camera_key,
    candidate_key,
)
from .video import VideoEncoder

__all__ = ['CHUNKS_SIZE', 'EpisodeResult', 'Frame', 'LeRobotWriter', 'episode_file']

CHUNKS_SIZE = 1000
DATA_PATH = 'data/chunk-{chunk_index:03d}/file-{file_index:03d}.parquet'
VIDEO_PATH = 'videos/{video_key}/chunk-{chunk_index:03d}/file-{file_index:03d}.mp4'
EPISODES_PATH = 'meta/episodes/chunk-{chunk_index:03d}/file-{file_index:03d}.parquet'
STAGING = '.staging'

log = logging.getLogger(__name__)


def episode_file(episode_index: int) -> dict[str, int]:
    """Chunk and file index of an episode's files in this writer's layout."""
    return {'chunk_index': episode_index // CHUNKS_SIZE, 'file_index': episode_index % CHUNKS_SIZE}


@dataclass
class Frame:
    """One dataset frame: an observation and what the robot executed in answer to it.

    ``action`` is None when no executed action matched the observation: the frame is kept (its
    observation happened) with NaN actions and ``action.matched`` false. ``candidates`` maps a
    candidate identity to the action it proposed for this observation (missing: NaN).
    """

    state: Sequence[float]
    images: Mapping[str, np.ndarray]
    observation_ts_us: int
    action: Optional[Sequence[float]] = None
    action_ts_us: int = 0
    action_sender: str = ''
    candidates: Mapping[str, Sequence[float]] = field(default_factory=dict)
    frame_timestamps_us: Mapping[str, int] = field(default_factory=dict)  # per camera; missing: 0


@dataclass(frozen=True)
class EpisodeResult:
    episode_index: int
    frames: int
    task: str
    path: Path


class Episode:
    """An episode being recorded: frames are checked and buffered, images go to the encoders."""

    def __init__(self, writer: LeRobotWriter, serial: int, task: str) -> None:
        self.writer, self.task, self.serial = writer, task, serial
        schema = writer.schema
        self.dir = writer.root / STAGING / f'episode-{serial}'
        self.dir.mkdir(parents=True, exist_ok=True)
        self._states: list[np.ndarray] = []
        self._actions: list[np.ndarray] = []
        self._obs_ts: list[int] = []
        self._frame_ts: list[list[int]] = []
        self._action_ts: list[int] = []
        self._senders: list[str] = []
        self._candidates: dict[str, list[np.ndarray]] = {c: [] for c in schema.candidates}
        self._nan_action = np.full(len(schema.action_names), np.nan, dtype=np.float32)
        self.encoders = {
            cam: VideoEncoder(self.dir / f'{cam}.mp4', schema.codec, schema.fps, h, w, cam)
            for cam, h, w in schema.cameras
        }
        self.closed = False

    @property
    def frames(self) -> int:
        return len(self._states)

    @property
    def first_observation_ts_us(self) -> int:
        return self._obs_ts[0] if self._obs_ts else 0

    @property
    def last_observation_ts_us(self) -> int:
        return self._obs_ts[-1] if self._obs_ts else 0

    @property
    def duration_s(self) -> float:
        return self.frames / self.writer.schema.fps

    def add(self, frame: Frame) -> None:
        """Append one frame; SchemaError (nothing appended) when it does not fit the dataset."""
        if self.closed:
            raise SchemaError('episode is closed')
        schema = self.writer.schema
        state = np.asarray(frame.state, dtype=np.float32)
        if state.shape != (len(schema.state_names),):
            raise SchemaError(f'state has {state.size} values, the dataset records {len(schema.state_names)}')
        action = self._vector(frame.action, 'action')
        cands = {c: self._vector(frame.candidates.get(c), f'candidate {c!r}') for c in schema.candidates}
        missing = [c for c in schema.camera_names if c not in frame.images]
        if missing:
            raise SchemaError(f'observation has no frame of camera {", ".join(missing)}')
        for cam, (h, w) in ((c, schema.camera_shape(c)) for c in schema.camera_names):
            img = frame.images[cam]
            if img.shape != (h, w, 3) or img.dtype != np.uint8:
                raise SchemaError(f"camera '{cam}' frame is {img.shape[1::-1]}, the dataset records {w}x{h}")
        for cam, encoder in self.encoders.items():
            encoder.put(frame.images[cam])
        self._states.append(state)
        self._actions.append(action)
        self._obs_ts.append(int(frame.observation_ts_us))
        self._frame_ts.append([int(frame.frame_timestamps_us.get(c, 0)) for c in schema.camera_names])
        self._action_ts.append(int(frame.action_ts_us) if frame.action is not None else 0)
        self._senders.append(frame.action_sender if frame.action is not None else '')
        for c, v in cands.items():
            self._candidates[c].append(v)

    def _vector(self, values: Optional[Sequence[float]], what: str) -> np.ndarray:
        if values is None:
            return self._nan_action
        arr = np.asarray(values, dtype=np.float32)
        if arr.shape != self._nan_action.shape:
            raise SchemaError(f'{what} has {arr.size} values, the dataset records {self._nan_action.size}')
        return arr

    @property
    def encoder_backlog(self) -> int:
        return max((e.backlog for e in self.encoders.values()), default=0)

    def save(self) -> Future[EpisodeResult]:
        """Close the episode and commit it in the background (episodes commit in start order)."""
        self._close()
        return self.writer._submit(self)

    def discard(self) -> None:
        """Drop the episode and its staged files."""
        self._close()
        for encoder in self.encoders.values():
            encoder.abort()
        shutil.rmtree(self.dir, ignore_errors=True)
        self.writer._release(self)

    def _close(self) -> None:
        if self.closed:
            raise SchemaError('episode already saved or discarded')
        self.closed = True

    # -- commit (writer's thread) -----------------------------------------------------------------
    def _columns(self, episode_index: int, from_index: int, task_index: int) -> dict[str, np.ndarray]:
        n, fps = self.frames, self.writer.schema.fps
        frame_index = np.arange(n, dtype=np.int64)
        cols: dict[str, Any] = {
            STATE: np.stack(self._states) if n else np.zeros((0, len(self._nan_action))),
            ACTION: np.stack(self._actions) if n else np.zeros((0, len(self._nan_action))),
            OBSERVATION_TS: np.asarray(self._obs_ts, dtype=np.int64),
            ACTION_TS: np.asarray(self._action_ts, dtype=np.int64),
            ACTION_SENDER: list(self._senders),
            ACTION_MATCHED: np.asarray([s != '' for s in self._senders]),
        }
        if self.writer.schema.cameras:
            cols[FRAME_TS] = np.asarray(self._frame_ts, dtype=np.int64).reshape(n, -1)
        for c, rows in self._candidates.items():
            cols[candidate_key(c)] = np.stack(rows) if n else np.zeros((0, len(self._nan_action)))
        cols['timestamp'] = (frame_index / fps).astype(np.float32)
        cols['frame_index'] = frame_index
        cols['episode_index'] = np.full(n, episode_index, dtype=np.int64)
        cols['index'] = frame_index + from_index
        cols['task_index'] = np.full(n, task_index, dtype=np.int64)
        return cols


class LeRobotWriter:
    """A LeRobotDataset v3.0 under ``root``: created with ``schema``, or resumed if it exists."""

    def __init__(self, root: Path | str, schema: DatasetSchema) -> None:
        self.root = Path(root)
        self.schema = schema
        self._lock = threading.Lock()
        self._episodes: list[dict[str, Any]] = []  # committed episode rows, in order
        self._pending: list[Episode] = []
        self._serial = 0
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix='dataset-save')
        info_path = self.root / 'meta' / 'info.json'
        if info_path.exists():
            try:
                on_disk = DatasetSchema.from_info(json.loads(info_path.read_text()))
            except (ValueError, KeyError, TypeError) as exc:
                raise SchemaError(f'{info_path}: not a dataset this recorder can append to: {exc}') from None
            diff = on_disk.mismatch(schema)
            if diff:
                raise SchemaError(f'{self.root} holds another schema: {"; ".join(diff)}')
            self._recover()
        else:
            self.root.mkdir(parents=True, exist_ok=True)
            self._write_summaries([])
        shutil.rmtree(self.root / STAGING, ignore_errors=True)

    # -- state ------------------------------------------------------------------------------------
    @property
    def total_episodes(self) -> int:
        return len(self._episodes)

    @property
    def total_frames(self) -> int:
        return sum(int(e['length']) for e in self._episodes)

    @property
    def tasks(self) -> list[str]:
        return tasks_of(self._episodes)

    def start_episode(self, task: str) -> Episode:
        if not task:
            raise SchemaError('an episode needs a task (the instruction a policy is trained on)')
        with self._lock:
            self._serial += 1
            episode = Episode(self, self._serial, task)
            self._pending.append(episode)
        return episode

    def close(self, timeout: Optional[float] = None) -> None:
        """Wait for episodes being saved; episodes still recording are discarded."""
        for episode in list(self._pending):
            if not episode.closed:
                episode.discard()
        self._executor.shutdown(wait=True)

    # -- committing ---------------------------------------------------------------------------------
    def _release(self, episode: Episode) -> None:
        with self._lock:
            if episode in self._pending:
                self._pending.remove(episode)

    def _submit(self, episode: Episode) -> Future[EpisodeResult]:
        return self._executor.submit(self._commit, episode)

    def _commit(self, episode: Episode) -> EpisodeResult:
        try:
            return self._commit_files(episode)
        finally:
            shutil.rmtree(episode.dir, ignore_errors=True)
            self._release(episode)

    def _commit_files(self, episode: Episode) -> EpisodeResult:
        schema = self.schema
        for encoder in episode.encoders.values():
            encoder.finish()
        if episode.frames == 0:
            raise SchemaError('episode has no frames: nothing saved')
        index = self.total_episodes
        tasks = self.tasks
        task_index = tasks.index(episode.task) if episode.task in tasks else len(tasks)
        from_index = self.total_frames
        cols = episode._columns(index, from_index, task_index)
        feats = schema.features()
        ep_stats: dict[str, dstats.Stats] = {}
        for key, values in cols.items():
            if feats[key]['dtype'] != 'string':
                ep_stats[key] = dstats.vector_stats(np.asarray(values, dtype=np.float64))
        for cam, encoder in episode.encoders.items():
            ep_stats[camera_key(cam)] = encoder.stats.stats()

        data_feats = {k: v for k, v in feats.items() if v['dtype'] != 'video'}
        arrays = []
        for key, ft in data_feats.items():
            values = cols[key]
            typ = arrow_type(ft)
            if isinstance(typ, pa.FixedSizeListType):
                dtype = np.int64 if typ.value_type == pa.int64() else np.float32
                flat = pa.array(np.asarray(values, dtype=dtype).reshape(-1), type=typ.value_type)
                arrays.append(pa.FixedSizeListArray.from_arrays(flat, typ.list_size))
            else:  # a shape-[1] feature is a scalar column (one camera's frame stamps too)
                if isinstance(values, np.ndarray) and values.ndim > 1:
                    values = values.reshape(-1)
                arrays.append(pa.array(values, type=typ))
        hf = {'info': {'features': {k: hf_feature(v) for k, v in data_feats.items()}}}
        table = pa.Table.from_arrays(arrays, names=list(data_feats)).replace_schema_metadata(
            {'huggingface': json.dumps(hf)}
        )
        where = episode_file(index)
        row: dict[str, Any] = {
            'episode_index': index,
            'tasks': [episode.task],
            'length': episode.frames,
            'data/chunk_index': where['chunk_index'],
            'data/file_index': where['file_index'],
            'dataset_from_index': from_index,
            'dataset_to_index': from_index + episode.frames,
        }
        for key in schema.video_keys():
            row[f'videos/{key}/chunk_index'] = where['chunk_index']
            row[f'videos/{key}/file_index'] = where['file_index']
            row[f'videos/{key}/from_timestamp'] = 0.0
            row[f'videos/{key}/to_timestamp'] = episode.frames / schema.fps
        for key, st in ep_stats.items():
            for name, value in st.items():
                row[f'stats/{key}/{name}'] = np.asarray(value).tolist()
        row['meta/episodes/chunk_index'] = where['chunk_index']
        row['meta/episodes/file_index'] = where['file_index']

        # Stage everything, then move into place; the episode's meta file is the commit.
        staged_data = episode.dir / 'data.parquet'
        staged_meta = episode.dir / 'episode.parquet'
        pq.write_table(table, staged_data)
        pq.write_table(pa.Table.from_pylist([row]), staged_meta)
        for cam in schema.camera_names:
            target = self.root / VIDEO_PATH.format(video_key=camera_key(cam), **where)
            target.parent.mkdir(parents=True, exist_ok=True)
            os.replace(episode.dir / f'{cam}.mp4', target)
        target = self.root / DATA_PATH.format(**where)
        target.parent.mkdir(parents=True, exist_ok=True)
        os.replace(staged_data, target)
        target = self.root / EPISODES_PATH.format(**where)
        target.parent.mkdir(parents=True, exist_ok=True)
        os.replace(staged_meta, target)
        episodes = [*self._episodes, row]
        self._write_summaries(episodes)
        with self._lock:  # counted once its summaries are on disk too
            self._episodes = episodes
        log.info('episode %d saved: %d frames, task %r', index, episode.frames, episode.task)
        return EpisodeResult(index, episode.frames, episode.task, self.root)

    # -- summaries and recovery ---------------------------------------------------------------------
    def _episode_stats(self, row: Mapping[str, Any]) -> dict[str, dstats.Stats]:
        out: dict[str, dstats.Stats] = {}
        for col, value in row.items():
            if col.startswith('stats/'):
                key, name = col[len('stats/') :].rsplit('/', 1)
                out.setdefault(key, {})[name] = np.asarray(value)
        return out

    def _write_summaries(self, episodes: list[dict[str, Any]]) -> None:
        (self.root / 'meta').mkdir(parents=True, exist_ok=True)
        tasks = tasks_of(episodes)
        write_parquet(tasks_table(tasks), self.root / 'meta' / 'tasks.parquet')
        agg = dstats.aggregate(self._episode_stats(e) for e in episodes)
        write_json(self.root / 'meta' / 'stats.json', dstats.to_json(agg))
        n = len(episodes)
        info = {
            'codebase_version': CODEBASE_VERSION,
            'robot_type': self.schema.robot_type,
            'total_episodes': n,
            'total_frames': sum(int(e['length']) for e in episodes),
            'total_tasks': len(tasks),
            'chunks_size': CHUNKS_SIZE,
            'data_files_size_in_mb': 100,
            'video_files_size_in_mb': 200,
            'fps': self.schema.fps,
            'splits': {'train': f'0:{n}'},
            'data_path': DATA_PATH,
            'video_path': VIDEO_PATH if self.schema.cameras else None,
            'features': self.schema.features(),
        }
        write_json(self.root / 'meta' / 'info.json', info)

    def _recover(self) -> None:
        """Load the committed episodes; remove what a crash left beyond them; rebuild summaries."""
        rows: dict[int, dict[str, Any]] = {}
        for path in sorted((self.root / 'meta' / 'episodes').glob('chunk-*/file-*.parquet')):
            try:
                for row in pq.read_table(path).to_pylist():
                    rows[int(row['episode_index'])] = row
            except (pa.ArrowInvalid, OSError) as exc:
                log.warning('removing unreadable episode record %s: %s', path, exc)
                path.unlink()
        committed = 0
        while committed in rows:
            committed += 1
        self._episodes = [rows[i] for i in range(committed)]
        removed = []
        for pattern in (
            'data/chunk-*/file-*.parquet',
            'meta/episodes/chunk-*/file-*.parquet',
            'videos/*/chunk-*/file-*.mp4',
        ):
            for path in self.root.glob(pattern):
                chunk = int(path.parent.name.split('-')[1])
                file = int(path.stem.split('-')[1])
                if chunk * CHUNKS_SIZE + file >= committed:
                    path.unlink()
                    removed.append(str(path.relative_to(self.root)))
        for tmp in self.root.rglob('*.tmp'):
            tmp.unlink()
        if removed:
            log.warning(
                '%s: removed %d file(s) of an episode that was not committed: %s', self.root, len(removed), removed
            )
        self._write_summaries(self._episodes)
