"""Frame-video header and RAW/PNG/MJPEG codecs (spec §3.7)."""

import struct

from hypothesis import given, settings
from hypothesis import strategies as st
import numpy as np
import pytest

from portal_bridge.portal.frames import VideoFrame, rgb_view
from portal_bridge.portal.wire.contract import VideoCodec
from portal_bridge.portal.wire.frame_video import (
    FrameVideoError,
    decode_payload,
    encode_frame,
    encode_payload,
    parse_header,
)

RNG = np.random.default_rng(7)


def noise(w: int, h: int) -> np.ndarray:
    return RNG.integers(0, 256, size=(h, w, 3), dtype=np.uint8)


def round_trip(codec: VideoCodec, img: np.ndarray, quality: int = 90) -> np.ndarray:
    h, w, _ = img.shape
    payload = encode_frame('cam', codec, img, w, h, 123, quality)
    head = parse_header(payload)
    assert (head.codec, head.width, head.height, head.timestamp_us, head.name) == (codec, w, h, 123, 'cam')
    return rgb_view(decode_payload(codec, payload[head.payload_offset :], w, h), w, h)


def test_header_layout():
    payload = encode_frame('wrist', VideoCodec.RAW, bytes(2 * 1 * 3), 2, 1, 0x0102030405060708)
    assert payload[:16] == struct.pack('<BBHHQH', 1, 0, 2, 1, 0x0102030405060708, 5)
    assert payload[16:21] == b'wrist'
    assert len(payload) == 16 + 5 + 6


@pytest.mark.parametrize(('w', 'h'), [(64, 48), (8, 8), (15, 9), (1, 1), (2, 2), (2048, 8), (8, 2048), (160, 120)])
@pytest.mark.parametrize('codec', [VideoCodec.RAW, VideoCodec.PNG])
def test_lossless_codecs_are_exact(codec, w, h):
    img = noise(w, h)
    assert np.array_equal(round_trip(codec, img), img)


@pytest.mark.parametrize('value', [0, 255, 128])
def test_uniform_png_frames_exact(value):
    img = np.full((48, 64, 3), value, dtype=np.uint8)
    assert np.array_equal(round_trip(VideoCodec.PNG, img), img)


def test_raw_720p_exact():
    img = noise(1280, 720)
    assert np.array_equal(round_trip(VideoCodec.RAW, img), img)


def test_mjpeg_is_close():
    # a smooth image, like a camera's; mean absolute error stays small at high quality
    y, x = np.mgrid[0:48, 0:64]
    img = np.stack([x * 4, y * 5, (x + y) * 2], axis=-1).astype(np.uint8)
    out = round_trip(VideoCodec.MJPEG, img, 95)
    assert np.abs(out.astype(int) - img.astype(int)).mean() < 6


@pytest.mark.parametrize('quality', [1, 100])
def test_mjpeg_quality_extremes(quality):
    out = round_trip(VideoCodec.MJPEG, noise(15, 9), quality)
    assert out.shape == (9, 15, 3)


def test_raw_encode_is_identity():
    img = noise(4, 3)
    assert encode_payload(VideoCodec.RAW, img, 4, 3, 90) == img.tobytes()


def test_send_side_rejections():
    with pytest.raises(FrameVideoError, match='u16'):
        encode_frame('a', VideoCodec.RAW, b'', 100_000, 1, 0)
    with pytest.raises(FrameVideoError, match='too long'):
        encode_frame('x' * 257, VideoCodec.RAW, bytes(3), 1, 1, 0)
    with pytest.raises(FrameVideoError, match='positive'):
        encode_frame('a', VideoCodec.RAW, b'', 0, 5, 0)
    with pytest.raises(FrameVideoError, match='needs'):
        encode_frame('a', VideoCodec.PNG, bytes(10), 2, 2, 0)


@pytest.mark.parametrize(
    ('mutate', 'fragment'),
    [
        (lambda p: p[:10], 'shorter than its header'),
        (lambda p: b'\x02' + p[1:], 'version 2'),
        (lambda p: p[:1] + b'\x07' + p[2:], 'codec id 7'),
        (lambda p: p[:14] + struct.pack('<H', 300) + p[16:], 'exceeds 256'),
        (lambda p: p[:14] + struct.pack('<H', 200) + p[16:20], 'truncated track name'),
        (lambda p: p[:16] + b'\xff\xfe\xfd' + p[19:], 'not UTF-8'),
    ],
)
def test_header_rejections(mutate, fragment):
    payload = encode_frame('cam', VideoCodec.RAW, bytes(12), 2, 2, 5)
    with pytest.raises(FrameVideoError) as exc:
        parse_header(mutate(payload))
    assert exc.value.reason == 'bad-payload' and fragment in str(exc.value)


def test_decode_failures():
    png = encode_payload(VideoCodec.PNG, noise(4, 4), 4, 4, 90)
    with pytest.raises(FrameVideoError) as exc:
        decode_payload(VideoCodec.PNG, png, 5, 4)  # header disagrees with the image
    assert exc.value.reason == 'decode-failed'
    with pytest.raises(FrameVideoError, match='expected JPEG'):
        decode_payload(VideoCodec.MJPEG, png, 4, 4)
    with pytest.raises(FrameVideoError, match='decode failed'):
        decode_payload(VideoCodec.PNG, png[:20], 4, 4)
    with pytest.raises(FrameVideoError, match='RAW payload'):
        decode_payload(VideoCodec.RAW, bytes(5), 1, 1)


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=300))
def test_random_payloads_never_raise_unexpected_errors(data):
    try:
        head = parse_header(data)
        decode_payload(head.codec, data[head.payload_offset :], head.width, head.height)
    except FrameVideoError:
        pass


def test_video_frame_views_without_copy():
    buf = bytearray(noise(3, 2).tobytes())
    frame = VideoFrame(3, 2, buf, 1)
    arr = frame.array()
    assert arr.shape == (2, 3, 3)
    buf[0] = 255 - buf[0]
    assert arr[0, 0, 0] == buf[0]  # a view onto the same memory
    with pytest.raises(ValueError):
        rgb_view(bytes(5), 1, 1)
