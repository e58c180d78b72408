"""Connecting Portal peers to the test server, and cleaning them up."""

from __future__ import annotations

from typing import Any, Optional

from livekit import rtc

from portal_bridge.portal import DType, Operator, Robot, WireContract, mint_token
from portal_bridge.portal.protocol import ROLE_ATTR


def fixture_contract(**knobs: Any) -> WireContract:
    """Portal's integration fixture: state and action ``[j: F32]``."""
    c = WireContract(**knobs)
    c.add_state([('j', DType.F32)]).add_action([('j', DType.F32)])
    return c


class Peers:
    """Robots, operators and raw participants in one room; all disconnected on exit."""

    def __init__(self, server, room: str) -> None:
        self.server = server
        self.room = room
        self._sessions: list = []
        self._rooms: list[rtc.Room] = []

    def token(self, identity: str, **kw: Any) -> str:
        return mint_token(self.server.api_key, self.server.api_secret, identity, self.room, **kw)

    async def robot(self, contract: WireContract, identity: str = 'robot', token: Optional[str] = None, **kw) -> Robot:
        robot = Robot(contract, **kw)
        self._sessions.append(robot)
        await robot.connect(self.server.url, token or self.token(identity))
        return robot

    async def operator(
        self, contract: WireContract, identity: str = 'operator', claim: bool = False, **kw: Any
    ) -> Operator:
        op = Operator(contract, **kw)
        self._sessions.append(op)
        await op.connect(self.server.url, self.token(identity))
        if claim:
            await op.claim_control()
        return op

    async def raw(self, identity: str, role: Optional[str] = None) -> rtc.Room:
        """A plain LiveKit participant (a rogue peer, or a foreign client)."""
        room = rtc.Room()
        self._rooms.append(room)
        await room.connect(self.server.url, self.token(identity))
        if role:
            await room.local_participant.set_attributes({ROLE_ATTR: role})
        return room

    async def close(self) -> None:
        for s in reversed(self._sessions):
            try:
                await s.disconnect()
            except Exception:
                pass
        for r in self._rooms:
            try:
                await r.disconnect()
            except Exception:
                pass

    async def __aenter__(self) -> Peers:
        return self

    async def __aexit__(self, *exc: Any) -> None:
        await self.close()
