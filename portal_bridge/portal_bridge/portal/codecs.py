"""Every video codec a wire contract may name, in one registry.

A codec is either a **WebRTC** codec (a media track the SDK encodes; lossy I420, the receiver gets
frames with a ``user_timestamp``) or a **frame-video** codec (each frame one byte stream on
``portal_frame_video`` with a 16-byte header naming the codec by its ``wire_id``). Everything else
(``VideoCodec``, the contract parser and writer, the frame-video header, the robot's publisher, the
operator's decoder, the ROS ``CompressedImage`` pass-through) looks codecs up here, so adding a
codec is one :class:`Codec` entry in ``CODECS`` plus its test.
"""

from __future__ import annotations

from dataclasses import dataclass
import enum
import io
from typing import Callable, Optional

import numpy as np
from PIL import Image

__all__ = ['Codec', 'CODECS', 'VideoCodec', 'CodecDataError', 'codec_by_wire_id']

Encode = Callable[[np.ndarray, int], bytes]  # (H, W, 3) uint8 RGB, quality -> payload
Decode = Callable[[bytes, int, int], bytes]  # payload, width, height -> packed RGB24


class CodecDataError(ValueError):
    """A payload that does not decode to the size its header declares."""


@dataclass(frozen=True)
class Codec:
    """One codec: how the wire names it and, for frame video, how its payload is made and read."""

    name: str  # as written in portal.yaml (lower case)
    webrtc: bool  # True: a WebRTC media track; False: frame video on byte streams
    wire_id: Optional[int] = None  # frame video: the codec id in the frame header
    sdk_codec: Optional[str] = None  # WebRTC: the member name of livekit.rtc.VideoCodec
    aliases: tuple[str, ...] = ()  # other names accepted in portal.yaml
    encode: Optional[Encode] = None  # frame video only
    decode: Optional[Decode] = None  # frame video only
    ros_format: Optional[str] = None  # CompressedImage format whose bytes are this codec's payload
    has_quality: bool = False  # portal.yaml's ``quality`` (1..=100) applies
    cheap_decode: bool = False  # decode on the event loop (no thread hand-off)
    min_dimension: int = 1  # smallest width/height the encoder accepts


def _raw_encode(rgb: np.ndarray, quality: int) -> bytes:
    return rgb.tobytes()


def _raw_decode(data: bytes, width: int, height: int) -> bytes:
    if len(data) != width * height * 3:
        raise CodecDataError(f'RAW payload is {len(data)} bytes, {width}x{height} needs {width * height * 3}')
    return bytes(data)


def _pillow(fmt: str, **options: object) -> tuple[Encode, Decode]:
    def encode(rgb: np.ndarray, quality: int) -> bytes:
        out = io.BytesIO()
        kwargs = {k: (int(quality) if v == 'quality' else v) for k, v in options.items()}
        Image.fromarray(np.ascontiguousarray(rgb)).save(out, format=fmt, **kwargs)
        return out.getvalue()

    def decode(data: bytes, width: int, height: int) -> bytes:
        with Image.open(io.BytesIO(data)) as img:
            if img.format != fmt:
                raise CodecDataError(f'payload is {img.format}, expected {fmt}')
            if img.size != (width, height):
                raise CodecDataError(f'decoded {img.size[0]}x{img.size[1]}, header says {width}x{height}')
            return img.convert('RGB').tobytes()

    return encode, decode


_png = _pillow('PNG', compress_level=1)
_jpeg = _pillow('JPEG', quality='quality')

CODECS: tuple[Codec, ...] = (
    Codec('h264', webrtc=True, sdk_codec='H264', min_dimension=16),
    Codec('vp8', webrtc=True, sdk_codec='VP8'),
    Codec('vp9', webrtc=True, sdk_codec='VP9'),
    Codec('av1', webrtc=True, sdk_codec='AV1'),
    Codec('h265', webrtc=True, sdk_codec='H265', aliases=('hevc',)),
    Codec('raw', webrtc=False, wire_id=0, encode=_raw_encode, decode=_raw_decode, cheap_decode=True),
    Codec('png', webrtc=False, wire_id=1, encode=_png[0], decode=_png[1], ros_format='png'),
    Codec('mjpeg', webrtc=False, wire_id=2, encode=_jpeg[0], decode=_jpeg[1], ros_format='jpeg', has_quality=True),
)


class _CodecEnum(enum.Enum):
    """Members are generated from ``CODECS``; each knows its :class:`Codec` as ``.spec``."""

    @property
    def spec(self) -> Codec:
        return _BY_NAME[self.value]

    @property
    def is_webrtc(self) -> bool:
        """True for codecs carried on a WebRTC media track."""
        return self.spec.webrtc

    @property
    def frame_codec_id(self) -> int:
        """Codec id in the frame-video header (frame-video codecs only)."""
        if self.spec.wire_id is None:
            raise KeyError(f'{self.name} is not a frame-video codec')
        return self.spec.wire_id

    @classmethod
    def parse(cls, text: str) -> VideoCodec:
        """Parse a codec name as written in ``portal.yaml`` (case-insensitive, aliases accepted)."""
        key = str(text).strip().lower()
        for codec in CODECS:
            if key == codec.name or key in codec.aliases:
                return cls(codec.name)
        names = ', '.join([c.name for c in CODECS] + [a for c in CODECS for a in c.aliases])
        raise ValueError(f"unknown codec '{text}' (expected one of {names})")


_BY_NAME = {c.name: c for c in CODECS}
_BY_WIRE_ID = {c.wire_id: c for c in CODECS if c.wire_id is not None}
assert len(_BY_NAME) == len(CODECS) and len(_BY_WIRE_ID) == sum(c.wire_id is not None for c in CODECS)

VideoCodec = _CodecEnum(
    'VideoCodec', [(c.name.upper(), c.name) for c in CODECS], module=__name__, qualname='VideoCodec'
)
VideoCodec.__doc__ = 'Video codecs of a wire contract (generated from ``CODECS``).'


def codec_by_wire_id(wire_id: int) -> Optional[VideoCodec]:
    """The frame-video codec with this header id, or None."""
    codec = _BY_WIRE_ID.get(wire_id)
    return None if codec is None else VideoCodec(codec.name)
