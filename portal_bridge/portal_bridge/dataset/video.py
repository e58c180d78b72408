"""Camera video for datasets: one MP4 per camera and episode, encoded by PyAV in a worker thread.

The recorder hands frames over as they arrive and never waits for the encoder (FFmpeg releases
the GIL while it encodes, so three cameras at 30 fps keep up on two cores). Frame ``i`` of an
episode gets the presentation time ``i / fps`` exactly, which is what lerobot looks a frame up
by (``from_timestamp + timestamp``, tolerance 0.1 ms). The worker also counts the frame's pixels
for the camera's statistics, off the caller's thread.
"""

from __future__ import annotations

from fractions import Fraction
import os
from pathlib import Path
import queue
import threading
from typing import Optional

import av
import numpy as np

from .schema import VideoCodec
from .stats import ImageStats

__all__ = ['VideoEncoder', 'decode_frames']


class VideoEncoder:
    """Encode one camera of one episode to ``path``; :meth:`finish` waits and reports failures."""

    def __init__(self, path: Path, codec: VideoCodec, fps: int, height: int, width: int, name: str = '') -> None:
        self.path = Path(path)
        self.codec, self.fps, self.height, self.width = codec, fps, height, width
        self.stats = ImageStats()
        self.frames = 0
        self.backlog_peak = 0
        self._queue: queue.SimpleQueue[Optional[np.ndarray]] = queue.SimpleQueue()
        self._error: Optional[BaseException] = None
        self._closed = False
        self._thread = threading.Thread(target=self._run, name=f'video-{name or path.stem}', daemon=True)
        self._thread.start()

    def put(self, rgb: np.ndarray) -> None:
        """Queue the next frame (``(height, width, 3)`` uint8; not copied, so do not modify it)."""
        if self._closed:
            raise RuntimeError('encoder already finished')
        if rgb.shape != (self.height, self.width, 3) or rgb.dtype != np.uint8:
            raise ValueError(
                f'frame is {rgb.shape} {rgb.dtype}, the episode records ({self.height}, {self.width}, 3) uint8'
            )
        self._queue.put(rgb)
        self.frames += 1
        self.backlog_peak = max(self.backlog_peak, self._queue.qsize())

    @property
    def backlog(self) -> int:
        return self._queue.qsize()

    def finish(self, timeout: Optional[float] = None) -> None:
        """Encode what is queued, close the file; raise what the worker hit, if anything."""
        if not self._closed:
            self._closed = True
            self._queue.put(None)
        self._thread.join(timeout)
        if self._thread.is_alive():
            raise TimeoutError(f'{self.path.name}: encoder still busy after {timeout} s')
        if self._error is not None:
            raise RuntimeError(f'{self.path.name}: video encoding failed: {self._error}') from self._error

    def abort(self) -> None:
        """Stop without waiting for the queue to drain (the episode is discarded)."""
        while True:
            try:
                self._queue.get_nowait()
            except queue.Empty:
                break
        self.finish()

    def _run(self) -> None:
        container = None
        # SVT-AV1 prints a dozen info lines per encoder to stderr; errors only (it reads this at open).
        os.environ.setdefault('SVT_LOG', '1')
        try:
            container = av.open(str(self.path), mode='w', format='mp4')
            stream = container.add_stream(self.codec.encoder, rate=self.fps, options=dict(self.codec.options))
            stream.width, stream.height, stream.pix_fmt = self.width, self.height, self.codec.pix_fmt
            time_base = Fraction(1, self.fps)
            stream.time_base = time_base
            index = 0
            while (rgb := self._queue.get()) is not None:
                self.stats.add(rgb)
                frame = av.VideoFrame.from_ndarray(rgb, format='rgb24')
                frame.pts, frame.time_base = index, time_base
                index += 1
                for packet in stream.encode(frame):
                    container.mux(packet)
            for packet in stream.encode():
                container.mux(packet)
        except BaseException as exc:  # reported by finish(); the queue is drained so put() never blocks
            self._error = exc
            while self._queue.get() is not None:
                pass
        finally:
            if container is not None:
                try:
                    container.close()
                except Exception as exc:  # a half-written file is discarded by the caller
                    self._error = self._error or exc


def decode_frames(path: Path) -> list[tuple[float, np.ndarray]]:
    """Every frame of an MP4 as ``(seconds, (height, width, 3) uint8 RGB)``, in presentation order."""
    out = []
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        for frame in container.decode(stream):
            out.append((float(frame.pts * stream.time_base), frame.to_ndarray(format='rgb24')))
    out.sort(key=lambda item: item[0])
    return out
