"""Images read from CDR bytes equal what rclpy deserializes, and bad buffers are refused cleanly."""

import struct

from builtin_interfaces.msg import Time
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
import numpy as np
import pytest
from rclpy.serialization import deserialize_message, serialize_message
from sensor_msgs.msg import CompressedImage, Image
from std_msgs.msg import Header

from portal_bridge.ros.cdr_images import CdrError, read_compressed_image, read_image
from portal_bridge.ros.images import ImageConversionError, compressed_to_rgb, image_to_rgb

ENCODINGS = ['rgb8', 'bgr8', 'rgba8', 'bgra8', 'mono8', 'mono16', '16UC1', 'yuv422', 'yuv422_yuy2', '8UC3', 'rgb16']
BPP = {'rgb8': 3, 'bgr8': 3, '8UC3': 3, 'rgba8': 4, 'bgra8': 4, 'mono8': 1, 'mono16': 2, '16UC1': 2,
       'yuv422': 2, 'yuv422_yuy2': 2, 'rgb16': 6}  # fmt: skip

frame_ids = st.text(max_size=12)  # any unicode, including the empty string


@st.composite
def images(draw):
    enc = draw(st.sampled_from(ENCODINGS))
    h = draw(st.integers(1, 9))
    w = draw(st.integers(1, 9)) * (2 if enc.startswith('yuv') else 1)
    step = w * BPP[enc] + draw(st.integers(0, 5))  # padded rows
    data = draw(st.binary(min_size=step * h, max_size=step * h))
    stamp = Time(sec=draw(st.integers(-(2**31), 2**31 - 1)), nanosec=draw(st.integers(0, 999_999_999)))
    return Image(header=Header(stamp=stamp, frame_id=draw(frame_ids)), height=h, width=w, encoding=enc,
                 is_bigendian=draw(st.integers(0, 1)), step=step, data=data)  # fmt: skip


def same_fields(raw, msg) -> None:
    assert (raw.header.stamp.sec, raw.header.stamp.nanosec) == (msg.header.stamp.sec, msg.header.stamp.nanosec)
    assert raw.header.frame_id == msg.header.frame_id
    assert bytes(raw.data) == bytes(msg.data)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(images())
def test_every_image_field_equals_rclpys_and_the_rgb_is_identical(msg):
    wire = serialize_message(msg)
    msg = deserialize_message(wire, Image)  # the reference: what a subscription without raw=True gets
    raw = read_image(wire)
    same_fields(raw, msg)
    assert (raw.height, raw.width, raw.encoding, raw.is_bigendian, raw.step) == (
        msg.height, msg.width, msg.encoding, msg.is_bigendian, msg.step)  # fmt: skip
    try:
        expected = image_to_rgb(msg)
    except ImageConversionError as exc:  # the same refusal, for the same reason
        with pytest.raises(ImageConversionError) as got:
            image_to_rgb(raw)
        assert got.value.reason == exc.reason
        return
    np.testing.assert_array_equal(image_to_rgb(raw), expected)


@settings(max_examples=100, deadline=None)
@given(frame_ids, st.text(max_size=30), st.binary(max_size=64))
def test_compressed_image_fields_equal_rclpys(frame_id, fmt, data):
    msg = CompressedImage(header=Header(stamp=Time(sec=3, nanosec=4), frame_id=frame_id), format=fmt, data=data)
    wire = serialize_message(msg)
    msg = deserialize_message(wire, CompressedImage)
    raw = read_compressed_image(wire)
    same_fields(raw, msg)
    assert raw.format == msg.format


def test_a_real_jpeg_decodes_the_same_either_way():
    from io import BytesIO

    from PIL import Image as PILImage

    rng = np.random.default_rng(3)
    buf = BytesIO()
    PILImage.fromarray(rng.integers(0, 255, (24, 32, 3), dtype=np.uint8)).save(buf, 'JPEG', quality=90)
    msg = CompressedImage(format='rgb8; jpeg compressed bgr8', data=buf.getvalue())
    np.testing.assert_array_equal(
        compressed_to_rgb(read_compressed_image(serialize_message(msg))), compressed_to_rgb(msg)
    )


def test_rgb8_pixels_are_a_view_of_the_buffer_not_a_copy():
    msg = Image(height=2, width=2, encoding='rgb8', step=6, data=bytes(range(12)))
    buf = bytearray(serialize_message(msg))
    raw = read_image(buf)
    rgb = image_to_rgb(raw)
    assert np.shares_memory(rgb, np.frombuffer(buf, np.uint8))


def big_endian(msg: Image) -> bytes:
    """The same image as a big-endian writer serializes it (built by hand: rclpy writes host order)."""

    def s(text: str) -> bytes:
        b = text.encode() + b'\0'
        return struct.pack('>I', len(b)) + b

    out = bytearray(b'\x00\x00\x00\x00')
    out += struct.pack('>iI', msg.header.stamp.sec, msg.header.stamp.nanosec) + s(msg.header.frame_id)
    out += b'\0' * (-(len(out) - 4) % 4)
    out += struct.pack('>II', msg.height, msg.width) + s(msg.encoding)
    out += bytes([msg.is_bigendian])
    out += b'\0' * (-(len(out) - 4) % 4)
    out += struct.pack('>II', msg.step, len(msg.data)) + bytes(msg.data)
    return bytes(out)


def test_a_big_endian_buffer_reads_the_same():
    msg = Image(header=Header(stamp=Time(sec=-5, nanosec=123), frame_id='cam_é'), height=1, width=3,
                encoding='bgr8', is_bigendian=1, step=10, data=bytes(range(10)))  # fmt: skip
    raw = read_image(big_endian(msg))
    same_fields(raw, msg)
    assert (raw.height, raw.width, raw.encoding, raw.is_bigendian, raw.step) == (1, 3, 'bgr8', 1, 10)


def test_every_truncation_is_a_counted_refusal_never_a_crash():
    msg = Image(header=Header(frame_id='camera'), height=2, width=2, encoding='rgb8', step=6, data=bytes(12))
    full = serialize_message(msg)
    for n in range(len(full)):
        with pytest.raises(CdrError) as err:
            read_image(full[:n])
        assert err.value.reason == 'bad-cdr'


def test_lying_lengths_are_refused():
    msg = Image(header=Header(frame_id='camera'), height=2, width=2, encoding='rgb8', step=6, data=bytes(12))
    full = bytearray(serialize_message(msg))
    data_len_at = len(full) - 12 - 4
    lying = bytearray(full)
    lying[data_len_at : data_len_at + 4] = struct.pack('<I', 10**9)  # a data length past the end
    with pytest.raises(CdrError, match='data needs'):
        read_image(lying)
    lying = bytearray(full)
    lying[12:16] = struct.pack('<I', 2**31)  # a frame_id length past the end
    with pytest.raises(CdrError, match='frame_id'):
        read_image(lying)
    lying = bytearray(full)
    lying[16 + 6] = ord('x')  # frame_id 'camera' without its terminator
    with pytest.raises(CdrError, match='NUL'):
        read_image(lying)


@pytest.mark.parametrize('head', [b'\x00\x02\x00\x00', b'\x01\x01\x00\x00', b'\x00\x0a\x00\x00'])
def test_unknown_encapsulations_are_refused(head):
    with pytest.raises(CdrError, match='encapsulation 0x'):
        read_image(head + bytes(40))


@pytest.mark.parametrize('buf', [b'', b'\x00', b'\x00\x01\x00'])
def test_a_buffer_shorter_than_the_encapsulation_is_refused(buf):
    with pytest.raises(CdrError, match='encapsulation header'):
        read_image(buf)


def test_invalid_utf8_in_a_string_is_refused():
    msg = Image(header=Header(frame_id='ab'), height=1, width=1, encoding='mono8', step=1, data=b'\x01')
    buf = bytearray(serialize_message(msg))
    buf[16] = 0xFF  # first byte of frame_id
    with pytest.raises(CdrError, match='UTF-8'):
        read_image(buf)
