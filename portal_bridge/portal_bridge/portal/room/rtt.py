"""Round-trip time: our pings, answering other peers' pings, and which pongs count as samples.

Wire-compatible with Portal (one packet layout for ping and pong on ``portal_rtt``); unlike
livekit-portal, a pong goes to the pinger only, and only pongs to our own pings become samples,
so another pair of peers measuring their RTT never pollutes ours. Our pings are remembered in an
insertion-ordered dict (O(1) under a pong flood).
"""

from __future__ import annotations

import asyncio
import time
from typing import Callable

from ..protocol import TOPIC_RTT
from ..wire.packets import RTT_PING, RTT_PONG, decode_rtt, encode_rtt
from .events import SessionParts

__all__ = ['RttTracker', 'OWN_PINGS_REMEMBERED', 'now_us']

PONG_QUEUE = 64
# Our own pings whose pong still counts as a sample (1024 at the default 1 Hz: 17 min). Under a
# flood, pongs have come back 30 s late; a shorter memory counted them as other peers' pongs.
OWN_PINGS_REMEMBERED = 1024


def now_us() -> int:
    """Wall-clock microseconds since the Unix epoch (Portal's timestamp clock)."""
    return time.time_ns() // 1000


class RttTracker:
    """Pings every ``period_s`` while connected; answers pings; records RTT samples in metrics."""

    def __init__(
        self,
        period_s: float,
        connected: Callable[[], bool],
        parts: SessionParts,
    ) -> None:
        self.period_s = period_s
        self._connected = connected
        self._parts = parts
        self._own_pings: dict[int, None] = {}  # insertion-ordered set
        self._pongs_pending = 0

    def forget(self) -> None:
        """Drop remembered pings (on leaving a room: their pongs can no longer come)."""
        self._own_pings.clear()

    async def ping_loop(self) -> None:
        if self.period_s <= 0:
            return
        while True:
            room = self._parts.room()
            if room is not None and self._connected():
                ts = now_us()
                self.remember(ts)
                try:
                    await room.local_participant.publish_data(encode_rtt(RTT_PING, ts), reliable=False, topic=TOPIC_RTT)
                    self._parts.metrics.ping_sent()
                except Exception as exc:
                    self._parts.log.debug('ping failed: %s', exc)
            await asyncio.sleep(self.period_s)

    def remember(self, ts: int) -> None:
        self._own_pings[ts] = None
        if len(self._own_pings) > OWN_PINGS_REMEMBERED:
            del self._own_pings[next(iter(self._own_pings))]

    def on_packet(self, data: bytes, sender: str) -> None:
        """Handle one ``portal_rtt`` packet: answer a ping, or count a pong to one of ours."""
        packet = decode_rtt(data)
        if packet is None:
            self._parts.metrics.drop('bad-rtt')
            return
        kind, ts = packet
        if kind == RTT_PING:
            if self._pongs_pending >= PONG_QUEUE or self._parts.room() is None:
                self._parts.metrics.drop('pong-backlog')  # a ping flood: answer what the queue holds
                return
            self._pongs_pending += 1
            self._parts.tasks.spawn(self._pong(sender, ts), 'pong')
        elif self._own_pings.pop(ts, False) is None:  # one of ours (each is answered once)
            self._parts.metrics.rtt_sample(now_us() - ts)
        else:
            self._parts.metrics.pong_ignored()  # another peer's round trip (Portal broadcasts pongs) or junk

    async def _pong(self, pinger: str, ts: int) -> None:
        try:
            room = self._parts.room()
            if room is not None:
                dest = [pinger] if pinger else []
                await room.local_participant.publish_data(
                    encode_rtt(RTT_PONG, ts), reliable=False, topic=TOPIC_RTT, destination_identities=dest
                )
        except Exception as exc:
            self._parts.log.debug('pong failed: %s', exc)
        finally:
            self._pongs_pending -= 1
