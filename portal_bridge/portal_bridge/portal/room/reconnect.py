"""Getting a session back into its room: the SDK's own retries, a server probe, our rejoin loop.

While the SDK retries on its own schedule (``reconnecting``), the server's signal port is probed:
after a server crash the SDK's attempts back off to several seconds apart, and probing lets the
session rejoin within a fraction of a second of the server's return. When LiveKit gives up
(``disconnected`` without our asking) and ``auto_reconnect`` is on, the session rejoins with a
short backoff until it succeeds or is closed.
"""

from __future__ import annotations

import asyncio
import enum
from typing import TYPE_CHECKING, Any, Optional
import urllib.parse

from .tokens import redact_tokens

if TYPE_CHECKING:
    from .session import PortalSession

__all__ = ['ConnectionState', 'Reconnector', 'RECONNECT_BACKOFF_S']

RECONNECT_BACKOFF_S = (0.5, 1.0, 2.0)  # capped low: a returning server should see us within seconds


class ConnectionState(enum.Enum):
    DISCONNECTED = 'disconnected'
    CONNECTING = 'connecting'
    CONNECTED = 'connected'
    RECONNECTING = 'reconnecting'


async def server_accepts(host: str, port: int) -> bool:
    """Whether the server's signal port accepts a TCP connection within 0.5 s."""
    try:
        _, writer = await asyncio.wait_for(asyncio.open_connection(host, port), 0.5)
    except (OSError, asyncio.TimeoutError):
        return False
    writer.close()
    return True


class Reconnector:
    """The reconnect side of one session (it calls back into the session to close and reopen)."""

    def __init__(self, session: PortalSession) -> None:
        self._s = session
        self._task: Optional[asyncio.Task] = None
        self._watch: Optional[asyncio.Task] = None

    def cancel(self) -> None:
        """Stop a pending rejoin loop (on an explicit disconnect)."""
        task, self._task = self._task, None
        if task is not None and task is not asyncio.current_task():
            task.cancel()

    def on_reconnecting(self) -> None:
        s = self._s
        s.log.warning('[%s] connection lost; reconnecting', s.label)
        s._set_state(ConnectionState.RECONNECTING)
        if self._watch is None:
            self._watch = s._tasks.spawn(self._watch_server(), 'server-watch')

    async def _watch_server(self) -> None:
        s = self._s
        assert s._connect_args is not None
        url = urllib.parse.urlparse(s._connect_args['url'])
        host = url.hostname or '127.0.0.1'
        port = url.port or (443 if url.scheme in ('wss', 'https') else 80)
        was_down = False
        try:
            while s.connection_state is ConnectionState.RECONNECTING and not s._closing:
                if not await server_accepts(host, port):
                    was_down = True
                elif was_down:
                    await asyncio.sleep(0.2)  # give a fresh server a moment to accept joins
                    if s.connection_state is ConnectionState.RECONNECTING and self._task is None:
                        s.log.info('[%s] server is back; rejoining', s.label)
                        self._task = asyncio.get_running_loop().create_task(self._rejoin_loop(0))
                    return
                await asyncio.sleep(0.25)
        finally:
            self._watch = None

    def on_disconnected(self, reason: Any = None) -> None:
        s = self._s
        if s._closing or s._room is None:
            return
        s.log.error('[%s] disconnected from LiveKit (%s)', s.label, reason)
        s._set_state(ConnectionState.DISCONNECTED)
        if s.auto_reconnect and self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._rejoin_loop())

    async def _rejoin_loop(self, first_delay: Optional[float] = None) -> None:
        s = self._s
        attempt = 0
        try:
            while not s._closing:
                delay = RECONNECT_BACKOFF_S[min(attempt, len(RECONNECT_BACKOFF_S) - 1)]
                await asyncio.sleep(first_delay if attempt == 0 and first_delay is not None else delay)
                attempt += 1
                async with s._lifecycle:
                    if s._closing:
                        return
                    await s._close_room()
                    s._set_state(ConnectionState.RECONNECTING)
                    try:
                        await s._open()
                    except Exception as exc:
                        s._set_state(ConnectionState.DISCONNECTED)
                        s.log.warning('[%s] reconnect attempt %d failed: %s', s.label, attempt, redact_tokens(str(exc)))
                        continue
                    s.reconnect_count += 1
                    return
        finally:
            self._task = None
