"""The codec registry: every codec's entry is complete and consistent with the SDK and the wire."""

from __future__ import annotations

from livekit import rtc
import numpy as np
import pytest

from portal_bridge.portal import DType, VideoCodec, WireContract
from portal_bridge.portal.codecs import CODECS, CodecDataError, codec_by_wire_id
from portal_bridge.portal.wire.frame_video import decode_payload, encode_frame, parse_header

FRAME = [c for c in CODECS if not c.webrtc]
WEBRTC = [c for c in CODECS if c.webrtc]


def test_enum_members_are_the_registry():
    assert [c.value for c in VideoCodec] == [c.name for c in CODECS]
    assert all(VideoCodec(c.name).spec is c for c in CODECS)


@pytest.mark.parametrize('codec', WEBRTC, ids=lambda c: c.name)
def test_webrtc_codec_names_an_sdk_codec_and_has_no_frame_video_parts(codec):
    assert isinstance(getattr(rtc.VideoCodec, codec.sdk_codec), int)
    assert codec.wire_id is None and codec.encode is None and codec.decode is None and codec.ros_format is None


@pytest.mark.parametrize('codec', FRAME, ids=lambda c: c.name)
def test_frame_codec_round_trips_through_the_header_by_its_wire_id(codec):
    rng = np.random.default_rng(5)
    rgb = np.repeat(np.linspace(0, 255, 33, dtype=np.uint8)[None, :, None], 17, 0).repeat(3, 2)
    rgb = np.clip(rgb.astype(int) + rng.integers(-2, 3, rgb.shape), 0, 255).astype(np.uint8)  # odd 33x17
    payload = encode_frame('cam', VideoCodec(codec.name), rgb, 33, 17, 123, quality=95)
    head = parse_header(payload)
    assert head.codec is VideoCodec(codec.name) and codec_by_wire_id(codec.wire_id) is head.codec
    out = np.frombuffer(decode_payload(head.codec, payload[head.payload_offset :], 33, 17), np.uint8).reshape(17, 33, 3)
    if codec.has_quality:  # lossy
        assert np.abs(out.astype(int) - rgb).mean() < 4
    else:
        assert np.array_equal(out, rgb)


@pytest.mark.parametrize('codec', FRAME, ids=lambda c: c.name)
def test_frame_codec_refuses_a_payload_of_the_wrong_size(codec):
    payload = codec.encode(np.zeros((4, 6, 3), np.uint8), 90)
    with pytest.raises(CodecDataError):
        codec.decode(payload, 6, 5)


def test_wire_ids_and_names_are_unique_and_aliases_parse():
    ids = [c.wire_id for c in FRAME]
    assert len(set(ids)) == len(ids) and all(0 <= i <= 255 for i in ids)
    assert codec_by_wire_id(200) is None
    for c in CODECS:
        for alias in (c.name, c.name.upper(), *c.aliases):
            assert VideoCodec.parse(alias) is VideoCodec(c.name)
    with pytest.raises(ValueError, match="unknown codec 'h263'"):
        VideoCodec.parse('h263')


def test_quality_is_written_and_checked_only_for_codecs_that_have_it():
    for c in CODECS:
        contract = WireContract().add_video('cam', VideoCodec(c.name), quality=50).add_state([('x', DType.F32)])
        text = contract.to_yaml()
        assert ('quality: 50' in text) == c.has_quality
        assert WireContract.from_yaml_str(text).video('cam').codec is VideoCodec(c.name)
