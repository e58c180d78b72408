"""SDK video: the robot's video sources, the operator's video streams (the one place using SDK internals).

A new ``rtc.VideoSource`` sends black placeholder frames, 10 per second and without any frame
metadata, until its first capture (the SDK's native source keeps a new track alive that way). A
robot whose camera is silent would send only those, and an operator would see a track of frames
without the ``user_timestamp`` trailer: :func:`new_video_source` ends them with one capture
before the track is published (a capture with no encoder attached goes nowhere), so a silent
camera is a silent track, which both ends report as such. Public API only.

Everything else in portal_bridge uses the SDK's public API only. What the public
``rtc.VideoStream`` cannot do: choose the depth of the SDK's *native* frame queue (the Rust side,
between libwebrtc's decoder and the FFI callback into Python). It defaults to 1 frame, and
delivering each frame to Python needs the GIL, so a few milliseconds of Python work on the
operator overflow it and frames are lost before Python ever sees them (logged by the SDK as
"native video stream queue overflow"). The FFI request has a ``queue_size_frames`` field that
``rtc.VideoStream`` does not expose; :func:`open_video_stream` sets it.

Why this is still needed and what it relies on is written down in docs/wire_notes.md ("Public
SDK API only"); test_sdk_contract.py checks every internal used here and fails, naming the SDK
version, when a release changes one of them. Should the internals be missing or changed at run
time, the stream falls back to the public ``rtc.VideoStream`` (the SDK's default native queue)
and says so once, as a warning.
"""

from __future__ import annotations

import inspect
import logging
import threading
from typing import Any, Optional

from livekit import rtc

__all__ = ['NATIVE_VIDEO_QUEUE', 'internals_problem', 'new_video_source', 'open_video_stream']

NATIVE_VIDEO_QUEUE = 8  # decoded frames the SDK may hold while Python is busy (its default is 1)

_QUIET = rtc.VideoFrame(16, 16, rtc.VideoBufferType.RGB24, bytes(16 * 16 * 3))  # ends the placeholders

log = logging.getLogger(__name__)
_lock = threading.Lock()
_checked = False
_problem: Optional[str] = None
_warned = False


def new_video_source(width: int, height: int) -> rtc.VideoSource:
    """A video source that sends nothing until the first real capture (call before publishing)."""
    source = rtc.VideoSource(width, height)
    source.capture_frame(_QUIET)
    return source


def _check() -> Optional[str]:
    """Why the internals cannot be used (None: they can). Lazy imports, checked once."""
    try:
        from livekit.rtc._ffi_client import FfiClient
        from livekit.rtc._proto import ffi_pb2, video_frame_pb2
    except ImportError as exc:
        return f'SDK internals not importable ({exc})'
    if not callable(getattr(FfiClient, 'request', None)):
        return 'livekit.rtc._ffi_client.FfiClient has no request()'
    fields = ffi_pb2.FfiRequest.DESCRIPTOR.fields_by_name
    if 'new_video_stream' not in fields:
        return 'FfiRequest has no new_video_stream'
    wanted = {'track_handle', 'type', 'format', 'normalize_stride', 'queue_size_frames'}
    missing = wanted - set(fields['new_video_stream'].message_type.fields_by_name)
    if missing:
        return f'NewVideoStreamRequest lacks {sorted(missing)}'
    if not hasattr(video_frame_pb2.VideoStreamType, 'VIDEO_STREAM_NATIVE'):
        return 'VideoStreamType has no VIDEO_STREAM_NATIVE'
    create = getattr(rtc.VideoStream, '_create_owned_stream', None)
    if create is None:
        return 'rtc.VideoStream has no _create_owned_stream'
    if list(inspect.signature(create).parameters) != ['self']:
        return f'rtc.VideoStream._create_owned_stream{inspect.signature(create)} is not (self)'
    return None


def internals_problem() -> Optional[str]:
    """None if the internals :func:`open_video_stream` needs are as expected, else what is not."""
    global _checked, _problem
    with _lock:
        if not _checked:
            try:
                _problem = _check()
            except Exception as exc:  # an SDK change we did not foresee: never fatal here
                _problem = f'checking the SDK internals failed: {exc!r}'
            _checked = True
        return _problem


def _fall_back(why: str) -> None:
    global _warned
    with _lock:
        if _warned:
            return
        _warned = True
    log.warning(
        '[sdk] livekit %s: %s; video streams use the SDK default native queue (frames may be lost under '
        'load, logged by the SDK as "native video stream queue overflow")',
        rtc.__version__,
        why,
    )


class _DeepVideoStream(rtc.VideoStream):
    """``rtc.VideoStream`` whose native queue holds ``native_queue`` frames.

    Overrides the SDK's ``_create_owned_stream`` (the request ``rtc.VideoStream.__init__`` sends)
    with the same request plus ``queue_size_frames``.
    """

    def __init__(self, track: rtc.Track, native_queue: int, **kwargs: Any) -> None:
        self._native_queue = native_queue
        self._native_queue_set = False
        super().__init__(track, **kwargs)
        if not self._native_queue_set:
            _fall_back('rtc.VideoStream no longer calls _create_owned_stream')

    def _create_owned_stream(self) -> Any:
        try:
            from livekit.rtc._ffi_client import FfiClient
            from livekit.rtc._proto import ffi_pb2, video_frame_pb2

            req = ffi_pb2.FfiRequest()
            new = req.new_video_stream
            new.track_handle = self._track._ffi_handle.handle  # type: ignore[union-attr]
            new.type = video_frame_pb2.VideoStreamType.VIDEO_STREAM_NATIVE
            if self._format is not None:
                new.format = self._format
            new.normalize_stride = True
            new.queue_size_frames = self._native_queue
        except (ImportError, AttributeError, TypeError, ValueError) as exc:
            self._native_queue_set = True  # reported here, not again by __init__
            _fall_back(f'building the video stream request failed ({exc!r})')
            return super()._create_owned_stream()
        stream = FfiClient.instance.request(req).new_video_stream.stream
        self._native_queue_set = True
        return stream


def open_video_stream(track: rtc.Track, *, format: Any = None, native_queue: Optional[int] = -1) -> rtc.VideoStream:
    """An ``rtc.VideoStream`` of ``track`` with an unbounded Python-side queue (``capacity=0``).

    The caller must drain it promptly into a bounded queue of its own that counts what it drops:
    the SDK's Python-side queue, when bounded, drops the oldest frame silently. ``native_queue``
    is the depth of the SDK's native frame queue (-1: :data:`NATIVE_VIDEO_QUEUE`; None: the SDK's
    default, public API only).
    """
    if native_queue == -1:
        native_queue = NATIVE_VIDEO_QUEUE
    if native_queue is not None:
        problem = internals_problem()
        if problem is None:
            return _DeepVideoStream(track, native_queue, format=format, capacity=0)
        _fall_back(problem)
    return rtc.VideoStream(track, format=format, capacity=0)
