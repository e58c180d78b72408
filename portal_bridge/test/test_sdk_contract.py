"""The LiveKit SDK internals portal_bridge relies on, checked so that an SDK release that changes
them fails here, loudly and by name, instead of silently costing frames.

Only ``portal/sdk_video.py`` touches SDK internals (why: docs/wire_notes.md, "Public SDK API
only"): it sends the SDK's own video stream request with ``queue_size_frames`` set. Every other
file uses the public API; the last test keeps it so.
"""

import asyncio
import inspect
import logging
from pathlib import Path
import re

from livekit import rtc
import numpy as np
import pytest
from support.portal_peers import Peers, fixture_contract
from support.waiting import async_test, wait_for

from portal_bridge.portal import VideoCodec, now_us
from portal_bridge.portal.roles import sdk_video

SDK = f'livekit {rtc.__version__}'
PACKAGE = Path(__file__).resolve().parents[1] / 'portal_bridge'


def fail(what: str) -> None:
    pytest.fail(
        f'{SDK} changed an SDK internal that portal_bridge/portal/sdk_video.py relies on: {what}. '
        'Adapt sdk_video.py (or drop it if the SDK now exposes the native queue depth publicly), '
        'then this test and docs/wire_notes.md ("Public SDK API only").',
        pytrace=False,
    )


def test_internal_modules_and_names():
    try:
        from livekit.rtc._ffi_client import FfiClient, FfiHandle
        from livekit.rtc._proto import ffi_pb2, video_frame_pb2
    except ImportError as exc:
        fail(f'module or name gone ({exc})')
    if not callable(getattr(FfiClient, 'request', None)):
        fail('livekit.rtc._ffi_client.FfiClient.request is gone')
    if not hasattr(video_frame_pb2.VideoStreamType, 'VIDEO_STREAM_NATIVE'):
        fail('livekit.rtc._proto.video_frame_pb2.VideoStreamType.VIDEO_STREAM_NATIVE is gone')
    if FfiHandle(0).handle != 0:  # 0 is the SDK's invalid handle: never dropped
        fail('FfiHandle(id).handle no longer returns the id')
    assert ffi_pb2  # imported above: used by the next test


def test_new_video_stream_request_fields():
    from google.protobuf.descriptor import FieldDescriptor as F
    from livekit.rtc._proto import ffi_pb2

    request = ffi_pb2.FfiRequest.DESCRIPTOR.fields_by_name.get('new_video_stream')
    if request is None:
        fail('FfiRequest.new_video_stream is gone')
    fields = request.message_type.fields_by_name
    wanted = {
        'track_handle': F.TYPE_UINT64,
        'type': F.TYPE_ENUM,
        'format': F.TYPE_ENUM,
        'normalize_stride': F.TYPE_BOOL,
        'queue_size_frames': F.TYPE_UINT32,
    }
    for name, kind in wanted.items():
        if name not in fields:
            fail(f'FfiRequest.new_video_stream.{name} is gone')
        if fields[name].type != kind:
            fail(f'FfiRequest.new_video_stream.{name} changed type ({fields[name].type}, expected {kind})')
    response = ffi_pb2.FfiResponse.DESCRIPTOR.fields_by_name.get('new_video_stream')
    if response is None or 'stream' not in response.message_type.fields_by_name:
        fail('FfiResponse.new_video_stream.stream is gone')
    # the one field sdk_video adds: what its doc says about the default (1 frame) and 0 (unbounded)
    req = ffi_pb2.FfiRequest()
    req.new_video_stream.queue_size_frames = sdk_video.NATIVE_VIDEO_QUEUE
    if req.new_video_stream.queue_size_frames != sdk_video.NATIVE_VIDEO_QUEUE:
        fail('FfiRequest.new_video_stream.queue_size_frames does not keep its value')


def test_video_stream_builds_its_request_in_create_owned_stream():
    create = getattr(rtc.VideoStream, '_create_owned_stream', None)
    if create is None:
        fail('rtc.VideoStream._create_owned_stream is gone')
    if list(inspect.signature(create).parameters) != ['self']:
        fail(f'rtc.VideoStream._create_owned_stream{inspect.signature(create)} is no longer (self)')
    params = inspect.signature(rtc.VideoStream.__init__).parameters
    for name in ('track', 'loop', 'capacity', 'format'):
        if name not in params:
            fail(f'rtc.VideoStream.__init__ has no {name!r} parameter')

    # __init__ must call it (our override is the request sent), with _track and _format set
    seen = {}

    class Probe(rtc.VideoStream):
        def _create_owned_stream(self):
            seen['track'] = getattr(self, '_track', None)
            seen['format'] = getattr(self, '_format', None)
            raise LookupError('probe')

    async def construct():
        with pytest.raises(LookupError, match='probe'):
            Probe('the track', format=rtc.VideoBufferType.RGB24, capacity=0)

    asyncio.run(construct())
    if seen.get('track') != 'the track' or seen.get('format') != rtc.VideoBufferType.RGB24:
        fail(f'rtc.VideoStream.__init__ no longer calls _create_owned_stream with _track and _format set ({seen})')
    # ... and Track keeps its native handle where the request reads it
    if '_ffi_handle' not in inspect.getsource(rtc.Track.__init__):
        fail('rtc.Track no longer keeps its handle in _ffi_handle')


def test_sdk_video_finds_its_internals():
    assert sdk_video.internals_problem() is None, f'{SDK}: {sdk_video.internals_problem()}'


def test_without_the_internals_streams_fall_back_to_the_public_class_and_say_so_once(monkeypatch, caplog):
    made = []

    class PublicStream:
        def __init__(self, track, **kwargs):
            made.append((track, kwargs))

    monkeypatch.setattr(sdk_video, '_checked', True)
    monkeypatch.setattr(sdk_video, '_problem', 'FfiRequest has no new_video_stream')
    monkeypatch.setattr(sdk_video, '_warned', False)
    monkeypatch.setattr(sdk_video.rtc, 'VideoStream', PublicStream)
    with caplog.at_level(logging.WARNING, logger='portal_bridge.portal.roles.sdk_video'):
        a = sdk_video.open_video_stream('t1', format=rtc.VideoBufferType.RGB24)
        b = sdk_video.open_video_stream('t2')
    assert isinstance(a, PublicStream) and isinstance(b, PublicStream)
    assert made == [
        ('t1', {'format': rtc.VideoBufferType.RGB24, 'capacity': 0}),
        ('t2', {'format': None, 'capacity': 0}),
    ]
    warnings = [r.getMessage() for r in caplog.records if r.name == 'portal_bridge.portal.roles.sdk_video']
    assert len(warnings) == 1 and 'FfiRequest has no new_video_stream' in warnings[0] and rtc.__version__ in warnings[0]


def test_no_other_file_imports_sdk_internals():
    pattern = re.compile(
        r'^\s*(from\s+livekit\.rtc\._\w*|import\s+livekit\.rtc\._|from\s+livekit\.rtc\s+import\s+_)', re.M
    )
    offenders = [
        str(p.relative_to(PACKAGE))
        for p in PACKAGE.rglob('*.py')
        if p.name != 'sdk_video.py' and pattern.search(p.read_text())
    ]
    assert offenders == [], f'import SDK internals only in portal/sdk_video.py: {offenders}'


@pytest.mark.livekit
@async_test()
async def test_the_deeper_native_queue_is_accepted_and_frames_flow(livekit_server, room_name, monkeypatch, caplog):
    from portal_bridge.portal.roles import video_in as operator_module

    streams = []

    def recording(track, **kwargs):
        stream = sdk_video.open_video_stream(track, **kwargs)
        streams.append(stream)
        return stream

    monkeypatch.setattr(operator_module, 'open_video_stream', recording)
    async with Peers(livekit_server, room_name) as peers:
        c = fixture_contract()
        c.add_video('front', VideoCodec.H264)
        robot = await peers.robot(c)
        op = await peers.operator(c)
        await wait_for(lambda: op.robot_identity() is not None)
        for i in range(150):
            robot.send_video_frame('front', np.full((64, 64, 3), i % 200, np.uint8), timestamp_us=now_us())
            await asyncio.sleep(1 / 30)
            if op.metrics().transport.frames_received.get('front', 0) >= 10:
                break
        assert op.metrics().transport.frames_received.get('front', 0) >= 10
    assert streams and all(type(s).__name__ == '_DeepVideoStream' for s in streams), streams
    assert all(s._native_queue_set for s in streams)
    assert not [r for r in caplog.records if r.name == 'portal_bridge.portal.roles.sdk_video'], caplog.text
