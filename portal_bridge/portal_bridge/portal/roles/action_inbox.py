"""Receiving actions and action chunks through the active-operator gate.

The robot always receives them; an operator only with ``action_subscription`` (a recorder, a
supervisor's monitor). Both apply the same gate: accept only what the active operator sent (the
robot's pointer, or the operator's mirror of it), checked when a packet arrives and when a chunk
stream completes. Accepted records carry that sender.
"""

from __future__ import annotations

from typing import Any, Callable, Optional

from ..errors import UnknownChunk
from ..records import Action, ActionChunk, typed_map
from ..room.events import Listeners
from ..room.session import now_us
from ..wire.packets import EXECUTED_ACTION, EXECUTED_CHUNK, ActionCodec, ChunkCodec, PacketError, peek_fingerprint

__all__ = ['ActionInbox']

_CHUNK_STREAM_SLACK = 1024 * 1024


class ActionInbox:
    """Mixin for :class:`~portal_bridge.portal.room.session.PortalSession` roles that take actions."""

    def _init_inbox(self) -> None:
        c = self.contract
        self._action_codec = ActionCodec(c.action) if c.action else None
        self._chunk_codecs = {codec.fingerprint: codec for codec in (ChunkCodec(ch) for ch in c.action_chunks)}
        self._chunk_by_name = {codec.spec.name: codec for codec in self._chunk_codecs.values()}
        self._latest_action: Optional[Action] = None
        self._latest_chunks: dict[str, ActionChunk] = {}
        self._action_listeners = Listeners('action', self._tasks)
        self._chunk_listeners = Listeners('action-chunk', self._tasks)  # keyed by chunk name
        self._candidate_listeners = Listeners('candidate-action', self._tasks)
        self._candidates: frozenset[str] = frozenset()

    def _inbox_enabled(self) -> bool:
        return True

    def _accepted(self, kind: int, sender: str, payload: bytes) -> None:
        """Hook: an action or chunk passed the gate and decoded (the robot re-broadcasts it)."""

    def _chunk_codec(self, name: str) -> ChunkCodec:
        codec = self._chunk_by_name.get(name)
        if codec is None:
            raise UnknownChunk(f"action chunk '{name}' is not declared in the wire contract")
        return codec

    def on_action(self, cb: Callable[[Action], Any]) -> None:
        """Add a listener called on the session's loop for every action that passed the gate."""
        self._action_listeners.add(cb)

    def on_candidate_action(self, identities, cb: Callable[[Action | ActionChunk], Any]) -> None:
        """Add a listener for actions and chunks that ``identities`` send while not in control.

        Shadow evaluation (a portal_bridge extension): Portal broadcasts every action to the room,
        and the gate drops a candidate's; this hands them, decoded and labelled with their
        sender, to a recorder instead. They are never delivered as actions and never executed.
        """
        self._candidates = self._candidates | frozenset(identities)
        self._candidate_listeners.add(cb)

    def get_action(self) -> Optional[Action]:
        return self._latest_action

    def on_action_chunk(self, name: str, cb: Callable[[ActionChunk], Any]) -> None:
        self._chunk_codec(name)
        self._chunk_listeners.add(cb, key=name)

    def get_action_chunk(self, name: str) -> Optional[ActionChunk]:
        self._chunk_codec(name)
        return self._latest_chunks.get(name)

    def _clear_inbox(self) -> None:
        self._latest_action = None
        self._latest_chunks.clear()

    def _gate(self, sender: str) -> bool:
        if self._active is not None and sender == self._active:
            return True
        self._metrics.drop('gate')
        self.log.debug('[%s] gate: dropped from %r (active operator %r)', self.label, sender, self._active)
        return False

    def _deliver_action(self, action: Action) -> None:
        self._latest_action = action
        self._action_listeners.emit(action)

    def _deliver_chunk(self, chunk: ActionChunk) -> None:
        self._latest_chunks[chunk.name] = chunk
        self._chunk_listeners.emit(chunk, key=chunk.name)

    def _is_candidate(self, sender: str) -> bool:
        return sender in self._candidates and sender != self._active

    def _on_action_packet(self, data: bytes, sender: str) -> None:
        if self._is_candidate(sender):
            self._take_candidate_action(data, sender)
            return
        if not self._inbox_enabled() or not self._gate(sender):
            return
        self._take_action(data, sender)

    def _take_candidate_action(self, data: bytes, sender: str) -> None:
        action = self._decode_action(data, sender, 'candidate action')
        if action is not None:
            self._candidate_listeners.emit(action)

    def _decode_action(self, data: bytes, sender: str, what: str) -> Optional[Action]:
        """The action in a packet, or None (counted and logged) when it is not one."""
        if self._action_codec is None:
            self._metrics.drop('schema-mismatch')
            return None
        try:
            ts, reply, raw = self._action_codec.decode(data)
        except PacketError as exc:
            self._count_packet_error(exc, what, sender)
            return None
        return Action(
            typed_map(self.contract.action, raw), tuple(raw), ts, sender, reply or None, self._action_codec.names
        )

    def _take_action(self, data: bytes, sender: str) -> None:
        """Decode an action that passed the gate (here, or the robot's) and deliver it."""
        action = self._decode_action(data, sender, 'action')
        if action is None:
            return
        self._metrics.action_received(action.timestamp_us, now_us(), action.in_reply_to_ts_us or 0)
        self._accepted(EXECUTED_ACTION, sender, data)
        self._deliver_action(action)

    def _on_chunk_stream(self, payload: bytes, sender: str) -> None:
        if self._is_candidate(sender):
            self._take_candidate_chunk(payload, sender)
            return
        if not self._inbox_enabled() or not self._gate(sender):  # gated at completion time
            return
        self._take_chunk(payload, sender)

    def _take_candidate_chunk(self, payload: bytes, sender: str) -> None:
        decoded = self._decode_chunk(payload, sender, 'candidate chunk')
        if decoded is not None:
            self._candidate_listeners.emit(self._chunk_record(*decoded, sender))

    def _decode_chunk(self, payload: bytes, sender: str, what: str):
        """``(codec, chunk)`` of a chunk stream, or None (counted and logged) when it is not one."""
        fp = peek_fingerprint(payload)
        codec = self._chunk_codecs.get(fp) if fp is not None else None
        if codec is None:
            why = f'fingerprint 0x{fp:08x} is not declared' if fp is not None else 'shorter than a fingerprint'
            self._count_packet_error(PacketError('unknown-chunk', why, fp), what, sender)
            return None
        try:
            return codec, codec.decode(payload)
        except PacketError as exc:
            self._count_packet_error(exc, what, sender)
            return None

    def _take_chunk(self, payload: bytes, sender: str) -> None:
        """Decode a chunk that passed the gate (here, or the robot's) and deliver it."""
        decoded = self._decode_chunk(payload, sender, 'chunk')
        if decoded is None:
            return
        codec, chunk = decoded
        last = self._latest_chunks.get(codec.spec.name)
        if last is not None and last.sender == sender and chunk.timestamp_us < last.timestamp_us:
            # Each stream is read by its own task, so a burst can complete out of order; playing an
            # older chunk after a newer one would replay stale actions.
            self._metrics.drop('stale-chunk')
            return
        now = now_us()
        self._metrics.action_chunk_received(chunk.timestamp_us, now, chunk.in_reply_to_ts_us)
        self._accepted(EXECUTED_CHUNK, sender, payload)
        self._deliver_chunk(self._chunk_record(codec, chunk, sender))

    @staticmethod
    def _chunk_record(codec: ChunkCodec, chunk, sender: str) -> ActionChunk:
        return ActionChunk(
            codec.spec.name,
            codec.spec.horizon,
            chunk.columns,
            chunk.timestamp_us,
            sender,
            chunk.in_reply_to_ts_us or None,
        )

    def _stream_size_limit(self, topic: str) -> int:
        from ..protocol import TOPIC_ACTION_CHUNK, TOPIC_EXECUTED_CHUNK

        if topic in (TOPIC_ACTION_CHUNK, TOPIC_EXECUTED_CHUNK):
            # No valid chunk is larger than the largest declared one; the slack still lets a chunk of
            # a slightly different schema be read and reported as unknown-chunk, not just as oversized.
            return max((codec.size for codec in self._chunk_codecs.values()), default=0) + _CHUNK_STREAM_SLACK
        return super()._stream_size_limit(topic)
