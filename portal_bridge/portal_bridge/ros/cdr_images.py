"""Camera messages read straight from their CDR bytes, without building a Python message.

A subscription with ``raw=True`` hands over the serialized message. Deserializing a
``sensor_msgs/Image`` into rclpy's Python class copies every pixel into an ``array.array`` first;
reading the few header fields here and viewing the pixel bytes in place saves that copy (2.7 MB
per 1280x720 frame). The results quack like the messages where the bridge reads them
(``header.stamp.sec``/``nanosec``, ``height``, ``width``, ``encoding``, ``is_bigendian``,
``step``, ``data``; ``format`` for ``CompressedImage``), so :mod:`.images` converts either.

The layout is plain CDR (XCDR1, and XCDR2's plain encoding, which is the same for these types:
nothing in them is wider than 4 bytes), either byte order, alignment counted from the end of the
4-byte encapsulation header. A buffer that is truncated or whose lengths point past its end (a
lying buffer) raises :class:`CdrError` (an :class:`~.images.ImageConversionError` with reason
``bad-cdr``), never anything else.
"""

from __future__ import annotations

import struct
from typing import NamedTuple

from .images import ImageConversionError

__all__ = ['CdrError', 'RawCompressedImage', 'RawHeader', 'RawImage', 'RawStamp', 'read_compressed_image', 'read_image']

# Encapsulation identifiers (second byte; the first is 0): byte order of the body.
_BIG_ENDIAN = {0x00: True, 0x01: False, 0x06: True, 0x07: False}  # CDR_BE, CDR_LE, PLAIN_CDR2_BE/LE
_ORIGIN = 4  # alignment is relative to the byte after the encapsulation header
# (uint32, int32) readers per byte order (big endian?), built once rather than per message
_STRUCTS = {big: (struct.Struct(o + 'I'), struct.Struct(o + 'i')) for big, o in ((True, '>'), (False, '<'))}


class CdrError(ImageConversionError):
    """A serialized message that does not hold what its type says."""

    def __init__(self, message: str) -> None:
        super().__init__('bad-cdr', message)


class RawStamp(NamedTuple):
    sec: int
    nanosec: int


class RawHeader(NamedTuple):
    stamp: RawStamp
    frame_id: str


class RawImage(NamedTuple):
    """``sensor_msgs/Image`` fields; ``data`` is a view into the serialized buffer."""

    header: RawHeader
    height: int
    width: int
    encoding: str
    is_bigendian: int
    step: int
    data: memoryview


class RawCompressedImage(NamedTuple):
    """``sensor_msgs/CompressedImage`` fields; ``data`` is a view into the serialized buffer."""

    header: RawHeader
    format: str
    data: memoryview


class _Reader:
    """Sequential reads with CDR alignment and bounds checks."""

    __slots__ = ('buf', 'pos', 'u32', 'i32')

    def __init__(self, buf) -> None:
        self.buf = memoryview(buf).cast('B')
        if len(self.buf) < _ORIGIN:
            raise CdrError(f'{len(self.buf)} bytes cannot hold the CDR encapsulation header')
        big = _BIG_ENDIAN.get(self.buf[1]) if self.buf[0] == 0 else None
        if big is None:
            raise CdrError(f'unsupported CDR encapsulation 0x{self.buf[0]:02x}{self.buf[1]:02x}')
        self.u32, self.i32 = _STRUCTS[big]
        self.pos = _ORIGIN

    def _take(self, n: int, what: str) -> int:
        start = self.pos
        if n < 0 or start + n > len(self.buf):
            raise CdrError(f'{what} needs {n} bytes at offset {start}; the buffer has {len(self.buf)}')
        self.pos = start + n
        return start

    def _align4(self) -> None:
        self.pos += -(self.pos - _ORIGIN) % 4

    def uint32(self, what: str) -> int:
        self._align4()
        return self.u32.unpack_from(self.buf, self._take(4, what))[0]

    def int32(self, what: str) -> int:
        self._align4()
        return self.i32.unpack_from(self.buf, self._take(4, what))[0]

    def uint8(self, what: str) -> int:
        return self.buf[self._take(1, what)]

    def string(self, what: str) -> str:
        n = self.uint32(f'{what} length')
        if n == 0:  # some writers send an empty string as length 0, without the terminator
            return ''
        start = self._take(n, what)
        if self.buf[start + n - 1] != 0:
            raise CdrError(f'{what} is not NUL-terminated')
        try:
            return str(self.buf[start : start + n - 1], 'utf-8')
        except UnicodeDecodeError as exc:
            raise CdrError(f'{what} is not UTF-8: {exc}') from None

    def octets(self, what: str) -> memoryview:
        n = self.uint32(f'{what} length')
        start = self._take(n, what)
        return self.buf[start : start + n]

    def header(self) -> RawHeader:
        sec = self.int32('header.stamp.sec')
        nanosec = self.uint32('header.stamp.nanosec')
        return RawHeader(RawStamp(sec, nanosec), self.string('header.frame_id'))


def read_image(buf) -> RawImage:
    """A ``sensor_msgs/Image`` from its serialized bytes (``bytes``, ``bytearray`` or a buffer)."""
    r = _Reader(buf)
    header = r.header()
    height = r.uint32('height')
    width = r.uint32('width')
    encoding = r.string('encoding')
    is_bigendian = r.uint8('is_bigendian')
    step = r.uint32('step')
    return RawImage(header, height, width, encoding, is_bigendian, step, r.octets('data'))


def read_compressed_image(buf) -> RawCompressedImage:
    """A ``sensor_msgs/CompressedImage`` from its serialized bytes."""
    r = _Reader(buf)
    header = r.header()
    fmt = r.string('format')
    return RawCompressedImage(header, fmt, r.octets('data'))
