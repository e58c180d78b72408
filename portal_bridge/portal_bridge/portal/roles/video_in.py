"""The operator's video intake: WebRTC tracks and frame video, from the robot only, bounded.

Each WebRTC camera track is read from the SDK's stream into a drop-oldest ring and processed in
order; each frame-video track's byte streams are parsed (header, codec check) into a ring and
decoded in arrival order (PNG/MJPEG on a small thread pool, off the event loop). Frames from
anyone but the robot are counted and dropped; frames without a ``user_timestamp`` cannot be
synchronized and are counted ('no-timestamp'). Decoded frames go to the operator's sync buffer.
"""

from __future__ import annotations

import asyncio
from collections import deque
from concurrent.futures import ThreadPoolExecutor
import time
from typing import TYPE_CHECKING, Any, Optional

from livekit import rtc

from ..frames import VideoFrame
from ..room.rtt import now_us
from ..wire.frame_video import FrameVideoError, decode_payload, parse_header
from .sdk_video import open_video_stream

if TYPE_CHECKING:
    from .operator import Operator

__all__ = ['VideoReceiver', 'RECEIVE_RING', 'WEBRTC_RING']

# Frame queues on the receive path; beyond its depth each drops the oldest frame and counts it
# ('recv-overflow'). A WebRTC track's frames come from an rtc.VideoStream whose own queue is
# unbounded (it drops silently when bounded); our reader drains it at once into WEBRTC_RING, the
# one bound between the SDK and processing. A retransmission stall on a lossy link holds every
# later frame back and then releases them at once (5-10 at 30 fps), so it takes a whole burst;
# under sustained overload it is full, and each slot can be a 2.7 MB 720p frame. Frame video comes
# in bursts too: what the robot's SDK queued while its data channel opened arrives at once when
# the session starts (5 frames of the demo's wrist camera within 70 ms, each stream finishing in
# the same loop turn, before decoding can take one); 8 holds such a burst.
RECEIVE_RING = 8  # frame-video payloads between the data stream and decoding (about 270 ms at 30 fps)
WEBRTC_RING = 16  # decoded WebRTC frames between the SDK's stream and processing (about 0.5 s)
_RECV_OVERFLOW_LOG_S = 5.0
_UNTIMED_WARN_AFTER = 30  # about 3 s of a LiveKit video source's placeholder frames (10/s)


class _FrameRing:
    """Drop-oldest ring between a receive task and its processing task."""

    def __init__(self, capacity: int) -> None:
        self.items: deque = deque()
        self.capacity = capacity
        self.event = asyncio.Event()

    def put(self, item: Any) -> bool:
        """Append; False if the oldest item had to be dropped to make room."""
        dropped = len(self.items) >= self.capacity
        if dropped:
            self.items.popleft()
        self.items.append(item)
        self.event.set()
        return not dropped

    async def get(self) -> Any:
        while not self.items:
            self.event.clear()
            await self.event.wait()
        return self.items.popleft()


class VideoReceiver:
    """Video intake of one operator (it hands finished frames back to the operator)."""

    def __init__(self, op: Operator) -> None:
        self._op = op
        self._webrtc_names = {v.name for v in op.contract.webrtc_videos}
        self._frame_rings: dict[str, _FrameRing] = {}
        self._consumers: dict[tuple[str, str], asyncio.Task] = {}
        self._decoder: Optional[ThreadPoolExecutor] = None
        self._overflow_logged_at: dict[str, float] = {}
        self._frame_tracks_heard: set[str] = set()  # frame-video tracks whose first frame was logged

    def start(self) -> None:
        """Start decoding frame video (on joining a room)."""
        op = self._op
        if op.contract.frame_videos:
            self._decoder = ThreadPoolExecutor(max_workers=2, thread_name_prefix='portal-decode')
        for spec in op.contract.frame_videos:
            ring = _FrameRing(RECEIVE_RING)
            self._frame_rings[spec.name] = ring
            op._tasks.spawn(self._process_frame_video(spec.name, ring), f'frame-video-{spec.name}')

    def stop(self) -> None:
        self._frame_rings.clear()
        self._frame_tracks_heard.clear()
        if self._decoder is not None:
            self._decoder.shutdown(wait=False, cancel_futures=True)
            self._decoder = None

    # -- WebRTC video --------------------------------------------------------------------
    def on_track_subscribed(self, track: rtc.Track, participant: rtc.RemoteParticipant) -> None:
        op = self._op
        if track.kind != rtc.TrackKind.KIND_VIDEO or track.name not in self._webrtc_names:
            return
        key = (participant.identity, track.sid)
        if key in self._consumers:
            return
        op.log.info("[%s] subscribed to video track '%s' of '%s'", op.label, track.name, participant.identity)
        task = op._tasks.spawn(self._consume_video(track, track.name, participant.identity), f'video-{track.name}')
        self._consumers[key] = task
        task.add_done_callback(lambda _t: self._consumers.pop(key, None))

    async def _consume_video(self, track: rtc.Track, name: str, publisher: str) -> None:
        op = self._op
        ring = _FrameRing(WEBRTC_RING)
        processor = op._tasks.spawn(self._process_webrtc(name, ring), f'video-process-{name}')
        # The stream's own queue is unbounded; this loop drains it without yielding (its get does
        # not suspend while frames wait), so frames wait and are dropped, counted, only in `ring`.
        stream = open_video_stream(track, format=rtc.VideoBufferType.RGB24)
        m = op._metrics
        untimed = 0
        timed = False
        try:
            async for event in stream:
                if publisher != op._roster.robot_identity:
                    op._from_robot(publisher, f"video track '{name}'")
                    continue
                meta = event.metadata
                if meta is None or not meta.HasField('user_timestamp'):
                    m.drop('no-timestamp')
                    untimed += 1  # in a row: one at a track's end is not a publisher's setting
                    self._untimed(name, publisher, untimed, timed)
                    continue
                timed, untimed = True, 0
                f = event.frame
                frame = VideoFrame(f.width, f.height, f.data, meta.user_timestamp)
                m.frame_received(name, frame.timestamp_us, now_us())
                op._latest_frames[name] = frame
                if not ring.put(frame):
                    self._recv_overflow(name)
        finally:
            processor.cancel()
            try:
                await stream.aclose()
            except Exception:
                pass

    def _untimed(self, name: str, publisher: str, count: int, timed: bool) -> None:
        """Say once why a track's frames carry no timestamp, as far as the operator can tell."""
        op = self._op
        if count != _UNTIMED_WARN_AFTER:
            return
        if timed:  # after frames with one: the publisher dropped the trailer
            op._log_once(
                f'no-ts-{name}',
                "[bad-payload] frames on track '%s' of '%s' stopped carrying the user_timestamp trailer; "
                'dropped (the publisher must keep the user_timestamp frame metadata enabled)',
                name,
                publisher,
            )
        else:
            # A LiveKit video source sends untimed placeholder frames until its first capture, so
            # frames that never had a timestamp mostly mean a camera that has sent nothing yet.
            op._log_once(
                f'no-ts-{name}',
                "[no-timestamp] track '%s' of '%s': %d frames, none with a timestamp: the robot has not "
                'captured a camera frame on it (placeholder frames until then); check its camera input '
                "(the robot's /diagnostics, inputs)",
                name,
                publisher,
                count,
            )

    def _recv_overflow(self, name: str) -> None:
        op = self._op
        op._metrics.drop('recv-overflow')
        now = time.monotonic()
        if now - self._overflow_logged_at.get(name, -1e9) >= _RECV_OVERFLOW_LOG_S:
            self._overflow_logged_at[name] = now
            op.log.warning("[recv-overflow] processing of track '%s' falls behind; dropped the oldest frame", name)

    async def _process_webrtc(self, name: str, ring: _FrameRing) -> None:
        op = self._op
        while True:
            op._frame_ready(name, await ring.get())

    # -- frame video ---------------------------------------------------------------------
    def on_frame_stream(self, payload: bytes, sender: str) -> None:
        op = self._op
        if not op._from_robot(sender, 'frame video'):
            return
        try:
            head = parse_header(payload)
        except FrameVideoError as exc:
            op._count_packet_error(exc, 'frame video', sender)
            return
        spec = op.contract.video(head.name)
        ring = self._frame_rings.get(head.name)
        if spec is None or ring is None:
            op._metrics.drop('unknown-track')
            op._log_once(
                f'unknown-track-{head.name}',
                "[unknown-track] frame for undeclared track '%s' dropped",
                head.name,
            )
            return
        if head.codec is not spec.codec:
            op._metrics.drop('codec-mismatch')
            op._log_once(
                f'codec-{head.name}',
                "[codec-mismatch] track '%s' declared %s, frame is %s; dropped",
                head.name,
                spec.codec.name,
                head.codec.name,
            )
            return
        if head.name not in self._frame_tracks_heard:
            # A frame-video track has no LiveKit subscription to log; its first frame is the news.
            self._frame_tracks_heard.add(head.name)
            op.log.info(
                "[%s] receiving frame-video track '%s' of '%s' (%s, %dx%d)",
                op.label, head.name, sender, head.codec.name, head.width, head.height,
            )  # fmt: skip
        if not ring.put((head, payload)):
            self._recv_overflow(head.name)

    async def _process_frame_video(self, name: str, ring: _FrameRing) -> None:
        """Decode one track's frames in arrival order (PNG/MJPEG off the event loop)."""
        op = self._op
        loop = asyncio.get_running_loop()
        while True:
            head, payload = await ring.get()
            body = memoryview(payload)[head.payload_offset :]
            try:
                if head.codec.spec.cheap_decode or self._decoder is None:
                    rgb = decode_payload(head.codec, body, head.width, head.height)
                else:
                    rgb = await loop.run_in_executor(
                        self._decoder, decode_payload, head.codec, bytes(body), head.width, head.height
                    )
            except FrameVideoError as exc:
                op._count_packet_error(exc, f"frame on track '{name}'", op._roster.robot_identity or '')
                continue
            frame = VideoFrame(head.width, head.height, rgb, head.timestamp_us)
            op._metrics.frame_received(name, frame.timestamp_us, now_us(), nbytes=len(payload))
            op._latest_frames[name] = frame
            op._frame_ready(name, frame)
