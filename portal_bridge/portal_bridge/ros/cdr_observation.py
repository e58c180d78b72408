"""Observation and Image messages serialized straight from Portal records, for ``publish(bytes)``.

Building ``portal_bridge_msgs/Observation`` as a Python message copies every camera frame into an
``array.array``, and publishing serializes it again: two copies of up to 8 MB per observation
with three 1280x720 cameras, on the LiveKit thread. Here the CDR bytes are assembled from small
header pieces and the frames' own buffers with one ``bytes.join`` (one copy of each frame), and
rclpy publishes bytes as a serialized message. Subscribers receive exactly the message
:func:`~.observation_msgs.observation_to_msg` builds (a property test checks it field by field).

Layout: XCDR1 little endian (encapsulation ``00 01 00 00``), what rmw_fastrtps writes and every
DDS reads; primitives aligned to their size (8 for ``uint64``/``float64``) from the end of the
encapsulation header; strings as a ``uint32`` length including the NUL, then the bytes and NUL;
sequences as a ``uint32`` count, then the elements.
"""

from __future__ import annotations

import struct
from typing import Sequence

from ..portal import Observation as PortalObservation
from ..portal import VideoFrame

__all__ = ['image_to_cdr', 'observation_to_cdr']

_ENCAPSULATION = b'\x00\x01\x00\x00'
_U32 = struct.Struct('<I')
_I32_U32 = struct.Struct('<iI')
_U64 = struct.Struct('<Q')
_PAD = bytes(8)


class _Writer:
    """Pieces of one CDR message; ``pos`` counts from the end of the encapsulation header."""

    __slots__ = ('parts', 'pos')

    def __init__(self) -> None:
        self.parts: list = [_ENCAPSULATION]
        self.pos = 0

    def align(self, n: int) -> None:
        pad = -self.pos % n
        if pad:
            self.parts.append(_PAD[:pad])
            self.pos += pad

    def raw(self, data, size: int) -> None:
        self.parts.append(data)
        self.pos += size

    def u32(self, value: int) -> None:
        self.align(4)
        self.raw(_U32.pack(value), 4)

    def u64(self, value: int) -> None:
        self.align(8)
        self.raw(_U64.pack(value), 8)

    def string(self, text: str) -> None:
        data = text.encode() + b'\x00'
        self.u32(len(data))
        self.raw(data, len(data))

    def strings(self, texts: Sequence[str]) -> None:
        self.u32(len(texts))
        for text in texts:
            self.string(text)

    def f64s(self, values: Sequence[float]) -> None:
        self.u32(len(values))
        if values:
            self.align(8)
            self.raw(struct.pack(f'<{len(values)}d', *values), 8 * len(values))

    def u64s(self, values: Sequence[int]) -> None:
        self.u32(len(values))
        if values:
            self.align(8)
            self.raw(struct.pack(f'<{len(values)}Q', *values), 8 * len(values))

    def header(self, stamp_us: int, frame_id: str) -> None:
        sec, rem = divmod(int(stamp_us), 1_000_000)
        self.align(4)
        self.raw(_I32_U32.pack(sec, rem * 1000), 8)
        self.string(frame_id)

    def image(self, frame: VideoFrame, camera: str) -> None:
        """``sensor_msgs/Image``, rgb8, the frame's own capture time; its pixels are not copied here."""
        self.header(frame.timestamp_us, camera)
        self.u32(frame.height)
        self.u32(frame.width)
        self.string('rgb8')
        self.raw(b'\x00', 1)  # is_bigendian
        self.u32(frame.width * 3)
        size = frame.width * frame.height * 3
        data = frame.data
        if not isinstance(data, (bytes, bytearray)):
            data = memoryview(data).cast('B')
        if len(data) != size:
            raise ValueError(
                f"frame of '{camera}' has {len(data)} bytes, {frame.width}x{frame.height} RGB24 needs {size}"
            )
        self.u32(size)
        self.raw(data, size)

    def tobytes(self) -> bytes:
        return b''.join(self.parts)


def observation_to_cdr(
    obs: PortalObservation, track_order: Sequence[str], state_names: Sequence[str], robot_identity: str
) -> bytes:
    """The serialized ``portal_bridge_msgs/Observation`` that ``observation_to_msg`` would publish."""
    out = _Writer()
    out.header(obs.timestamp_us, robot_identity)
    out.u64(obs.timestamp_us)
    # state: sensor_msgs/JointState
    out.header(obs.state.timestamp_us, robot_identity)
    out.strings(list(state_names))
    out.f64s(obs.state.raw)
    out.f64s(())
    out.f64s(())
    cameras = [name for name in track_order if name in obs.frames]
    out.strings(cameras)
    out.u32(len(cameras))
    for name in cameras:
        out.image(obs.frames[name], name)
    out.u64s([obs.frames[name].timestamp_us for name in cameras])
    out.u32(len(cameras))
    out.raw(bytes(name in obs.stale for name in cameras), len(cameras))
    out.strings(list(obs.omitted))
    out.u64(obs.match_delta_us)
    return out.tobytes()


def image_to_cdr(frame: VideoFrame, camera: str) -> bytes:
    """The serialized ``sensor_msgs/Image`` that ``frame_to_image`` would publish."""
    out = _Writer()
    out.image(frame, camera)
    return out.tobytes()
