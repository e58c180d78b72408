"""Case 8: the recorder's dataset writer, the part of recording that costs (encoding and statistics).

Camera-like frames (bench/ros_publisher.camera_frame: gradients, moving blocks, sensor noise) go
into an episode as the recorder adds them, either as fast as the writer takes them (what it can
sustain) or at 30 fps for a fixed time (what recording a session costs): frames per second,
CPU of the process (percent of one core), the encoders' largest backlog, and how long saving
takes once the episode stops. The network side of recording is an operator's, measured in the
other cases.
"""

from __future__ import annotations

from pathlib import Path
import resource
import shutil
import tempfile
import time
from typing import Any

import numpy as np

from portal_bridge.dataset.schema import DatasetSchema
from portal_bridge.dataset.writer import Frame, LeRobotWriter

from .ros_publisher import camera_frame
from .runner import Bench, Emit
from .stats import table

NAMES = tuple(f'j{i}' for i in range(7))


def _cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def record(cameras: int, width: int, height: int, codec: str, seconds: float, fps: float | None) -> dict[str, Any]:
    """One episode of ``seconds`` of frames, at ``fps`` (None: as fast as the writer takes them)."""
    rng = np.random.default_rng(0)
    pool = {f'cam{c}': [camera_frame(width, height, n, c, rng) for n in range(30)] for c in range(cameras)}
    root = tempfile.mkdtemp(prefix='bench-dataset-')
    try:
        schema = DatasetSchema(30, NAMES, NAMES, tuple((cam, height, width) for cam in pool), (), codec)
        writer = LeRobotWriter(root, schema)
        episode = writer.start_episode('bench')
        n = int(seconds * (fps or 30))
        state = [0.0] * len(NAMES)
        cpu0, t0 = _cpu_s(), time.perf_counter()
        for i in range(n):
            if fps:
                time.sleep(max(0.0, t0 + i / fps - time.perf_counter()))
            images = {cam: frames[i % len(frames)] for cam, frames in pool.items()}
            episode.add(Frame(state, images, 1_000 + i, state, 2_000 + i, 'bench'))
        added = time.perf_counter()
        backlog = max(e.backlog_peak for e in episode.encoders.values())
        result = episode.save().result()
        done = time.perf_counter()
        cpu = _cpu_s() - cpu0
        writer.close()
        size = sum(p.stat().st_size for p in Path(root).rglob('*') if p.is_file())
        return {
            'frames': result.frames,
            'fps': result.frames / (done - t0),
            'cpu': 100.0 * cpu / (done - t0),
            'backlog': backlog,
            'save_s': done - added,
            'mb': size / 1e6,
        }
    finally:
        shutil.rmtree(root, ignore_errors=True)


def section(b: Bench, emit: Emit) -> None:
    emit('\n## 8. Recorder: dataset writer (camera-like frames, one process)\n')
    seconds = b.seconds(20.0)
    rows = []
    for cameras, w, h, codec, fps in (
        (3, 640, 480, 'h264', None),
        (1, 1280, 720, 'h264', None),
        (3, 640, 480, 'av1', None),
        (3, 640, 480, 'h264', 30.0),
        (3, 640, 480, 'h264-lossless', 30.0),
    ):
        r = record(cameras, w, h, codec, seconds, fps)
        fed = 'as fast as it takes' if fps is None else f'{fps:.0f} fps for {seconds:.0f} s'
        rows.append([f'{cameras} x {w}x{h}', codec, fed, r['frames'], r['fps'], r['cpu'], r['backlog'], r['save_s'],
                     r['mb']])  # fmt: skip
    emit(table(['cameras', 'codec', 'fed', 'frames', 'frames/s', 'CPU % of a core', 'encoder backlog peak',
                'save after stop s', 'MB written'], rows))  # fmt: skip
