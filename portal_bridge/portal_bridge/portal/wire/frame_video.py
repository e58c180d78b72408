"""Frame video: one camera frame per reliable byte stream on ``portal_frame_video``.

Header (16 bytes + name), little-endian::

    u8 version=1 | u8 codec_id (0 RAW, 1 PNG, 2 MJPEG) | u16 width | u16 height
    | u64 timestamp_us | u16 name_len | name (UTF-8) | codec payload to end of stream

RAW and PNG are bit-exact, MJPEG is lossy but independent per frame. Odd sizes are allowed.
Used where WebRTC's lossy I420 path is wrong: depth, small crops, exact pixels for training.
"""

from __future__ import annotations

from dataclasses import dataclass
import struct

from ..codecs import CodecDataError, VideoCodec, codec_by_wire_id
from ..frames import FrameBuffer, rgb_view
from .contract import DEFAULT_MJPEG_QUALITY, MAX_TRACK_NAME_BYTES

__all__ = [
    'FRAME_VIDEO_VERSION',
    'FrameVideoError',
    'FrameHeader',
    'encode_frame',
    'frame_header',
    'parse_header',
    'decode_payload',
    'encode_payload',
]

FRAME_VIDEO_VERSION = 1
_HEADER = struct.Struct('<BBHHQH')
_MAX_DIM = 0xFFFF


class FrameVideoError(ValueError):
    """A frame that cannot be sent or received.

    ``reason`` on receive is one of bad-payload, decode-failed (Portal's log tags); on send it
    is codec.
    """

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


@dataclass(frozen=True, slots=True)
class FrameHeader:
    codec: VideoCodec
    width: int
    height: int
    timestamp_us: int
    name: str
    payload_offset: int


def encode_payload(codec: VideoCodec, rgb: FrameBuffer, width: int, height: int, quality: int) -> bytes:
    """Compress packed RGB24 with a frame-video codec (looked up in the codec registry)."""
    encode = codec.spec.encode
    if encode is None:
        raise FrameVideoError('codec', f'{codec.name} is not a frame-video codec')
    return encode(rgb_view(rgb, width, height), quality)


def frame_header(name: str, codec: VideoCodec, width: int, height: int, timestamp_us: int) -> bytes:
    """The header (with name) that precedes a frame's codec payload; FrameVideoError('codec') if invalid."""
    if width > _MAX_DIM or height > _MAX_DIM:
        raise FrameVideoError('codec', f'frame {width}x{height} exceeds u16 max dimension {_MAX_DIM}')
    if width <= 0 or height <= 0:
        raise FrameVideoError('codec', f'frame dimensions must be positive, got {width}x{height}')
    raw_name = name.encode('utf-8')
    if len(raw_name) > MAX_TRACK_NAME_BYTES:
        raise FrameVideoError('codec', f'track name too long ({len(raw_name)} > {MAX_TRACK_NAME_BYTES} bytes)')
    return (
        _HEADER.pack(FRAME_VIDEO_VERSION, codec.frame_codec_id, width, height, timestamp_us, len(raw_name)) + raw_name
    )


def encode_frame(
    name: str,
    codec: VideoCodec,
    rgb: FrameBuffer,
    width: int,
    height: int,
    timestamp_us: int,
    quality: int = DEFAULT_MJPEG_QUALITY,
) -> bytes:
    """Build one frame-video stream payload (header + compressed frame)."""
    header = frame_header(name, codec, width, height, timestamp_us)
    try:
        rgb_view(rgb, width, height)
    except ValueError as exc:
        raise FrameVideoError('codec', str(exc)) from None
    return header + encode_payload(codec, rgb, width, height, quality)


def parse_header(payload: bytes) -> FrameHeader:
    """Parse and check the header; FrameVideoError('bad-payload') on anything malformed."""
    if len(payload) < _HEADER.size:
        raise FrameVideoError('bad-payload', f'frame-video payload of {len(payload)} bytes is shorter than its header')
    version, codec_id, width, height, ts, name_len = _HEADER.unpack_from(payload)
    if version != FRAME_VIDEO_VERSION:
        raise FrameVideoError('bad-payload', f'unsupported frame-video version {version}')
    codec = codec_by_wire_id(codec_id)
    if codec is None:
        raise FrameVideoError('bad-payload', f'unknown frame-video codec id {codec_id}')
    if name_len > MAX_TRACK_NAME_BYTES:
        raise FrameVideoError('bad-payload', f'track name length {name_len} exceeds {MAX_TRACK_NAME_BYTES}')
    end = _HEADER.size + name_len
    if len(payload) < end:
        raise FrameVideoError('bad-payload', 'truncated track name')
    try:
        name = bytes(payload[_HEADER.size : end]).decode('utf-8')
    except UnicodeDecodeError:
        raise FrameVideoError('bad-payload', 'track name is not UTF-8') from None
    return FrameHeader(codec, width, height, ts, name, end)


def decode_payload(codec: VideoCodec, data: bytes, width: int, height: int) -> bytes:
    """Decompress to packed RGB24; FrameVideoError('decode-failed') on errors or size mismatch."""
    if width == 0 or height == 0:
        raise FrameVideoError('decode-failed', f'zero frame dimension {width}x{height}')
    decode = codec.spec.decode
    if decode is None:
        raise FrameVideoError('decode-failed', f'{codec.name} is not a frame-video codec')
    try:
        return decode(data, width, height)
    except CodecDataError as exc:
        raise FrameVideoError('decode-failed', str(exc)) from None
    except Exception as exc:  # Pillow raises many types on corrupt data
        raise FrameVideoError('decode-failed', f'{codec.name} decode failed: {exc}') from None
