"""The Operator role: receives video and state, fuses them into observations, sends actions.

Video arrives on WebRTC tracks (I420, converted to RGB24 by the SDK) and as frame-video byte
streams; state arrives as data packets. Everything feeds one :class:`SyncBuffer`. State and
frame video are accepted only from the participant whose role attribute says ``robot``
(livekit-portal accepts them from anyone, K5); everything else is counted and dropped. A WebRTC
frame without the ``user_timestamp`` trailer is counted and dropped instead of killing the
receiver (K3).
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any, Callable, Mapping, Optional, Sequence

from livekit import rtc
import numpy as np

from .. import protocol
from ..errors import NoPeer, NotConnected, UnknownVideoTrack
from ..frames import VideoFrame
from ..records import Action, Observation, State, typed_map
from ..room.events import Listeners
from ..room.send_queue import DATA_QUEUE_CAPACITY, SendQueue, send_stream
from ..room.session import PortalSession, now_us
from ..sync_buffer import StallPolicy, SyncBuffer, SyncOutput
from ..wire.packets import EXECUTED_ACTION, PacketError, StateCodec, decode_executed
from .action_inbox import ActionInbox
from .video_in import VideoReceiver

__all__ = ['Operator']

_ROBOT_POLL_S = 0.05
_ROBOT_POLL_TRIES = 30


class Operator(ActionInbox, PortalSession):
    """A Portal operator: observations in, actions and chunks out, control handoff."""

    role = 'operator'

    def __init__(self, contract, *, stall_policy: Optional[StallPolicy] = None, **kwargs: Any) -> None:
        super().__init__(contract, **kwargs)
        self._init_inbox()
        c = self.contract
        self.stall_policy = stall_policy
        self._state_codec = StateCodec(c.state)
        self._action_fields = {f.name: f for f in c.action}
        self._sync = self._new_sync_buffer()
        self._action_queue: Optional[SendQueue[bytes]] = None
        self._chunk_queues: dict[str, SendQueue[bytes]] = {}
        self._robot_echoes = False
        self._latest_state: Optional[State] = None
        self._latest_observation: Optional[Observation] = None
        self._latest_frames: dict[str, VideoFrame] = {}
        self._state_listeners = Listeners('state', self._tasks)
        self._observation_listeners = Listeners('observation', self._tasks)
        self._drop_listeners = Listeners('drop', self._tasks)
        self._frame_listeners = Listeners('video-frame', self._tasks)  # keyed by track name
        self._video = VideoReceiver(self)

    def _new_sync_buffer(self) -> SyncBuffer:
        c = self.contract
        return SyncBuffer(
            c.track_order,
            c.search_range_us,
            self.settings.slack,
            self.settings.slack,
            reuse_stale_frames=c.reuse_stale_frames,
            stall_policy=self.stall_policy,
            stats=self._metrics.sync,
        )

    # -- setup ------------------------------------------------------------------------------------
    def _inbox_enabled(self) -> bool:
        # With a robot that re-broadcasts what it executed, its record is the only source.
        return self.settings.action_subscription and not self._robot_echoes

    def _on_executed(self, payload: bytes, sender: str) -> None:
        """The robot's record of an accepted action or chunk (portal_bridge extension)."""
        if not self.settings.action_subscription or not self._from_robot(sender, 'executed action'):
            return
        try:
            kind, who, packet = decode_executed(payload)
        except PacketError as exc:
            self._count_packet_error(exc, 'executed action', sender)
            return
        self._robot_echoes = True
        if kind == EXECUTED_ACTION:
            self._take_action(packet, who)
        else:
            self._take_chunk(packet, who)

    def _data_handlers(self):
        handlers = super()._data_handlers()
        handlers[protocol.TOPIC_STATE] = self._on_state_packet
        if self.settings.action_subscription:
            handlers[protocol.TOPIC_ACTION] = self._on_action_packet
            handlers[protocol.TOPIC_EXECUTED] = self._on_executed
        return handlers

    def _stream_handlers(self):
        handlers = {protocol.TOPIC_FRAME_VIDEO: self._video.on_frame_stream}
        if self.settings.action_subscription:
            handlers[protocol.TOPIC_ACTION_CHUNK] = self._on_chunk_stream
            handlers[protocol.TOPIC_EXECUTED_CHUNK] = self._on_executed
        return handlers

    def _stream_size_limit(self, topic: str) -> int:
        if topic == protocol.TOPIC_FRAME_VIDEO:  # header + name + 65535 x 65535 RGB cannot fit anyway
            return 256 * 1024 * 1024
        return super()._stream_size_limit(topic)

    def _accept_stream(self, topic: str, sender: str) -> bool:
        # Frames and executed records are only ever the robot's: anyone else's are not buffered at all.
        if topic == protocol.TOPIC_FRAME_VIDEO:
            return self._from_robot(sender, 'frame video')
        if topic == protocol.TOPIC_EXECUTED_CHUNK:
            return self._from_robot(sender, 'executed chunk')
        return True

    def _prepare_receive(self) -> None:
        self._sync = self._new_sync_buffer()

    async def _setup_role(self, room: rtc.Room) -> None:
        loop = self._loop
        assert loop is not None
        if self.contract.action:
            self._action_queue = SendQueue(loop, DATA_QUEUE_CAPACITY, drop_oldest=False)
            reliable = self.contract.action_reliable

            async def send_action(payload: bytes) -> None:
                if self._room is not None:
                    await self._room.local_participant.publish_data(
                        payload, reliable=reliable, topic=protocol.TOPIC_ACTION
                    )

            self._outbox.start_drainer('action', self._action_queue, send_action)
        for name in self._chunk_by_name:
            queue: SendQueue[bytes] = SendQueue(loop, DATA_QUEUE_CAPACITY, drop_oldest=False)
            self._chunk_queues[name] = queue
            self._outbox.start_drainer(f'chunk-{name}', queue, self._chunk_sender(name))
        self._video.start()
        if self.stall_policy is not None:
            self._tasks.spawn(self._stall_watch(), 'stall-watch')

    def _chunk_sender(self, name: str):
        async def send(payload: bytes) -> None:
            if self._room is not None:
                await send_stream(self._room.local_participant, protocol.TOPIC_ACTION_CHUNK, name, payload)

        return send

    async def _teardown_role(self) -> None:
        await self._outbox.stop_drainers()
        self._action_queue = None
        self._chunk_queues.clear()
        self._video.stop()
        self._state_codec.reset()
        if self._action_codec is not None:
            self._action_codec.reset()

    def _clear_received(self) -> None:
        self._robot_echoes = False  # learnt again from the robot's attributes
        self._sync.clear()
        self._latest_state = None
        self._latest_observation = None
        self._latest_frames.clear()
        self._clear_inbox()

    def _on_robot_attributes(self, attributes: dict[str, str]) -> None:
        self._robot_echoes = attributes.get(protocol.EXECUTED_ATTR) == '1'
        self._update_active(attributes.get(protocol.ACTIVE_OPERATOR_ATTR) or None)

    # -- receive: state ---------------------------------------------------------------------------
    def _from_robot(self, sender: str, what: str) -> bool:
        if sender and sender == self._roster.robot_identity:
            return True
        self._metrics.drop('not-robot')
        if self._roster.robot_identity is None:
            return False  # no robot (yet, or any more): counted, nothing to report
        self._log_once(
            f'not-robot-{what}-{sender}',
            "[bad-payload] %s from '%s', which is not the robot '%s'; dropped",
            what,
            sender,
            self._roster.robot_identity,
        )
        return False

    def _on_state_packet(self, data: bytes, sender: str) -> None:
        if not self._from_robot(sender, 'state'):
            return
        try:
            ts, raw = self._state_codec.decode(data)
        except PacketError as exc:
            self._count_packet_error(exc, 'state', sender)
            return
        self._metrics.state_received(ts, now_us())
        state = State(typed_map(self.contract.state, raw), tuple(raw), ts, self._state_codec.names)
        self._latest_state = state
        self._state_listeners.emit(state)
        self._dispatch(self._sync.push_state(ts, state))

    def _on_track_subscribed(self, track, publication, participant) -> None:
        self._video.on_track_subscribed(track, participant)

    def _frame_ready(self, name: str, frame: VideoFrame) -> None:
        self._frame_listeners.emit(name, frame, key=name)
        self._dispatch(self._sync.push_frame(name, frame.timestamp_us, frame))

    # -- sync output ------------------------------------------------------------------------------
    def _dispatch(self, out: SyncOutput) -> None:
        if not out:
            return
        for o in out.observations:
            obs = Observation(
                o.state,
                o.frames,
                o.timestamp_us,
                o.stale,
                o.omitted,
                o.match_delta_us,
                received_ns=time.time_ns(),
            )
            self._latest_observation = obs
            self._observation_listeners.emit(obs)
        if out.drops:
            self._drop_listeners.emit([d.state for d in out.drops])

    async def _stall_watch(self) -> None:
        assert self.stall_policy is not None
        period = min(self.stall_policy.max_lag_ms / 4000.0, 0.05)
        while True:
            await asyncio.sleep(period)
            self._dispatch(self._sync.poll())

    # -- callbacks and getters --------------------------------------------------------------------
    def on_state(self, cb: Callable[[State], Any]) -> None:
        """Every decoded robot state, before it enters the sync buffer."""
        self._state_listeners.add(cb)

    def on_observation(self, cb: Callable[[Observation], Any]) -> None:
        self._observation_listeners.add(cb)

    def on_drop(self, cb: Callable[[list[State]], Any]) -> None:
        """States that will never become observations, once per push that dropped any."""
        self._drop_listeners.add(cb)

    def on_video_frame(self, track: str, cb: Callable[[str, VideoFrame], Any]) -> None:
        if self.contract.video(track) is None:
            raise UnknownVideoTrack(f"video track '{track}' is not declared in the wire contract")
        self._frame_listeners.add(cb, key=track)

    def get_state(self) -> Optional[State]:
        return self._latest_state

    def get_observation(self) -> Optional[Observation]:
        return self._latest_observation

    def get_video_frame(self, track: str) -> Optional[VideoFrame]:
        return self._latest_frames.get(track)

    def robot_identity(self) -> Optional[str]:
        return self._roster.robot_identity

    def metrics(self):
        sync = self._sync
        return self._metrics.snapshot(
            video_fill=sync.video_fill(), state_fill=sync.state_fill, stalled_tracks=sync.stalled_tracks()
        )

    def reset_metrics(self) -> None:
        self._metrics.reset()
        self._sync.stats = self._metrics.sync

    # -- sending ----------------------------------------------------------------------------------
    def _call_in_loop(self, fn: Callable[..., None], *args: Any) -> None:
        if self._in_loop_thread() or self._loop is None:
            fn(*args)
        else:
            self._loop.call_soon_threadsafe(fn, *args)

    def _echo_wanted(self) -> bool:
        if self._robot_echoes:  # the robot's record includes our own actions
            return False
        return self.settings.action_subscription and self._active is not None and self._active == self._identity

    def send_action(
        self,
        values: Mapping[str, Any],
        timestamp_us: Optional[int] = None,
        in_reply_to_ts_us: Optional[int] = None,
        *,
        check_types: bool = True,
    ) -> None:
        """Queue an action; the robot executes it only if this operator is the active one.

        Set ``in_reply_to_ts_us`` to the observation's ``timestamp_us`` the action answers, and
        the robot measures true end-to-end policy latency.
        """
        codec = self._action_codec
        ts = now_us() if timestamp_us is None else timestamp_us
        fields = self._action_fields
        packet = self._outbox.queue_packet(
            'action', codec, self._action_queue, fields, values, check_types, ts, in_reply_to_ts_us or 0
        )
        if packet is None:
            return
        self._metrics.action_sent()
        if self._echo_wanted():
            # The echo carries what the wire carries (narrowed to each dtype, saturated), as the
            # robot's would: decoding our own packet gives exactly that.
            _, reply, raw = codec.decode(packet)
            action = Action(
                typed_map(self.contract.action, raw),
                tuple(raw),
                ts,
                self._identity,
                reply or None,
                codec.names,
            )
            self._call_in_loop(self._deliver_action, action)

    def send_action_chunk(
        self,
        name: str,
        data: Mapping[str, Sequence[float]] | np.ndarray,
        timestamp_us: Optional[int] = None,
        in_reply_to_ts_us: Optional[int] = None,
    ) -> None:
        """Queue an action chunk: a dict of columns or a ``(rows, n_fields)`` array."""
        codec = self._chunk_codec(name)
        queue = self._chunk_queues.get(name)
        if queue is None:
            raise NotConnected('operator is not connected')
        ts = now_us() if timestamp_us is None else timestamp_us
        payload, _, saturated = codec.encode(data, ts, in_reply_to_ts_us or 0)
        for row, field in saturated:
            self._log_once(
                f'sat-chunk-{name}-{row}-{field}',
                "[saturated] chunk '%s' row %d field '%s' clipped",
                name,
                row,
                field,
                level=logging.INFO,
            )
        accepted, _ = queue.put(payload)
        if not accepted:
            self._metrics.drop('publish-full')
            self._log_once(f'chunk-full-{name}', "[publish-full] chunk queue '%s' full; chunk dropped", name)
            return
        self._metrics.action_chunk_sent()
        if self._echo_wanted():
            record = self._chunk_record(codec, codec.decode(payload), self._identity)
            self._call_in_loop(self._deliver_chunk, record)

    # -- control plane ----------------------------------------------------------------------------
    async def _resolve_robot(self) -> str:
        for _ in range(_ROBOT_POLL_TRIES):
            if self._roster.robot_identity is None:
                self._rebuild_rosters()
            if self._roster.robot_identity is not None:
                return self._roster.robot_identity
            await asyncio.sleep(_ROBOT_POLL_S)
        raise NoPeer('no robot in the room (no participant with lk.portal.role=robot)')

    async def set_active_operator(self, identity: Optional[str]) -> None:
        """Ask the robot to hand control to ``identity`` (None: nobody). RpcCallError if refused."""
        self._require_room()
        robot = await self._resolve_robot()
        await self.perform_rpc(protocol.SET_ACTIVE_OPERATOR_RPC, identity or '', destination=robot)

    async def claim_control(self) -> None:
        """Make this operator the active one."""
        await self.set_active_operator(self._identity)

    async def release_control(self) -> bool:
        """Give up control if this operator holds it; False if it did not."""
        if self._active != self._identity:
            return False
        await self.set_active_operator(None)
        return True

    def _default_destination(self) -> str:
        if self._roster.robot_identity is not None:
            return self._roster.robot_identity
        return super()._default_destination()
