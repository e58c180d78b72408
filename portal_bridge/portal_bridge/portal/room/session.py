"""A Portal participant's LiveKit room: connect, reconnect, and the parts both roles share.

A session is one LiveKit room. This module owns the connection (join, the SDK's reconnects, our
own rejoin with backoff when LiveKit gives up, probing a restarted server) and composes the rest:
the roster (:mod:`.roster`), RTT (:mod:`.rtt`), RPC (:mod:`.rpc`), byte streams
(:mod:`.streams`), listeners and tasks (:mod:`.events`). The Robot and Operator roles build on it.

All LiveKit work runs on the asyncio loop that called :meth:`PortalSession.connect`; the roles'
synchronous send methods may be called from any thread. Listeners run on that loop and must not
block it.

Fixes over livekit-portal, all wire-compatible: RTT pongs go to the pinger only and only pongs to
our own pings are counted; rosters are rebuilt from the room right after a reconnect; attributes
are written again after a reconnect, so a restarted server learns roles and the active operator
again; with ``auto_reconnect`` a session that LiveKit gave up on reconnects by itself.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from typing import Any, Callable, Optional

from livekit import rtc

from ..errors import AlreadyConnected, AmbiguousPeer, NoPeer, NotConnected, PortalError, RoomError
from ..metrics import MetricsRecorder, PortalMetrics
from ..peer_settings import PeerSettings
from ..protocol import ROLE_ATTR, TOPIC_RTT
from ..wire.contract import WireContract
from .attributes import write_attributes
from .events import Listeners, LogOnce, SessionParts, TaskSet
from .reconnect import ConnectionState, Reconnector
from .roster import Roster
from .rpc import DEFAULT_RPC_TIMEOUT_S, RpcHandler, RpcInvocation, RpcTable, call
from .rtt import RttTracker, now_us
from .sdk_logs import demote_sdk_noise
from .send_queue import Outbox
from .streams import DEFAULT_STREAM_LIMIT, stream_reader
from .tokens import CONNECT_KEYS, credentials_from_env, redact_tokens, token_for

__all__ = ['ConnectionState', 'PortalSession', 'RpcInvocation', 'now_us', 'ATTRIBUTE_WRITE_TIMEOUT_S']

ATTRIBUTE_WRITE_TIMEOUT_S = 10.0


class PortalSession:
    """Base of :class:`~portal_bridge.portal.roles.robot.Robot` and ``Operator``."""

    role: str = ''

    def __init__(
        self,
        contract: WireContract,
        *,
        label: str = 'portal',
        e2ee_key: Optional[bytes] = None,
        auto_reconnect: bool = True,
        settings: Optional[PeerSettings] = None,
    ) -> None:
        self.contract = contract.validate()
        self.settings = settings if settings is not None else PeerSettings.of(self.contract)
        self.settings.check()
        self.label = label  # names this session in log lines: ``[label] ...``
        self.e2ee_key = e2ee_key
        self.auto_reconnect = auto_reconnect
        self.log = logging.getLogger(f'portal_bridge.portal.{self.role}')
        demote_sdk_noise()  # SDK lines that never apply to a session (see sdk_logs.py)
        self._metrics = MetricsRecorder()
        self._room: Optional[rtc.Room] = None
        self._loop: Optional[asyncio.AbstractEventLoop] = None
        self._loop_thread: Optional[int] = None
        self._lifecycle = asyncio.Lock()
        self._state = ConnectionState.DISCONNECTED
        self._closing = False
        self._connect_args: Optional[dict[str, Any]] = None
        self.reconnect_count = 0
        self._identity = ''
        self._room_name = ''
        self._active: Optional[str] = None
        self._tasks = TaskSet(self.log)
        self._log_once = LogOnce(self.log)
        self._parts = SessionParts(lambda: self._room, self._metrics, self._tasks, self.log, self._log_once, label)
        self._roster = Roster(lambda: self._identity, self._on_robot_attributes, self._parts)
        self._rtt = RttTracker(self.settings.ping_ms / 1000.0, lambda: self.is_connected, self._parts)
        self._rpc = RpcTable()
        self._outbox = Outbox(self.role, self._metrics, self._log_once)
        self.connection_changed = Listeners('connection', self._tasks)
        self.active_changed = Listeners('active-operator', self._tasks)
        self._reconnector = Reconnector(self)

    # -- lifecycle -----------------------------------------------------------------------------
    @property
    def connection_state(self) -> ConnectionState:
        return self._state

    @property
    def is_connected(self) -> bool:
        return self._state is ConnectionState.CONNECTED

    def local_identity(self) -> str:
        return self._identity

    @property
    def room_name(self) -> str:
        return self._room_name

    async def connect(
        self,
        url: str,
        token: Optional[str] = None,
        *,
        api_key: Optional[str] = None,
        api_secret: Optional[str] = None,
        identity: Optional[str] = None,
        room: Optional[str] = None,
        active_operator: Optional[str] = None,
    ) -> None:
        """Join the room at ``url``.

        Give either a ``token``, or ``identity`` and ``room`` with credentials (``api_key`` and
        ``api_secret``, else ``LIVEKIT_API_KEY``/``LIVEKIT_API_SECRET``) from which a token with
        Portal's grants is minted, seeding ``active_operator`` on a robot.
        """
        if token is None:
            if not identity or not room:
                raise ValueError('connect() needs a token, or an identity and a room to mint one')
            if api_key is None or api_secret is None:
                api_key, api_secret = credentials_from_env()
        async with self._lifecycle:
            if self._room is not None:
                raise AlreadyConnected(f'{self.role} is already connected to {self._room_name!r}')
            given = (url, token, api_key, api_secret, identity, room, active_operator)
            self._connect_args = dict(zip(CONNECT_KEYS, given))
            self._closing = False
            self._set_state(ConnectionState.CONNECTING)
            try:
                await self._open()
            except BaseException:
                self._set_state(ConnectionState.DISCONNECTED)
                raise

    async def disconnect(self) -> None:
        """Leave the room and clear control state; callbacks, RPC handlers and metrics survive."""
        self._closing = True
        self._reconnector.cancel()
        async with self._lifecycle:
            self._closing = True
            await self._close_room()
            self._active = None
            self._set_state(ConnectionState.DISCONNECTED)

    async def _open(self) -> None:
        assert self._connect_args is not None
        url = self._connect_args['url']
        loop = asyncio.get_running_loop()
        self._loop = loop
        self._loop_thread = threading.get_ident()
        room = rtc.Room(loop=loop)
        self._install_handlers(room)
        self._prepare_receive()
        options = rtc.RoomOptions(auto_subscribe=True)
        if self.e2ee_key:
            options.encryption = rtc.E2EEOptions(key_provider_options=rtc.KeyProviderOptions(shared_key=self.e2ee_key))
        self.log.info('[%s] connecting as %s to %s', self.label, self.role, url)
        try:
            await room.connect(url, token_for(self._connect_args), options)
        except BaseException as exc:  # including cancellation: never leave a half-joined room behind
            try:
                await asyncio.shield(room.disconnect())
            except BaseException:
                pass
            if isinstance(exc, Exception):
                raise RoomError(f'could not join {url}: {redact_tokens(str(exc))}') from exc
            raise
        self._room = room
        lp = room.local_participant
        self._identity = lp.identity
        self._room_name = room.name
        self._rpc.attach(lp, self._builtin_rpc())
        try:
            await write_attributes(lp, {ROLE_ATTR: self.role}, ATTRIBUTE_WRITE_TIMEOUT_S)
        except Exception as exc:
            await self._close_room()
            raise RoomError(
                f'failed to publish role attribute (token may be missing canUpdateOwnMetadata): {exc}'
            ) from exc
        try:
            await self._setup_role(room)
        except Exception:
            await self._close_room()
            raise
        self._rebuild_rosters()
        self._tasks.spawn(self._rtt.ping_loop(), 'rtt')
        self._set_state(ConnectionState.CONNECTED)
        self.log.info("[%s] connected as %s '%s' in room '%s'", self.label, self.role, self._identity, self._room_name)

    async def _close_room(self) -> None:
        room, self._room = self._room, None
        await self._teardown_role()
        await self._tasks.cancel_all()
        self._rpc.attach(None, {})
        self._roster.clear()
        self._rtt.forget()
        self._clear_received()
        if room is not None:
            self.log.info('[%s] disconnecting', self.label)
            try:
                await room.disconnect()
            except Exception as exc:
                self.log.warning('[%s] error while leaving the room: %s', self.label, exc)

    def _set_state(self, state: ConnectionState) -> None:
        if state is self._state:
            return
        self._state = state
        self.connection_changed.emit(state)

    def on_connection_state(self, cb: Callable[[ConnectionState], Any]) -> None:
        """Add a listener called with the new state on connect, reconnect attempts and disconnects."""
        self.connection_changed.add(cb)

    # -- room events ---------------------------------------------------------------------------
    def _install_handlers(self, room: rtc.Room) -> None:
        room.on('participant_connected', self._roster.classify)
        room.on('participant_disconnected', self._on_participant_disconnected)
        room.on('participant_attributes_changed', self._on_attributes_changed)
        room.on('data_received', self._on_data_received)
        # Connection events are tied to their room: a closed room's late event must not act on its successor.
        room.on('reconnecting', lambda *_: room is self._room and self._reconnector.on_reconnecting())
        room.on('reconnected', lambda *_: room is self._room and self._on_reconnected())
        room.on('disconnected', lambda reason=None: room is self._room and self._reconnector.on_disconnected(reason))
        room.on('track_subscribed', self._on_track_subscribed)
        for topic, handler in self._stream_handlers().items():
            reader = stream_reader(
                topic,
                handler,
                limit=self._stream_size_limit(topic),
                accept=self._accept_stream,
                parts=self._parts,
            )
            room.register_byte_stream_handler(topic, reader)

    def _on_attributes_changed(self, changed: dict, participant: rtc.Participant) -> None:
        if participant.identity != self._identity:
            self._roster.classify(participant)

    def _on_participant_disconnected(self, participant: rtc.RemoteParticipant) -> None:
        self.log.info("[%s] participant '%s' disconnected", self.label, participant.identity)
        self._roster.left(participant.identity)
        # The active operator stays pinned: a reconnect with the same identity resumes control.

    def _rebuild_rosters(self) -> None:
        room = self._room
        if room is not None:
            self._roster.rebuild(room.remote_participants.values())

    def _on_robot_attributes(self, attributes: dict[str, str]) -> None:
        """Operators mirror the robot's pointer; the robot itself ignores other robots."""

    def _on_reconnected(self) -> None:
        self.reconnect_count += 1
        self.log.info('[%s] reconnected, clearing sync buffers and latest slots', self.label)
        self._roster.clear()
        self._clear_received()
        self._rebuild_rosters()
        self._tasks.spawn(self._reassert_attributes(), 'reassert-attributes')
        self._set_state(ConnectionState.CONNECTED)

    async def _reassert_attributes(self) -> None:
        room = self._room
        if room is None:
            return
        try:
            await write_attributes(room.local_participant, self._own_attributes(), ATTRIBUTE_WRITE_TIMEOUT_S)
        except Exception as exc:
            self.log.warning('[%s] could not restore attributes after reconnect: %s', self.label, exc)

    def _own_attributes(self) -> dict[str, str]:
        return {ROLE_ATTR: self.role}

    def _on_track_subscribed(
        self, track: rtc.Track, publication: rtc.RemoteTrackPublication, participant: rtc.RemoteParticipant
    ) -> None:
        """Operators consume camera tracks; the robot ignores subscriptions."""

    # -- data packets --------------------------------------------------------------------------
    def _data_handlers(self) -> dict[str, Callable[[bytes, str], None]]:
        return {TOPIC_RTT: self._rtt.on_packet}

    def _stream_handlers(self) -> dict[str, Callable[[bytes, str], Any]]:
        return {}

    def _on_data_received(self, packet: rtc.DataPacket) -> None:
        handler = self._data_handlers().get(packet.topic or '')
        if handler is None:
            return
        # A packet that overtakes its sender's join arrives without a sender (the SDK cannot name
        # it yet); it then fails every sender check, as it does in livekit-portal.
        sender = packet.participant.identity if packet.participant is not None else ''
        self.log.debug('[%s] %s packet (%d bytes) from %r', self.label, packet.topic, len(packet.data), sender)
        try:
            handler(packet.data, sender)
        except Exception:  # never let one packet take the session down
            self._metrics.drop('internal-error')
            self.log.exception('[%s] error handling a %s packet from %r', self.label, packet.topic, sender)

    def _stream_size_limit(self, topic: str) -> int:
        return DEFAULT_STREAM_LIMIT

    def _accept_stream(self, topic: str, sender: str) -> bool:
        """Hook: whether to keep the bytes of a stream that is starting (a refusal counts itself)."""
        return True

    # -- role hooks ----------------------------------------------------------------------------
    def _builtin_rpc(self) -> dict[str, RpcHandler]:
        return {}

    def _prepare_receive(self) -> None:
        """Create receive-side state (sync buffer) before the room starts delivering."""

    async def _setup_role(self, room: rtc.Room) -> None:
        """Publish tracks and create publishers once connected."""

    async def _teardown_role(self) -> None:
        """Stop publishers and consumers."""

    def _clear_received(self) -> None:
        """Forget buffered and latest received data (on reconnect and disconnect)."""

    # -- roster and control plane --------------------------------------------------------------
    @property
    def robot_arrivals(self) -> int:
        """Bumped whenever a robot joins (or rejoins) the room."""
        return self._roster.robot_arrivals

    @property
    def expected_robot(self) -> Optional[str]:
        """If set, only this identity is taken as the robot."""
        return self._roster.expected_robot

    @expected_robot.setter
    def expected_robot(self, identity: Optional[str]) -> None:
        self._roster.expected_robot = identity

    def active_operator(self) -> Optional[str]:
        """The identity whose actions the robot accepts (the operator's mirror of it)."""
        return self._active

    def operators(self) -> list[str]:
        """Operators in the room, sorted, excluding this participant and the robot."""
        return self._roster.operators()

    def on_operator_joined(self, cb: Callable[[str], Any]) -> None:
        self._roster.operator_joined.add(cb)

    def on_operator_left(self, cb: Callable[[str], Any]) -> None:
        self._roster.operator_left.add(cb)

    def on_active_operator_changed(self, cb: Callable[[Optional[str]], Any]) -> None:
        self.active_changed.add(cb)

    def _update_active(self, identity: Optional[str]) -> None:
        identity = identity or None
        if identity != self._active:
            self._active = identity
            self.log.info('[%s] active operator: %s', self.label, identity or '(none)')
            self.active_changed.emit(identity)

    # -- RPC -----------------------------------------------------------------------------------
    def register_rpc_method(self, method: str, handler: RpcHandler) -> None:
        """Serve ``method``; works before or after connect and survives reconnects.

        The handler gets an :data:`RpcInvocation` (payload, caller_identity, ...) and returns a
        string (sync or async). Raise :class:`RpcCallError` or ``rtc.RpcError`` to fail with a code;
        any other exception becomes code 1500 ``handler raised <Type>: <message>``.
        """
        self._rpc.register(method, handler)

    def unregister_rpc_method(self, method: str) -> None:
        self._rpc.unregister(method)

    def _default_destination(self) -> str:
        room = self._require_room()
        remotes = list(room.remote_participants)
        if len(remotes) == 1:
            return remotes[0]
        if not remotes:
            raise NoPeer('no other participant in the room to call')
        raise AmbiguousPeer(f'{len(remotes)} participants in the room; name a destination')

    async def perform_rpc(
        self,
        method: str,
        payload: str = '',
        destination: Optional[str] = None,
        response_timeout_ms: Optional[int] = None,
    ) -> str:
        """Call ``method`` on a peer; RpcCallError (with its code) when it fails."""
        room = self._require_room()
        dest = destination or self._default_destination()
        timeout = DEFAULT_RPC_TIMEOUT_S if response_timeout_ms is None else response_timeout_ms / 1000.0
        return await call(room.local_participant, dest, method, payload, timeout)

    # -- metrics and helpers -------------------------------------------------------------------
    def metrics(self) -> PortalMetrics:
        """A snapshot of every metric (safe from any thread)."""
        return self._metrics.snapshot()

    def reset_metrics(self) -> None:
        self._metrics.reset()

    def _require_room(self) -> rtc.Room:
        room = self._room
        if room is None:
            raise NotConnected(f'{self.role} is not connected')
        return room

    def _in_loop_thread(self) -> bool:
        return threading.get_ident() == self._loop_thread

    def _count_packet_error(self, exc: PortalError | Exception, what: str, sender: str) -> None:
        reason = getattr(exc, 'reason', 'bad-payload')
        self._metrics.drop(reason)
        fp = getattr(exc, 'fingerprint', None)
        key = f'{what}-{reason}-{fp}' if reason in ('schema-mismatch', 'unknown-chunk') else f'{what}-{reason}-{sender}'
        self._log_once(key, '[%s] %s from %r dropped: %s', reason, what, sender, exc)
