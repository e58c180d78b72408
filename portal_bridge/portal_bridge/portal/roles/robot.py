"""The Robot role: publishes cameras and state, accepts actions only from the active operator.

The robot owns the active-operator pointer. It mirrors it in its ``lk.portal.active_operator``
attribute and serves ``portal.set_active_operator``. Unlike livekit-portal, that RPC can be
guarded by an :class:`AccessPolicy` (allow-list of operators, supervisors); with the default
policy anyone in the room may set it, as in Portal.
"""

from __future__ import annotations

import logging
import threading
from typing import Any, Callable, Mapping, Optional

from livekit import rtc
import numpy as np

from ..errors import (
    SET_ACTIVE_OPERATOR_NOT_CONNECTED,
    SET_ACTIVE_OPERATOR_REFUSED,
    CodecError,
    InvalidFrameDimensions,
    NotConnected,
    PointerRefused,
    UnknownVideoTrack,
    WrongFrameSize,
)
from ..frames import FrameBuffer
from ..protocol import (
    ACTIVE_OPERATOR_ATTR,
    EXECUTED_ATTR,
    ROLE_ATTR,
    SET_ACTIVE_OPERATOR_RPC,
    TOPIC_ACTION,
    TOPIC_ACTION_CHUNK,
    TOPIC_EXECUTED,
    TOPIC_EXECUTED_CHUNK,
    TOPIC_FRAME_VIDEO,
    TOPIC_STATE,
)
from ..room.attributes import write_attributes
from ..room.events import Listeners
from ..room.rpc import RpcHandler
from ..room.send_queue import (
    DATA_QUEUE_CAPACITY,
    FRAME_QUEUE_CAPACITY,
    FRAME_STREAMS_IN_FLIGHT,
    SendQueue,
    send_stream,
    send_stream_in_turn,
)
from ..room.session import ATTRIBUTE_WRITE_TIMEOUT_S, PortalSession, now_us
from ..wire.frame_video import FrameVideoError, encode_frame, frame_header
from ..wire.packets import EXECUTED_ACTION, StateCodec, encode_executed
from .access import AccessPolicy
from .action_inbox import ActionInbox
from .pointer import POINTER_CONFIRM_S, PointerWriter
from .video_out import VideoSources

__all__ = ['AccessPolicy', 'POINTER_CONFIRM_S', 'Robot']

_log = logging.getLogger('portal_bridge.portal.roles.robot')


class Robot(ActionInbox, PortalSession):
    """A Portal robot: ``send_video_frame``/``send_state`` out, gated actions and chunks in."""

    role = 'robot'

    def __init__(
        self,
        contract,
        *,
        access: Optional[AccessPolicy] = None,
        video_degradation: str = 'maintain_framerate_and_resolution',
        echo_executed: bool = False,
        **kwargs: Any,
    ) -> None:
        super().__init__(contract, **kwargs)
        self.access = access or AccessPolicy()
        # When the encoder runs short of CPU or bandwidth, WebRTC lowers frame rate or resolution
        # ("balanced" by default). Observations need a frame for every state and datasets a fixed
        # size, so by default quality gives way instead; "balanced" restores WebRTC's choice.
        self._video = VideoSources(self.contract, video_degradation)
        # portal_bridge extension: re-broadcast every accepted action and chunk with its sender, so
        # recorders get exactly what was executed (a mirror of the pointer races with handoffs).
        self.echo_executed = echo_executed
        self._executed_queue: Optional[SendQueue[bytes]] = None
        self._executed_chunk_queue: Optional[SendQueue[bytes]] = None
        c = self.contract
        self._init_inbox()
        self._state_codec = StateCodec(c.state) if c.state else None
        self._state_fields = {f.name: f for f in c.state}
        self._state_queue: Optional[SendQueue[bytes]] = None
        self._frame_queues: dict[str, SendQueue[bytes]] = {}
        self._refused_listeners = Listeners('handoff-refused', self._tasks)
        self._lockout: Optional[str] = None
        self._pointer = PointerWriter(lambda: self._active, self._parts)

    # -- setup ------------------------------------------------------------------------------------
    def _builtin_rpc(self) -> dict[str, RpcHandler]:
        return {SET_ACTIVE_OPERATOR_RPC: self._rpc_set_active_operator}

    def _data_handlers(self):
        handlers = super()._data_handlers()
        handlers[TOPIC_ACTION] = self._on_action_packet
        return handlers

    def _stream_handlers(self):
        return {TOPIC_ACTION_CHUNK: self._on_chunk_stream}

    def _own_attributes(self) -> dict[str, str]:
        # The pointer is not here: only the pointer writer writes it, so two writes in flight
        # can never leave the room with an older value than the gate's.
        attrs = {ROLE_ATTR: self.role}
        if self.echo_executed:
            attrs[EXECUTED_ATTR] = '1'
        return attrs

    def _on_reconnected(self) -> None:
        self._pointer.forget()  # the server may have lost it: write it again
        super()._on_reconnected()
        self._pointer.kick()

    def _accepted(self, kind: int, sender: str, payload: bytes) -> None:
        queue = self._executed_queue if kind == EXECUTED_ACTION else self._executed_chunk_queue
        if queue is None:
            return
        accepted, _ = queue.put(encode_executed(kind, sender, payload))
        if not accepted:
            self._metrics.drop('executed-echo-full')

    async def _setup_role(self, room: rtc.Room) -> None:
        lp = room.local_participant
        loop = self._loop
        assert loop is not None
        if self.echo_executed:  # announced before any action can be accepted
            await write_attributes(lp, {EXECUTED_ATTR: '1'}, ATTRIBUTE_WRITE_TIMEOUT_S)
            self._executed_queue = SendQueue(loop, DATA_QUEUE_CAPACITY, drop_oldest=False)
            self._outbox.start_drainer('executed', self._executed_queue, self._data_sender(TOPIC_EXECUTED, True))
            self._executed_chunk_queue = SendQueue(loop, DATA_QUEUE_CAPACITY, drop_oldest=False)
            self._outbox.start_drainer(
                'executed-chunks', self._executed_chunk_queue, self._stream_sender(TOPIC_EXECUTED_CHUNK, 'executed')
            )
        self._pointer.seen(lp.attributes.get(ACTIVE_OPERATOR_ATTR, ''))
        if self._active is None and self._lockout is None:  # else kept across an automatic reconnect
            seed = lp.attributes.get(ACTIVE_OPERATOR_ATTR) or None
            if seed is not None and not self.access.may_drive(seed):
                self.log.warning(
                    "[%s] token seeds active operator '%s', which is not allowed; ignored", self.label, seed
                )
                seed = None
            self._update_active(seed)
        self._pointer.kick()
        await self._video.publish(
            lp, lambda name, codec: self.log.info("[%s] published video track '%s' (%s)", self.label, name, codec)
        )
        for spec in self.contract.frame_videos:
            queue: SendQueue[bytes] = SendQueue(loop, FRAME_QUEUE_CAPACITY, drop_oldest=True)
            self._frame_queues[spec.name] = queue
            self._outbox.start_pipelined_drainer(
                f'frame-{spec.name}', queue, self._frame_sender(spec.name), FRAME_STREAMS_IN_FLIGHT
            )
            self.log.info(
                "[%s] publishing frame-video track '%s' (%s, one byte stream per frame, up to %d in flight)",
                self.label,
                spec.name,
                spec.codec.name,
                FRAME_STREAMS_IN_FLIGHT,
            )
        if self._state_codec is not None:
            self._state_queue = SendQueue(loop, DATA_QUEUE_CAPACITY, drop_oldest=False)
            reliable = self.contract.state_reliable
            self._outbox.start_drainer('state', self._state_queue, self._data_sender(TOPIC_STATE, reliable))
            self.log.info(
                '[%s] ready to publish state via %s data (%d fields)',
                self.label,
                'reliable' if reliable else 'unreliable',
                len(self.contract.state),
            )

    def _data_sender(self, topic: str, reliable: bool):
        async def send(payload: bytes) -> None:
            room = self._room
            if room is not None:
                await room.local_participant.publish_data(payload, reliable=reliable, topic=topic)

        return send

    def _stream_sender(self, topic: str, name: str):
        async def send(payload: bytes) -> None:
            room = self._room
            if room is not None:
                await send_stream(room.local_participant, topic, name, payload)

        return send

    def _frame_sender(self, name: str):
        """Frame video: streams opened and written concurrently, closed in queue order (send_queue.py)."""

        async def send(payload: bytes, turn) -> None:
            room = self._room
            if room is not None:
                await send_stream_in_turn(room.local_participant, TOPIC_FRAME_VIDEO, name, payload, turn)
                self._metrics.frame_sent(name, len(payload))

        return send

    async def _teardown_role(self) -> None:
        self._pointer.stop()
        await self._outbox.stop_drainers()
        self._state_queue = None
        self._executed_queue = None
        self._executed_chunk_queue = None
        self._frame_queues.clear()
        await self._video.close()
        if self._state_codec is not None:
            self._state_codec.reset()

    def _clear_received(self) -> None:
        self._clear_inbox()

    # -- publishing -------------------------------------------------------------------------------
    def send_state(
        self, values: Mapping[str, Any], timestamp_us: Optional[int] = None, *, check_types: bool = True
    ) -> None:
        """Queue a state packet (carry-forward of omitted fields); safe from any thread.

        ``check_types`` applies Portal's dtype check; pass False to send plain floats (for example
        from a ROS message) and let the encoder narrow them.
        """
        ts = now_us() if timestamp_us is None else timestamp_us
        if self._outbox.queue_packet(
            'state', self._state_codec, self._state_queue, self._state_fields, values, check_types, ts
        ):
            self._metrics.state_sent()

    def send_video_frame(
        self,
        track: str,
        frame: FrameBuffer,
        width: Optional[int] = None,
        height: Optional[int] = None,
        timestamp_us: Optional[int] = None,
    ) -> None:
        """Send one packed-RGB24 frame (an ``(H, W, 3)`` uint8 array, or bytes with W and H).

        On a WebRTC track, a capture less than ``MIN_CAPTURE_GAP_S`` (1 ms) after the previous one
        waits for the rest of it (the SDK would merge the two); call it from a camera thread rather
        than from an asyncio loop when frames may come in bursts.
        """
        spec = self.contract.video(track)
        if spec is None:
            raise UnknownVideoTrack(f"video track '{track}' is not declared in the wire contract")
        if isinstance(frame, np.ndarray):
            if frame.ndim != 3 or frame.shape[2] != 3 or frame.dtype != np.uint8:
                raise WrongFrameSize(f'expected an (H, W, 3) uint8 array, got {frame.shape} {frame.dtype}')
            h, w = frame.shape[:2]
            if (width is not None and width != w) or (height is not None and height != h):
                raise WrongFrameSize(f'array is {w}x{h} but width/height say {width}x{height}')
            width, height = w, h
            data = memoryview(np.ascontiguousarray(frame)).cast('B')
        else:
            if width is None or height is None:
                raise ValueError('width and height are required for a bytes frame')
            data = frame
        size = data.nbytes if isinstance(data, memoryview) else len(data)
        ts = now_us() if timestamp_us is None else timestamp_us
        if spec.codec.is_webrtc:
            if width % 2 or height % 2:
                raise InvalidFrameDimensions(f'WebRTC frames need even dimensions, got {width}x{height}')
            least = spec.codec.spec.min_dimension
            if width < least or height < least:
                # e.g. OpenH264 drops smaller frames one by one with only a log line; say it once, here.
                raise InvalidFrameDimensions(
                    f'{spec.codec.name} frames must be at least {least}x{least}, got {width}x{height}'
                )
            if size != width * height * 3:
                raise WrongFrameSize(f'frame has {size} bytes, {width}x{height} RGB24 needs {width * height * 3}')
            if isinstance(data, memoryview) and data.readonly:
                data = bytes(data)
            self._video.capture(track, rtc.VideoFrame(width, height, rtc.VideoBufferType.RGB24, data), ts)
            self._metrics.frame_sent(track)
            return
        queue = self._frame_queues.get(track)
        if queue is None:
            raise NotConnected('robot is not connected')
        try:
            payload = encode_frame(track, spec.codec, data, width, height, ts, spec.quality)
        except FrameVideoError as exc:
            raise CodecError(str(exc)) from None
        self._queue_frame(track, queue, payload)

    def send_encoded_frame(
        self, track: str, payload: bytes, width: int, height: int, timestamp_us: Optional[int] = None
    ) -> None:
        """Send an already-compressed PNG/JPEG on a frame-video track of that codec, as is.

        Saves a decode and re-encode when the camera already delivers the track's codec (a ROS
        ``CompressedImage`` in jpeg on an MJPEG track). The receiver checks the decoded size
        against ``width`` and ``height``.
        """
        spec = self.contract.video(track)
        if spec is None or spec.codec.spec.ros_format is None:
            raise UnknownVideoTrack(f"'{track}' is not a frame-video track of a compressed codec (PNG, MJPEG)")
        queue = self._frame_queues.get(track)
        if queue is None:
            raise NotConnected('robot is not connected')
        ts = now_us() if timestamp_us is None else timestamp_us
        try:
            header = frame_header(track, spec.codec, width, height, ts)
        except FrameVideoError as exc:
            raise CodecError(str(exc)) from None
        self._queue_frame(track, queue, header + bytes(payload))

    def _queue_frame(self, track: str, queue: SendQueue[bytes], payload: bytes) -> None:
        _, evicted = queue.put(payload)
        if evicted is not None:
            self._metrics.frame_publisher_full(track)
            self._log_once(
                f'frame-full-{track}',
                "[publish-full] frame-video queue of '%s' full (%d); dropping the oldest queued frame",
                track,
                FRAME_QUEUE_CAPACITY,
            )

    # -- receiving --------------------------------------------------------------------------------
    def on_set_active_operator_refused(self, cb: Callable[[str, Optional[str], str], Any]) -> None:
        """Called with (caller, requested, reason) when the access policy refuses a handoff."""
        self._refused_listeners.add(cb)

    # -- control plane ----------------------------------------------------------------------------
    # The gate is local-first: every pointer change (handoff, release, e-stop) takes effect in the
    # gate at once, on the loop thread, with no await between check and change; the room's
    # attribute follows (pointer.py).
    async def set_active_operator(self, identity: Optional[str], confirm_timeout: float = POINTER_CONFIRM_S) -> bool:
        """Point the gate at ``identity`` (None: nobody drives). The robot app is trusted here.

        The gate changes before this returns and before any network round trip. Returns True
        once the room's attribute agrees, False if it did not within ``confirm_timeout`` seconds
        (the writer keeps retrying in the background). Refused while locked out (e-stop).
        """
        self._require_room()
        identity = identity or None
        if identity is not None and self._lockout is not None:
            raise PointerRefused(f'refused: {self._lockout}')
        self._update_active(identity)
        return await self._pointer.confirm(confirm_timeout)

    def lock_out(self, reason: str, *, release: bool = True) -> None:
        """Close the gate at once and refuse every handoff until :meth:`lift_lockout`; any thread.

        For an emergency stop: once this returns no action or chunk passes the gate and
        ``portal.set_active_operator`` answers "refused" with ``reason``. The pointer is cleared on
        the loop; with ``release=False`` by a later :meth:`release_pointer` (after the caller's
        output is safe, so the operator change cannot reach it first).
        """
        self._lockout = reason
        if release:
            self.release_pointer()

    def release_pointer(self) -> threading.Event:
        """Clear the active operator on the loop (any thread); the event is set once it is clear.

        The gate does not wait for this (a lockout already refuses every sender); callers that
        report "nobody is in control" wait on the event, bounded. Set at once when the loop is
        gone (nothing left to release) or when called on the loop itself.
        """
        done = threading.Event()

        def release() -> None:
            try:
                self._release_for_lockout()
            finally:
                done.set()

        loop = self._loop
        if loop is None or loop.is_closed():
            done.set()
        elif self._in_loop_thread():
            release()
        else:
            try:
                loop.call_soon_threadsafe(release)
            except RuntimeError:  # the loop is shutting down: nothing left to release
                done.set()
        return done

    def lift_lockout(self) -> None:
        """Allow handoffs again (the pointer stays None: someone must claim control anew)."""
        self._lockout = None

    @property
    def locked_out(self) -> Optional[str]:
        return self._lockout

    def pointer_confirmed(self) -> bool:
        """Whether the room's attribute carries the gate's current pointer."""
        return self._pointer.confirmed()

    def _release_for_lockout(self) -> None:
        if self._room is not None:
            self._update_active(None)

    def _gate(self, sender: str) -> bool:
        if self._lockout is not None:
            self._metrics.drop('gate-locked-out')
            return False
        return super()._gate(sender)

    def _update_active(self, identity: Optional[str]) -> None:
        super()._update_active(identity)
        self._pointer.kick()

    async def _rpc_set_active_operator(self, data: rtc.RpcInvocationData) -> str:
        requested = data.payload or None
        caller = data.caller_identity
        if self._room is None:
            raise rtc.RpcError(SET_ACTIVE_OPERATOR_NOT_CONNECTED, 'robot not connected')
        reason = self._lockout if requested is not None else None
        if reason is None:
            reason = self.access.check(caller, requested, self._active)
        if reason is not None:
            self._metrics.drop('handoff-refused')
            self.log.warning(
                "[%s] refused set_active_operator('%s') from '%s': %s",
                self.label,
                requested or '',
                caller,
                reason,
            )
            self._refused_listeners.emit(caller, requested, reason)
            raise rtc.RpcError(SET_ACTIVE_OPERATOR_REFUSED, f'not authorized: {reason}')
        # Checked and changed with no await in between: no other request can slip in.
        self._update_active(requested)
        await self._pointer.confirm(POINTER_CONFIRM_S)
        return ''

    def _default_destination(self) -> str:
        if self._active is not None:
            return self._active
        return super()._default_destination()
