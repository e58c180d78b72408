"""Video frames as Portal delivers them: packed RGB24 with the sender's timestamp.

Whatever the transport (WebRTC I420 or a RAW/PNG/MJPEG byte stream), frames surface as
``width x height x 3`` bytes, R,G,B order, row-major with no padding. ``VideoFrame`` holds them
without copying; :meth:`VideoFrame.array` is a zero-copy numpy view.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Union

import numpy as np

__all__ = ['VideoFrame', 'FrameBuffer', 'rgb_view']

FrameBuffer = Union[bytes, bytearray, memoryview, np.ndarray]


def rgb_view(data: FrameBuffer, width: int, height: int) -> np.ndarray:
    """A zero-copy ``(height, width, 3)`` uint8 view; ValueError if the size is not ``w*h*3``."""
    if isinstance(data, np.ndarray):
        arr = data
        if arr.dtype != np.uint8:
            raise ValueError(f'RGB frames must be uint8, got {arr.dtype}')
        if arr.size != width * height * 3:
            raise ValueError(f'frame has {arr.size} bytes, {width}x{height} RGB24 needs {width * height * 3}')
        return arr.reshape(height, width, 3)
    n = len(data) if not isinstance(data, memoryview) else data.nbytes
    if n != width * height * 3:
        raise ValueError(f'frame has {n} bytes, {width}x{height} RGB24 needs {width * height * 3}')
    return np.frombuffer(data, dtype=np.uint8).reshape(height, width, 3)


@dataclass(frozen=True, slots=True)
class VideoFrame:
    """One RGB24 frame and the Portal timestamp (µs since the epoch, sender's clock)."""

    width: int
    height: int
    data: FrameBuffer
    timestamp_us: int

    def array(self) -> np.ndarray:
        """The frame as a ``(height, width, 3)`` uint8 array, without copying."""
        return rgb_view(self.data, self.width, self.height)

    def tobytes(self) -> bytes:
        """The packed RGB24 bytes (copies only if the buffer is not already ``bytes``)."""
        if isinstance(self.data, bytes):
            return self.data
        return self.array().tobytes()
