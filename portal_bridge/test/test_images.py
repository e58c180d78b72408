"""Unit tests of portal_bridge.images: raw and compressed camera messages to RGB24 and back.

Every encoding is checked against a reference computed here pixel by pixel in plain Python
(BT.601 full-range for YUV 4:2:2, written out independently), with row padding filled with
garbage that must never reach the output. Bad input must raise ImageConversionError with the
reason the node counts. CompressedImage data is encoded with Pillow in the test.
"""

import array
import io
import random

from builtin_interfaces.msg import Time
import numpy as np
from PIL import Image as PILImage
import pytest
from sensor_msgs.msg import CompressedImage, Image
from std_msgs.msg import Header

from portal_bridge.ros.images import (
    ImageConversionError,
    compressed_format,
    compressed_size,
    compressed_to_rgb,
    image_to_rgb,
    rgb_to_image,
)

# -- independent reference -------------------------------------------------------------------------

BYTES_PER_PIXEL = {
    'rgb8': 3,
    'bgr8': 3,
    '8UC3': 3,
    'rgba8': 4,
    'bgra8': 4,
    '8UC4': 4,
    'mono8': 1,
    '8UC1': 1,
    'mono16': 2,
    '16UC1': 2,
    'yuv422': 2,
    'uyvy': 2,
    'yuv422_yuy2': 2,
    'yuyv': 2,
}
YUV_ENCODINGS = ('yuv422', 'uyvy', 'yuv422_yuy2', 'yuyv')
PLAIN_ENCODINGS = tuple(e for e in BYTES_PER_PIXEL if e not in YUV_ENCODINGS)


def _clamp_round(x: float) -> int:
    return min(255, max(0, int(round(x))))


def _yuv_pixel(y: int, u: int, v: int) -> tuple[int, int, int]:
    """BT.601 full range (JFIF): Y in [0, 255], Cb/Cr centred on 128."""
    cb, cr = u - 128, v - 128
    return (
        _clamp_round(y + 1.402 * cr),
        _clamp_round(y - 0.344136 * cb - 0.714136 * cr),
        _clamp_round(y + 1.772 * cb),
    )


def reference_rgb(encoding: str, rows: list[bytes], width: int, is_bigendian: int = 0) -> np.ndarray:
    """RGB of unpadded pixel rows, one pixel at a time, with no numpy tricks."""
    out = []
    for row in rows:
        pixels = []
        if encoding in YUV_ENCODINGS:
            for x in range(0, width, 2):
                a, b, c, d = row[2 * x : 2 * x + 4]
                if encoding in ('yuv422', 'uyvy'):
                    u, y0, v, y1 = a, b, c, d
                else:
                    y0, u, y1, v = a, b, c, d
                pixels.append(_yuv_pixel(y0, u, v))
                pixels.append(_yuv_pixel(y1, u, v))
        else:
            bpp = BYTES_PER_PIXEL[encoding]
            for x in range(width):
                p = row[x * bpp : (x + 1) * bpp]
                if encoding in ('rgb8', 'rgba8'):
                    pixels.append((p[0], p[1], p[2]))
                elif encoding in ('bgr8', '8UC3', 'bgra8', '8UC4'):
                    pixels.append((p[2], p[1], p[0]))
                elif encoding in ('mono8', '8UC1'):
                    pixels.append((p[0], p[0], p[0]))
                else:  # mono16 / 16UC1: the high byte of the 16-bit value
                    g = int.from_bytes(p, 'big' if is_bigendian else 'little') // 256
                    pixels.append((g, g, g))
        out.append(pixels)
    return np.array(out, dtype=np.int32).reshape(len(rows), width, 3)


def random_rows(seed: int, width: int, height: int, bpp: int) -> list[bytes]:
    rng = random.Random(seed)
    return [bytes(rng.randrange(256) for _ in range(width * bpp)) for _ in range(height)]


def make_image(
    encoding: str,
    rows: list[bytes],
    width: int,
    pad: int = 0,
    garbage: int = 0xEE,
    is_bigendian: int = 0,
) -> Image:
    step = (len(rows[0]) if rows else 0) + pad
    data = b''.join(r + bytes([garbage]) * pad for r in rows)
    msg = Image(height=len(rows), width=width, encoding=encoding, is_bigendian=is_bigendian, step=step)
    msg.data = array.array('B', data)
    return msg


def raw_image(encoding: str, width: int, height: int, step: int, n_bytes: int) -> Image:
    msg = Image(height=height, width=width, encoding=encoding, step=step)
    msg.data = array.array('B', bytes(range(256)) * (n_bytes // 256) + bytes(range(n_bytes % 256)))
    return msg


def assert_rgb_array(rgb: np.ndarray, width: int, height: int) -> None:
    assert isinstance(rgb, np.ndarray)
    assert rgb.shape == (height, width, 3)
    assert rgb.dtype == np.uint8
    assert rgb.flags['C_CONTIGUOUS']


# -- raw encodings ---------------------------------------------------------------------------------

PLAIN_SIZES = [(1, 1, 0), (1, 1, 5), (3, 2, 0), (3, 2, 1), (5, 7, 3), (7, 3, 13), (2, 1, 64)]
YUV_SIZES = [(2, 1, 0), (2, 1, 3), (4, 3, 0), (6, 5, 1), (10, 4, 7)]
ENDIAN_CASES = [(e, 0) for e in PLAIN_ENCODINGS] + [('mono16', 1), ('16UC1', 1)]


@pytest.mark.parametrize(('encoding', 'is_bigendian'), ENDIAN_CASES)
@pytest.mark.parametrize(('width', 'height', 'pad'), PLAIN_SIZES)
def test_plain_encodings_match_reference(encoding, is_bigendian, width, height, pad):
    rows = random_rows(width * 100 + height, width, height, BYTES_PER_PIXEL[encoding])
    rgb = image_to_rgb(make_image(encoding, rows, width, pad, is_bigendian=is_bigendian))
    assert_rgb_array(rgb, width, height)
    np.testing.assert_array_equal(rgb, reference_rgb(encoding, rows, width, is_bigendian))


@pytest.mark.parametrize('encoding', YUV_ENCODINGS)
@pytest.mark.parametrize(('width', 'height', 'pad'), YUV_SIZES)
def test_yuv422_matches_bt601_full_range(encoding, width, height, pad):
    rows = random_rows(width * 100 + height, width, height, 2)
    rgb = image_to_rgb(make_image(encoding, rows, width, pad))
    assert_rgb_array(rgb, width, height)
    diff = np.abs(rgb.astype(np.int32) - reference_rgb(encoding, rows, width))
    assert diff.max() <= 1, f'max deviation {diff.max()} from BT.601'


@pytest.mark.parametrize('encoding', BYTES_PER_PIXEL)
def test_row_padding_never_reaches_the_output(encoding):
    width, height, pad = 4, 5, 6
    rows = random_rows(7, width, height, BYTES_PER_PIXEL[encoding])
    outputs = [image_to_rgb(make_image(encoding, rows, width, pad, garbage=g)) for g in (0x00, 0x80, 0xFF)]
    unpadded = image_to_rgb(make_image(encoding, rows, width, 0))
    for rgb in outputs:
        np.testing.assert_array_equal(rgb, unpadded)


@pytest.mark.parametrize(
    ('encoding', 'is_bigendian', 'pixel', 'gray'),
    [
        ('mono16', 0, b'\x34\x12', 0x12),
        ('mono16', 1, b'\x12\x34', 0x12),
        ('16UC1', 0, b'\xff\x00', 0x00),
        ('16UC1', 1, b'\xff\x00', 0xFF),
        ('mono16', 0, b'\xff\xff', 0xFF),
        ('16UC1', 1, b'\x00\xff', 0x00),
    ],
)
def test_sixteen_bit_endianness_and_scaling(encoding, is_bigendian, pixel, gray):
    rgb = image_to_rgb(make_image(encoding, [pixel], 1, is_bigendian=is_bigendian))
    assert rgb.tolist() == [[[gray, gray, gray]]]


@pytest.mark.parametrize('encoding', ['rgb8', 'bgr8', 'rgba8', 'mono8', 'yuv422'])
def test_is_bigendian_does_not_change_eight_bit_images(encoding):
    rows = random_rows(3, 4, 2, BYTES_PER_PIXEL[encoding])
    little = image_to_rgb(make_image(encoding, rows, 4, 2, is_bigendian=0))
    big = image_to_rgb(make_image(encoding, rows, 4, 2, is_bigendian=1))
    np.testing.assert_array_equal(little, big)


@pytest.mark.parametrize(
    ('encoding', 'pixel', 'rgb'),
    [
        ('rgb8', b'\x0a\x14\x1e', (10, 20, 30)),
        ('bgr8', b'\x0a\x14\x1e', (30, 20, 10)),
        ('8UC3', b'\x0a\x14\x1e', (30, 20, 10)),
        ('rgba8', b'\x0a\x14\x1e\x28', (10, 20, 30)),
        ('bgra8', b'\x0a\x14\x1e\x28', (30, 20, 10)),
        ('8UC4', b'\x0a\x14\x1e\x28', (30, 20, 10)),
        ('mono8', b'\x2a', (42, 42, 42)),
        ('8UC1', b'\x2a', (42, 42, 42)),
    ],
)
def test_one_pixel_channel_order(encoding, pixel, rgb):
    assert image_to_rgb(make_image(encoding, [pixel], 1)).tolist() == [[list(rgb)]]


@pytest.mark.parametrize(
    ('encoding', 'macropixel', 'expected'),
    [
        # Neutral chroma: both pixels are the plain luma grey.
        ('uyvy', bytes([128, 50, 128, 200]), [(50, 50, 50), (200, 200, 200)]),
        ('yuyv', bytes([50, 128, 200, 128]), [(50, 50, 50), (200, 200, 200)]),
        # Strong red chroma saturates R at 255 and pushes G down; blue stays at luma.
        ('yuv422', bytes([128, 200, 255, 200]), [(255, 109, 200), (255, 109, 200)]),
        # Chroma of 0 drives B below zero: clipped to 0, never wrapped.
        ('yuv422_yuy2', bytes([10, 0, 10, 128]), [(10, 54, 0), (10, 54, 0)]),
    ],
)
def test_yuv422_known_values(encoding, macropixel, expected):
    rgb = image_to_rgb(make_image(encoding, [macropixel], 2)).astype(np.int32)
    assert np.abs(rgb - np.array([expected])).max() <= 1, rgb.tolist()


def test_unpadded_rgb8_is_a_view_of_the_message_data():
    rows = random_rows(1, 3, 2, 3)
    msg = make_image('rgb8', rows, 3)
    rgb = image_to_rgb(msg)
    assert np.shares_memory(rgb, np.frombuffer(msg.data, dtype=np.uint8))
    padded = image_to_rgb(make_image('rgb8', rows, 3, pad=2))
    np.testing.assert_array_equal(rgb, padded)


# -- bad input -------------------------------------------------------------------------------------


@pytest.mark.parametrize('encoding', ['bayer_rggb8', '32FC1', 'bgr16', '16UC3', 'nv12', 'RGB8', ''])
def test_unsupported_encoding(encoding):
    msg = make_image(encoding, [b'\x00' * 12], 4)
    with pytest.raises(ImageConversionError) as err:
        image_to_rgb(msg)
    assert err.value.reason == 'unsupported-encoding'
    assert f"'{encoding}'" in str(err.value)
    assert isinstance(err.value, ValueError)


@pytest.mark.parametrize(
    ('encoding', 'width', 'step'),
    [
        ('rgb8', 4, 11),
        ('bgr8', 1, 2),
        ('rgba8', 2, 7),
        ('mono8', 5, 4),
        ('mono16', 3, 5),
        ('16UC1', 1, 1),
        ('yuv422', 4, 7),
        ('rgb8', 4, 0),
    ],
)
def test_step_smaller_than_a_row(encoding, width, step):
    with pytest.raises(ImageConversionError) as err:
        image_to_rgb(raw_image(encoding, width, 3, step, 1024))
    assert err.value.reason == 'bad-step'


@pytest.mark.parametrize(
    ('encoding', 'width', 'height', 'step', 'n_bytes'),
    [
        ('rgb8', 2, 3, 6, 17),  # one byte short of three tight rows
        ('rgb8', 2, 3, 8, 21),  # padded rows: the last row is one byte short
        ('mono8', 1, 1, 1, 0),  # no data at all
        ('bgra8', 3, 10, 12, 9 * 12),  # height claims a row the buffer does not have
        ('mono16', 4, 2, 8, 15),
        ('uyvy', 2, 4, 4, 12),
        ('yuyv', 4, 2, 10, 17),
    ],
)
def test_data_shorter_than_the_rows_it_claims(encoding, width, height, step, n_bytes):
    with pytest.raises(ImageConversionError) as err:
        image_to_rgb(raw_image(encoding, width, height, step, n_bytes))
    assert err.value.reason == 'short-data'


@pytest.mark.parametrize(('width', 'height', 'step'), [(0, 0, 0), (0, 4, 0), (4, 0, 12), (0, 4, 12)])
@pytest.mark.parametrize('encoding', ['rgb8', 'mono16', 'yuv422'])
def test_zero_size(encoding, width, height, step):
    with pytest.raises(ImageConversionError) as err:
        image_to_rgb(raw_image(encoding, width, height, step, 64))
    assert err.value.reason == 'empty-image'


@pytest.mark.parametrize('encoding', YUV_ENCODINGS)
@pytest.mark.parametrize(('width', 'step'), [(1, 2), (3, 6), (5, 12)])
def test_yuv422_odd_width(encoding, width, step):
    with pytest.raises(ImageConversionError) as err:
        image_to_rgb(raw_image(encoding, width, 2, step, 2 * step))
    assert err.value.reason == 'odd-width'


# -- compressed ------------------------------------------------------------------------------------


def encode(pixels: np.ndarray, fmt: str, **options) -> bytes:
    buf = io.BytesIO()
    PILImage.fromarray(pixels).save(buf, format=fmt, **options)
    return buf.getvalue()


def compressed(data: bytes, fmt: str) -> CompressedImage:
    msg = CompressedImage(format=fmt)
    msg.data = array.array('B', data)
    return msg


def gradient(width: int, height: int) -> np.ndarray:
    y, x = np.mgrid[0:height, 0:width]
    span = max(width + height - 2, 1)
    channels = [x * 255 // max(width - 1, 1), y * 255 // max(height - 1, 1), (x + y) * 255 // span]
    return np.stack(channels, -1).astype(np.uint8)


def noise(width: int, height: int, channels: int, seed: int = 0) -> np.ndarray:
    shape = (height, width, channels) if channels > 1 else (height, width)
    return np.random.default_rng(seed).integers(0, 256, size=shape, dtype=np.uint8)


@pytest.mark.parametrize('fmt', ['bgr8; jpeg compressed bgr8', 'jpeg', ''])
@pytest.mark.parametrize(('width', 'height'), [(23, 17), (1, 1), (64, 8)])
def test_jpeg_decodes_to_rgb(fmt, width, height):
    original = gradient(width, height)
    data = encode(original, 'JPEG', quality=95)
    rgb = compressed_to_rgb(compressed(data, fmt))
    assert_rgb_array(rgb, width, height)
    with PILImage.open(io.BytesIO(data)) as img:
        np.testing.assert_array_equal(rgb, np.asarray(img.convert('RGB')))
    assert np.abs(rgb.astype(np.int32) - original).mean() < 4
    assert compressed_size(compressed(data, fmt)) == (width, height)


@pytest.mark.parametrize('fmt', ['png', 'rgb8; png compressed rgb8', 'PNG'])
@pytest.mark.parametrize(('width', 'height'), [(13, 9), (1, 1), (2, 31)])
def test_png_is_pixel_exact(fmt, width, height):
    original = noise(width, height, 3, seed=width * height)
    data = encode(original, 'PNG')
    rgb = compressed_to_rgb(compressed(data, fmt))
    assert_rgb_array(rgb, width, height)
    np.testing.assert_array_equal(rgb, original)
    assert compressed_size(compressed(data, fmt)) == (width, height)


def test_png_with_alpha_drops_alpha():
    original = noise(5, 4, 4)
    rgb = compressed_to_rgb(compressed(encode(original, 'PNG'), 'png'))
    np.testing.assert_array_equal(rgb, original[:, :, :3])


def test_grey_png_becomes_three_equal_channels():
    original = noise(6, 3, 1)
    rgb = compressed_to_rgb(compressed(encode(original, 'PNG'), 'png'))
    np.testing.assert_array_equal(rgb, np.repeat(original[:, :, None], 3, axis=2))


@pytest.mark.parametrize('fmt', ['mono16; png compressed ', '16UC1; png compressed ', 'png'])
def test_sixteen_bit_png_is_scaled_like_raw_mono16(fmt):
    # What compressed_image_transport sends for a mono16/16UC1 image: a 16-bit grey PNG.
    width, height = 7, 3
    values = np.random.default_rng(5).integers(0, 65536, size=(height, width), dtype=np.uint16)
    values[0, :4] = [0, 255, 256, 65535]
    rgb = compressed_to_rgb(compressed(encode(values, 'PNG'), fmt))
    assert_rgb_array(rgb, width, height)
    expected = [[[int(v) // 256] * 3 for v in row] for row in values]
    assert rgb.tolist() == expected
    assert rgb[0, :4, 0].tolist() == [0, 0, 1, 255]
    raw = image_to_rgb(make_image('mono16', [row.astype('<u2').tobytes() for row in values], width))
    np.testing.assert_array_equal(rgb, raw)


def jpeg_bytes() -> bytes:
    return encode(gradient(32, 32), 'JPEG', quality=90)


@pytest.mark.parametrize(
    'data',
    [
        b'\xff\xd8\xff\xe0 this is not a jpeg at all',
        b'not an image',
        b'',
        b'\xff' * 64,
    ],
)
def test_corrupt_jpeg_is_decode_failed(data):
    with pytest.raises(ImageConversionError) as err:
        compressed_to_rgb(compressed(data, 'bgr8; jpeg compressed bgr8'))
    assert err.value.reason == 'decode-failed'
    with pytest.raises(ImageConversionError) as err:
        compressed_size(compressed(data, 'jpeg'))
    assert err.value.reason == 'decode-failed'


def test_truncated_jpeg_is_decode_failed():
    data = jpeg_bytes()
    with pytest.raises(ImageConversionError) as err:
        compressed_to_rgb(compressed(data[: len(data) // 2], 'jpeg'))
    assert err.value.reason == 'decode-failed'


def test_corrupt_png_is_decode_failed():
    data = bytearray(encode(noise(8, 8, 3), 'PNG'))
    data[40:60] = b'\x00' * 20  # inside the IDAT chunk: its CRC no longer matches
    with pytest.raises(ImageConversionError) as err:
        compressed_to_rgb(compressed(bytes(data), 'png'))
    assert err.value.reason == 'decode-failed'


@pytest.mark.parametrize(
    ('fmt', 'expected'),
    [
        ('bgr8; jpeg compressed bgr8', 'jpeg'),
        ('rgb8; jpeg compressed rgb8', 'jpeg'),
        ('jpeg', 'jpeg'),
        ('JPEG', 'jpeg'),
        ('jpg', 'jpeg'),
        ('', 'jpeg'),
        ('   ', 'jpeg'),
        ('png', 'png'),
        ('PNG', 'png'),
        ('rgb8; png compressed rgb8', 'png'),
        ('compressedDepth png', None),
        ('16UC1; compressedDepth png', None),
        ('32FC1; compressedDepth', None),
        ('tiff', None),
        ('bmp', None),
    ],
)
def test_compressed_format(fmt, expected):
    assert compressed_format(CompressedImage(format=fmt)) == expected


@pytest.mark.parametrize('fmt', ['compressedDepth png', 'tiff'])
def test_compressed_to_rgb_refuses_other_formats(fmt):
    data = encode(noise(4, 4, 3), 'PNG')  # decodable bytes: the format string alone decides
    with pytest.raises(ImageConversionError) as err:
        compressed_to_rgb(compressed(data, fmt))
    assert err.value.reason == 'unsupported-encoding'
    assert fmt in str(err.value)


# -- rgb_to_image ----------------------------------------------------------------------------------


@pytest.mark.parametrize('kind', ['bytes', 'bytearray', 'ndarray', 'memoryview'])
@pytest.mark.parametrize(('width', 'height'), [(1, 1), (5, 3), (16, 9)])
def test_rgb_to_image_round_trip(kind, width, height):
    original = noise(width, height, 3, seed=width + height)
    data = {
        'bytes': original.tobytes(),
        'bytearray': bytearray(original.tobytes()),
        'ndarray': original,
        'memoryview': memoryview(original.tobytes()),
    }[kind]
    header = Header(stamp=Time(sec=12, nanosec=345), frame_id='wrist')
    msg = rgb_to_image(data, width, height, header)
    assert isinstance(msg, Image)
    assert (msg.width, msg.height, msg.step) == (width, height, width * 3)
    assert msg.encoding == 'rgb8'
    assert msg.is_bigendian == 0
    assert msg.header.frame_id == 'wrist'
    assert (msg.header.stamp.sec, msg.header.stamp.nanosec) == (12, 345)
    assert bytes(msg.data) == original.tobytes()
    np.testing.assert_array_equal(image_to_rgb(msg), original)


def test_rgb_to_image_copies_its_input():
    source = bytearray(noise(2, 2, 3).tobytes())
    msg = rgb_to_image(source, 2, 2, Header())
    before = bytes(msg.data)
    source[:] = b'\x00' * len(source)
    assert bytes(msg.data) == before
