"""What the Robot and Operator roles share: the LiveKit room, rosters, RTT, RPC and metrics.

A session is one LiveKit room. Both roles set ``lk.portal.role`` on connect and classify the other
participants by that attribute. All LiveKit work runs on the asyncio loop that called
:meth:`PortalSession.connect`; the synchronous send methods of the roles may be called from any
thread. Callbacks run on that loop and must not block it.

Fixes over livekit-portal, all wire-compatible: RTT pongs go to the pinger only and only pongs to
our own pings are counted (K4); rosters are rebuilt from the room right after a reconnect (K8);
attributes are written again after a reconnect, so a restarted server learns roles and the
active operator again; with ``auto_reconnect`` a session that LiveKit gave up on reconnects by
itself, with backoff.
"""

from __future__ import annotations

import asyncio
import enum
import inspect
import logging
import threading
import time
from typing import Any, Awaitable, Callable, Mapping, Optional, Union
import urllib.parse

from livekit import rtc

from ..errors import (
    RPC_APPLICATION_ERROR,
    AlreadyConnected,
    AmbiguousPeer,
    EmptySchema,
    NoPeer,
    NotConnected,
    PortalError,
    RoomError,
    RpcCallError,
)
from ..metrics import MetricsRecorder, PortalMetrics
from ..wire.contract import WireContract
from ..wire.dtypes import check_value_types
from ..wire.packets import RTT_PING, RTT_PONG, decode_rtt, encode_rtt
from .attributes import write_attributes
from .send_queue import Drainer, SendQueue
from .tokens import ROLE_ATTR, credentials_from_env, mint_token, redact_tokens

__all__ = [
    'ConnectionState',
    'PortalSession',
    'RpcInvocation',
    'now_us',
    'TOPIC_STATE',
    'TOPIC_ACTION',
    'TOPIC_ACTION_CHUNK',
    'TOPIC_FRAME_VIDEO',
    'TOPIC_RTT',
    'SET_ACTIVE_OPERATOR_RPC',
    'TOPIC_EXECUTED',
    'TOPIC_EXECUTED_CHUNK',
    'EXECUTED_ATTR',
    'ATTRIBUTE_WRITE_TIMEOUT_S',
]

TOPIC_STATE = 'portal_state'
TOPIC_ACTION = 'portal_action'
TOPIC_ACTION_CHUNK = 'portal_action_chunk'
TOPIC_FRAME_VIDEO = 'portal_frame_video'
TOPIC_RTT = 'portal_rtt'
SET_ACTIVE_OPERATOR_RPC = 'portal.set_active_operator'
# portal_bridge extension (ignored by other Portal peers): the robot re-broadcasts what it executed.
TOPIC_EXECUTED = 'portal_bridge_executed'
TOPIC_EXECUTED_CHUNK = 'portal_bridge_executed_chunk'
EXECUTED_ATTR = 'portal_bridge.executed'
ROLE_ROBOT = 'robot'
ROLE_OPERATOR = 'operator'

DEFAULT_RPC_TIMEOUT_S = 15.0
ATTRIBUTE_WRITE_TIMEOUT_S = 10.0
_PONG_QUEUE = 64
# Our own pings whose pong still counts as a sample (1024 at the default 1 Hz: 17 min). Under a
# flood, pongs have come back 30 s late; a shorter memory counted them as other peers' pongs.
_OWN_PINGS_REMEMBERED = 1024
_RECONNECT_BACKOFF_S = (0.5, 1.0, 2.0)  # capped low: a returning server should see us within seconds

RpcInvocation = rtc.RpcInvocationData
RpcHandler = Callable[[rtc.RpcInvocationData], Union[str, None, Awaitable[Optional[str]]]]


def now_us() -> int:
    """Wall-clock microseconds since the Unix epoch (Portal's timestamp clock)."""
    return time.time_ns() // 1000


class ConnectionState(enum.Enum):
    DISCONNECTED = 'disconnected'
    CONNECTING = 'connecting'
    CONNECTED = 'connected'
    RECONNECTING = 'reconnecting'


class PortalSession:
    """Base of :class:`~portal_bridge.portal.robot.Robot` and ``Operator``."""

    role: str = ''

    def __init__(
        self,
        contract: WireContract,
        *,
        session: str = 'portal',
        e2ee_key: Optional[bytes] = None,
        auto_reconnect: bool = True,
    ) -> None:
        self.contract = contract.validate()
        self.session = session
        self.e2ee_key = e2ee_key
        self.auto_reconnect = auto_reconnect
        self.log = logging.getLogger(f'portal_bridge.portal.{self.role}')
        self._metrics = MetricsRecorder()
        self._room: Optional[rtc.Room] = None
        self._loop: Optional[asyncio.AbstractEventLoop] = None
        self._loop_thread: Optional[int] = None
        self._lifecycle = asyncio.Lock()
        self._state = ConnectionState.DISCONNECTED
        self._closing = False
        self._connect_args: Optional[dict[str, Any]] = None
        self._reconnect_task: Optional[asyncio.Task] = None
        self._server_watch: Optional[asyncio.Task] = None
        self.reconnect_count = 0
        self._tasks: set[asyncio.Task] = set()
        self._drainers: list[Drainer] = []
        self._send_lock = threading.Lock()
        self._identity = ''
        self._room_name = ''
        # control plane
        self._active: Optional[str] = None
        self._robot_identity: Optional[str] = None
        self.robot_arrivals = 0  # bumped whenever a robot joins (or rejoins) the room
        self.expected_robot: Optional[str] = None  # if set, only this identity is taken as the robot
        self._operators: set[str] = set()
        # rtt
        self._own_pings: dict[int, None] = {}  # insertion-ordered set: O(1) lookups under a pong flood
        self._pongs_pending = 0
        # rpc
        self._rpc_handlers: dict[str, RpcHandler] = {}
        # callbacks
        self._cb_operator_joined: Optional[Callable[[str], Any]] = None
        self._cb_operator_left: Optional[Callable[[str], Any]] = None
        self._cb_active_changed: Optional[Callable[[Optional[str]], Any]] = None
        self._cb_connection: Optional[Callable[[ConnectionState], Any]] = None
        self._logged_once: set[str] = set()

    # ------------------------------------------------------------------------------------------
    # lifecycle
    # ------------------------------------------------------------------------------------------
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
            self._connect_args = dict(
                url=url,
                token=token,
                api_key=api_key,
                api_secret=api_secret,
                identity=identity,
                room=room,
                active_operator=active_operator,
            )
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
        task, self._reconnect_task = self._reconnect_task, None
        if task is not None and task is not asyncio.current_task():
            task.cancel()
        async with self._lifecycle:
            self._closing = True
            await self._close_room()
            self._active = None
            self._set_state(ConnectionState.DISCONNECTED)

    def _token(self) -> str:
        args = self._connect_args or {}
        if args.get('token'):
            return args['token']
        return mint_token(
            args['api_key'],
            args['api_secret'],
            args['identity'],
            args['room'],
            active_operator=args.get('active_operator'),
        )

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
        self.log.info('[%s] connecting as %s to %s', self.session, self.role, url)
        try:
            await room.connect(url, self._token(), options)
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
        for method, handler in self._builtin_rpc().items():
            lp.register_rpc_method(method, self._wrap_rpc(handler))
        for method, handler in self._rpc_handlers.items():
            lp.register_rpc_method(method, self._wrap_rpc(handler))
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
        self._spawn(self._rtt_loop(), 'rtt')
        self._set_state(ConnectionState.CONNECTED)
        self.log.info(
            "[%s] connected as %s '%s' in room '%s'", self.session, self.role, self._identity, self._room_name
        )

    async def _close_room(self) -> None:
        room, self._room = self._room, None
        await self._teardown_role()
        for task in list(self._tasks):
            task.cancel()
        for task in list(self._tasks):
            try:
                await task
            except (asyncio.CancelledError, Exception):
                pass
        self._tasks.clear()
        self._robot_identity = None
        self._operators.clear()
        self._own_pings.clear()
        self._clear_received()
        if room is not None:
            self.log.info('[%s] disconnecting', self.session)
            try:
                await room.disconnect()
            except Exception as exc:
                self.log.warning('[%s] error while leaving the room: %s', self.session, exc)

    def _set_state(self, state: ConnectionState) -> None:
        if state is self._state:
            return
        self._state = state
        self._emit(self._cb_connection, state)

    def on_connection_state(self, cb: Callable[[ConnectionState], Any]) -> None:
        """Called with the new state on connect, reconnect attempts and disconnects."""
        self._cb_connection = cb

    # ------------------------------------------------------------------------------------------
    # room events
    # ------------------------------------------------------------------------------------------
    def _install_handlers(self, room: rtc.Room) -> None:
        room.on('participant_connected', self._on_participant_connected)
        room.on('participant_disconnected', self._on_participant_disconnected)
        room.on('participant_attributes_changed', self._on_attributes_changed)
        room.on('data_received', self._on_data_received)
        # Connection events are tied to their room: a closed room's late event must not act on its successor.
        room.on('reconnecting', lambda *_: room is self._room and self._on_reconnecting())
        room.on('reconnected', lambda *_: room is self._room and self._on_reconnected())
        room.on('disconnected', lambda reason=None: room is self._room and self._on_disconnected(reason))
        room.on('track_subscribed', self._on_track_subscribed)
        for topic, handler in self._stream_handlers().items():
            room.register_byte_stream_handler(topic, self._stream_reader(topic, handler))

    def _on_participant_connected(self, participant: rtc.RemoteParticipant) -> None:
        self._classify(participant)

    def _on_attributes_changed(self, changed: dict, participant: rtc.Participant) -> None:
        if participant.identity == self._identity:
            return
        self._classify(participant)

    def _on_participant_disconnected(self, participant: rtc.RemoteParticipant) -> None:
        ident = participant.identity
        self.log.info("[%s] participant '%s' disconnected", self.session, ident)
        if ident in self._operators:
            self._operators.discard(ident)
            self._emit(self._cb_operator_left, ident)
        if ident == self._robot_identity:
            self._robot_identity = None
        # The active operator stays pinned: a reconnect with the same identity resumes control.

    def _classify(self, participant: rtc.Participant) -> None:
        role = participant.attributes.get(ROLE_ATTR)
        ident = participant.identity
        if role == ROLE_ROBOT:
            if not self._accept_robot(ident):
                return
            if self._robot_identity != ident:
                self.robot_arrivals += 1
            self._robot_identity = ident
            self._on_robot_attributes(participant.attributes)
        elif role == ROLE_OPERATOR and ident not in self._operators:
            self._operators.add(ident)
            self._emit(self._cb_operator_joined, ident)

    def _accept_robot(self, ident: str) -> bool:
        """Whether ``ident`` may be this session's robot (a room has one robot).

        The first participant with the robot role keeps it while it is in the room (or the one
        named by ``expected_robot``); anyone else setting the attribute is ignored, so a participant
        cannot take over the robot's identity for state, frames and handoffs by setting an attribute.
        """
        if self.expected_robot is not None:
            ok = ident == self.expected_robot
        else:
            current = self._robot_identity
            room = self._room
            ok = current is None or current == ident or room is None or current not in room.remote_participants
        if not ok:
            self._metrics.drop('second-robot')
            self._log_once(
                f'second-robot-{ident}',
                "[bad-payload] '%s' claims the robot role, but the robot is '%s'; ignored",
                ident,
                self.expected_robot or self._robot_identity,
            )
        return ok

    def _rebuild_rosters(self) -> None:
        room = self._room
        if room is None:
            return
        for participant in list(room.remote_participants.values()):
            self._classify(participant)

    def _on_robot_attributes(self, attributes: dict[str, str]) -> None:
        """Operators mirror the robot's pointer; the robot itself ignores other robots."""

    def _on_reconnecting(self) -> None:
        self.log.warning('[%s] connection lost; reconnecting', self.session)
        self._set_state(ConnectionState.RECONNECTING)
        if self._server_watch is None:
            self._server_watch = self._spawn(self._watch_server(), 'server-watch')

    async def _watch_server(self) -> None:
        """While the SDK retries on its own schedule, watch the server; rejoin as soon as it is back.

        After a server crash the SDK's attempts back off to several seconds apart; probing the signal
        port lets the session reconnect within a fraction of a second of the server's return.
        """
        assert self._connect_args is not None
        url = urllib.parse.urlparse(self._connect_args['url'])
        host = url.hostname or '127.0.0.1'
        port = url.port or (443 if url.scheme in ('wss', 'https') else 80)
        was_down = False
        try:
            while self._state is ConnectionState.RECONNECTING and not self._closing:
                try:
                    _, writer = await asyncio.wait_for(asyncio.open_connection(host, port), 0.5)
                    writer.close()
                    up = True
                except (OSError, asyncio.TimeoutError):
                    up = False
                if not up:
                    was_down = True
                elif was_down:
                    await asyncio.sleep(0.2)  # give a fresh server a moment to accept joins
                    if self._state is ConnectionState.RECONNECTING and self._reconnect_task is None:
                        self.log.info('[%s] server is back; rejoining', self.session)
                        self._reconnect_task = asyncio.get_running_loop().create_task(self._reconnect_loop(0))
                    return
                await asyncio.sleep(0.25)
        finally:
            self._server_watch = None

    def _on_reconnected(self) -> None:
        self.reconnect_count += 1
        self.log.info('[%s] reconnected, clearing sync buffers and latest slots', self.session)
        self._robot_identity = None
        self._operators.clear()
        self._clear_received()
        self._rebuild_rosters()
        self._spawn(self._reassert_attributes(), 'reassert-attributes')
        self._set_state(ConnectionState.CONNECTED)

    async def _reassert_attributes(self) -> None:
        room = self._room
        if room is None:
            return
        try:
            await write_attributes(room.local_participant, self._own_attributes(), ATTRIBUTE_WRITE_TIMEOUT_S)
        except Exception as exc:
            self.log.warning('[%s] could not restore attributes after reconnect: %s', self.session, exc)

    def _own_attributes(self) -> dict[str, str]:
        return {ROLE_ATTR: self.role}

    def _on_disconnected(self, reason: Any = None) -> None:
        if self._closing or self._room is None:
            return
        self.log.error('[%s] disconnected from LiveKit (%s)', self.session, reason)
        self._set_state(ConnectionState.DISCONNECTED)
        if self.auto_reconnect and self._reconnect_task is None:
            self._reconnect_task = asyncio.get_running_loop().create_task(self._reconnect_loop())

    async def _reconnect_loop(self, first_delay: Optional[float] = None) -> None:
        attempt = 0
        try:
            while not self._closing:
                delay = _RECONNECT_BACKOFF_S[min(attempt, len(_RECONNECT_BACKOFF_S) - 1)]
                await asyncio.sleep(first_delay if attempt == 0 and first_delay is not None else delay)
                attempt += 1
                async with self._lifecycle:
                    if self._closing:
                        return
                    await self._close_room()
                    self._set_state(ConnectionState.RECONNECTING)
                    try:
                        await self._open()
                    except Exception as exc:
                        self._set_state(ConnectionState.DISCONNECTED)
                        self.log.warning(
                            '[%s] reconnect attempt %d failed: %s', self.session, attempt, redact_tokens(str(exc))
                        )
                        continue
                    self.reconnect_count += 1
                    return
        finally:
            self._reconnect_task = None

    def _on_track_subscribed(
        self, track: rtc.Track, publication: rtc.RemoteTrackPublication, participant: rtc.RemoteParticipant
    ) -> None:
        """Operators consume camera tracks; the robot ignores subscriptions."""

    # ------------------------------------------------------------------------------------------
    # data packets and byte streams
    # ------------------------------------------------------------------------------------------
    def _data_handlers(self) -> dict[str, Callable[[bytes, str], None]]:
        return {TOPIC_RTT: self._on_rtt}

    def _stream_handlers(self) -> dict[str, Callable[[bytes, str], Any]]:
        return {}

    def _on_data_received(self, packet: rtc.DataPacket) -> None:
        handler = self._data_handlers().get(packet.topic or '')
        if handler is None:
            return
        # A packet that overtakes its sender's join arrives without a sender (the SDK cannot name
        # it yet); it then fails every sender check, as it does in livekit-portal.
        sender = packet.participant.identity if packet.participant is not None else ''
        self.log.debug('[%s] %s packet (%d bytes) from %r', self.session, packet.topic, len(packet.data), sender)
        try:
            handler(packet.data, sender)
        except Exception:  # never let one packet take the session down
            self._metrics.drop('internal-error')
            self.log.exception('[%s] error handling a %s packet from %r', self.session, packet.topic, sender)

    def _stream_reader(self, topic: str, handler: Callable[[bytes, str], Any]) -> Callable:
        limit = self._stream_size_limit(topic)

        async def read(reader: rtc.ByteStreamReader, sender: str) -> None:
            # A refused or oversized stream is still read to its end, discarding the bytes: the SDK
            # would otherwise queue the rest of it in memory until the trailer arrives.
            keep = self._accept_stream(topic, sender)
            buf: Optional[bytearray] = bytearray() if keep else None
            try:
                async for chunk in reader:
                    if buf is None:
                        continue
                    buf += chunk
                    if len(buf) > limit:
                        buf = None
                        self._metrics.drop('oversized-stream')
                        self._log_once(
                            f'oversize-{topic}',
                            '[bad-payload] %s stream from %r exceeds %d bytes; dropped',
                            topic,
                            sender,
                            limit,
                        )
            except Exception as exc:
                self._metrics.drop('stream-error')
                self.log.debug('[%s] %s stream from %r failed: %s', self.session, topic, sender, exc)
                return
            if buf is None:
                return
            try:
                result = handler(bytes(buf), sender)
                if inspect.isawaitable(result):
                    await result
            except Exception:
                self._metrics.drop('internal-error')
                self.log.exception('[%s] error handling a %s stream from %r', self.session, topic, sender)

        def on_stream(reader: rtc.ByteStreamReader, sender: str) -> None:
            self._spawn(read(reader, sender), f'stream-{topic}')

        return on_stream

    def _stream_size_limit(self, topic: str) -> int:
        return 64 * 1024 * 1024

    def _accept_stream(self, topic: str, sender: str) -> bool:
        """Hook: whether to keep the bytes of a stream that is starting (a refusal counts itself)."""
        return True

    # ------------------------------------------------------------------------------------------
    # role hooks
    # ------------------------------------------------------------------------------------------
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

    # ------------------------------------------------------------------------------------------
    # control plane
    # ------------------------------------------------------------------------------------------
    def active_operator(self) -> Optional[str]:
        """The identity whose actions the robot accepts (the operator's mirror of it)."""
        return self._active

    def operators(self) -> list[str]:
        """Operators in the room, sorted, excluding this participant and the robot."""
        return sorted(self._operators - {self._identity, self._robot_identity or ''})

    def on_operator_joined(self, cb: Callable[[str], Any]) -> None:
        self._cb_operator_joined = cb

    def on_operator_left(self, cb: Callable[[str], Any]) -> None:
        self._cb_operator_left = cb

    def on_active_operator_changed(self, cb: Callable[[Optional[str]], Any]) -> None:
        self._cb_active_changed = cb

    def _update_active(self, identity: Optional[str]) -> None:
        identity = identity or None
        if identity != self._active:
            self._active = identity
            self.log.info('[%s] active operator: %s', self.session, identity or '(none)')
            self._emit(self._cb_active_changed, identity)

    # ------------------------------------------------------------------------------------------
    # RTT
    # ------------------------------------------------------------------------------------------
    async def _rtt_loop(self) -> None:
        period = self.contract.ping_ms / 1000.0
        if period <= 0:
            return
        while True:
            room = self._room
            if room is not None and self.is_connected:
                ts = now_us()
                self._remember_ping(ts)
                try:
                    await room.local_participant.publish_data(encode_rtt(RTT_PING, ts), reliable=False, topic=TOPIC_RTT)
                    self._metrics.ping_sent()
                except Exception as exc:
                    self.log.debug('[%s] ping failed: %s', self.session, exc)
            await asyncio.sleep(period)

    def _remember_ping(self, ts: int) -> None:
        self._own_pings[ts] = None
        if len(self._own_pings) > _OWN_PINGS_REMEMBERED:
            del self._own_pings[next(iter(self._own_pings))]

    def _on_rtt(self, data: bytes, sender: str) -> None:
        packet = decode_rtt(data)
        if packet is None:
            self._metrics.drop('bad-rtt')
            return
        kind, ts = packet
        if kind == RTT_PING:
            if self._pongs_pending >= _PONG_QUEUE or self._room is None:
                self._metrics.drop('pong-backlog')  # a ping flood: answer what the queue holds
                return
            self._pongs_pending += 1
            self._spawn(self._pong(sender, ts), 'pong')
        elif self._own_pings.pop(ts, False) is None:  # one of ours (each is answered once)
            self._metrics.rtt_sample(now_us() - ts)
        else:
            self._metrics.pong_ignored()  # another peer's round trip (Portal broadcasts pongs) or junk

    async def _pong(self, pinger: str, ts: int) -> None:
        try:
            room = self._room
            if room is not None:
                dest = [pinger] if pinger else []
                await room.local_participant.publish_data(
                    encode_rtt(RTT_PONG, ts), reliable=False, topic=TOPIC_RTT, destination_identities=dest
                )
        except Exception as exc:
            self.log.debug('[%s] pong failed: %s', self.session, exc)
        finally:
            self._pongs_pending -= 1

    # ------------------------------------------------------------------------------------------
    # RPC
    # ------------------------------------------------------------------------------------------
    def register_rpc_method(self, method: str, handler: RpcHandler) -> None:
        """Serve ``method``; works before or after connect and survives reconnects.

        The handler gets an :data:`RpcInvocation` (payload, caller_identity, ...) and returns a
        string (sync or async). Raise :class:`RpcCallError` or ``rtc.RpcError`` to fail with a code;
        any other exception becomes code 1500 ``handler raised <Type>: <message>``.
        """
        self._rpc_handlers[method] = handler
        if self._room is not None:
            self._room.local_participant.register_rpc_method(method, self._wrap_rpc(handler))

    def unregister_rpc_method(self, method: str) -> None:
        self._rpc_handlers.pop(method, None)
        if self._room is not None:
            self._room.local_participant.unregister_rpc_method(method)

    def _wrap_rpc(self, handler: RpcHandler) -> Callable[[rtc.RpcInvocationData], Awaitable[str]]:
        async def wrapper(data: rtc.RpcInvocationData) -> str:
            try:
                result = handler(data)
                if inspect.isawaitable(result):
                    result = await result
            except rtc.RpcError:
                raise
            except RpcCallError as exc:
                raise rtc.RpcError(exc.code, exc.message, exc.data) from exc
            except Exception as exc:
                raise rtc.RpcError(RPC_APPLICATION_ERROR, f'handler raised {type(exc).__name__}: {exc}') from exc
            return '' if result is None else str(result)

        return wrapper

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
        try:
            return await room.local_participant.perform_rpc(
                destination_identity=dest, method=method, payload=payload, response_timeout=timeout
            )
        except rtc.RpcError as exc:
            raise RpcCallError(exc.code, exc.message, exc.data) from None

    # ------------------------------------------------------------------------------------------
    # metrics and helpers
    # ------------------------------------------------------------------------------------------
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

    def _queue_packet(
        self,
        what: str,
        codec: Any,
        queue: Optional[SendQueue],
        fields: Mapping[str, Any],
        values: Mapping[str, Any],
        check_types: bool,
        *encode_args: int,
    ) -> Optional[bytes]:
        """Encode a state or action packet (carry-forward) and queue it; None if the queue is full."""
        if codec is None:
            raise EmptySchema(f'the wire contract declares no {what} fields')
        if queue is None:
            raise NotConnected(f'{self.role} is not connected')
        if check_types:
            check_value_types(fields, values)
        with self._send_lock:
            packet, saturated = codec.encode(values, *encode_args)
        if saturated:
            self._log_once(f'sat-{what}-{saturated}', '[saturated] %s fields %s clipped to their dtype range',
                           what, saturated, level=logging.INFO)  # fmt: skip
        accepted, _ = queue.put(packet)
        if not accepted:
            self._metrics.drop('publish-full')
            self._log_once(f'{what}-full', '[publish-full] %s queue full; packet dropped', what)
            return None
        return packet

    def _start_drainer(self, name: str, queue: SendQueue, send: Callable[[Any], Awaitable[None]]) -> None:
        drainer = Drainer(name, queue, send)
        drainer.start()
        self._drainers.append(drainer)

    async def _stop_drainers(self) -> None:
        for drainer in self._drainers:
            await drainer.stop()
        self._drainers.clear()

    def _spawn(self, coro: Awaitable, name: str) -> asyncio.Task:
        task = asyncio.ensure_future(coro)
        task.set_name(name)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    def _emit(self, cb: Optional[Callable[..., Any]], *args: Any) -> None:
        if cb is None:
            return
        try:
            result = cb(*args)
            if inspect.iscoroutine(result):
                self._spawn(result, 'callback')
        except Exception:
            self.log.exception('[callback-panic] %s callback raised', getattr(cb, '__name__', cb))

    def _log_once(self, key: str, msg: str, *args: Any, level: int = logging.WARNING) -> None:
        if key in self._logged_once:
            return
        if len(self._logged_once) < 1024:
            self._logged_once.add(key)
        self.log.log(level, msg, *args)

    def _count_packet_error(self, exc: PortalError | Exception, what: str, sender: str) -> None:
        reason = getattr(exc, 'reason', 'bad-payload')
        self._metrics.drop(reason)
        fp = getattr(exc, 'fingerprint', None)
        key = f'{what}-{reason}-{fp}' if reason in ('schema-mismatch', 'unknown-chunk') else f'{what}-{reason}-{sender}'
        self._log_once(key, '[%s] %s from %r dropped: %s', reason, what, sender, exc)
