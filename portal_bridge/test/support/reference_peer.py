"""The reference Portal peer, livekit-portal (the upstream implementation), inside a test.

livekit-portal's ``Robot`` and ``Operator`` are asyncio objects: ``connect``, ``disconnect``,
``set_active_operator`` and ``perform_rpc`` are coroutines, the sends are synchronous
(fire-and-forget, queue-backed, callable from any thread), and callbacks are hopped onto the
loop that was running when ``connect()`` was called. All reference peers of a test share one
loop thread here, because UniFFI dispatches async RPC handlers on one process-global loop (the
loop of the most recent ``connect()``).

The reference peer embeds its own copy of the LiveKit Rust SDK, which has the reply race of
``set_attributes`` described in ``docs/wire_notes.md``, except that its write then *fails*
("request timeout") after 5 s although the server applied it. livekit-portal turns that into a
failed ``connect()`` ("failed to publish role attribute ... request timeout": 6 of 100 connects
measured here), and its robot's ``portal.set_active_operator`` handler into RPC error 2002 with
its pointer left unchanged (not seen in 550 handoffs measured; the path is in the upstream source). Those calls
are retried here, only for that error, and every retry is recorded in
:attr:`ReferencePeers.sdk_retries` so a test can report it; any other error fails the test.
The race is between the server's reply and the SDK task that registers its waiter, so a slow host
loses it far more often: with the suite confined to 1.3 CPUs a connect failed three times in a row.
Hence six attempts (30 s at worst).
"""

from __future__ import annotations

import threading
from types import ModuleType
from typing import Any, Awaitable, Callable, Optional, TypeVar

import pytest

from portal_bridge.portal import mint_token
from portal_bridge.portal.loop_thread import LoopThread

__all__ = ['ReferencePeers', 'Repeater', 'is_sdk_request_timeout', 'load_livekit_portal']

T = TypeVar('T')
_ATTEMPTS = 6


def load_livekit_portal() -> ModuleType:
    """``livekit.portal``, imported on first use so this module also loads where it is not installed.

    livekit-portal has CPython 3.12 wheels only: the Python 3.10 matrix environment deselects the
    interop tests (``-m 'not interop'``) but still collects them. Where they do run without it,
    they skip saying why, and ``make test`` (PORTAL_BRIDGE_FORBID_SKIPS=1) turns that into a failure.
    """
    return pytest.importorskip(
        'livekit.portal',
        reason='needs livekit-portal, the reference Portal peer (pip install livekit-portal==0.2.8; CPython 3.12)',
    )


def is_sdk_request_timeout(exc: BaseException | str) -> bool:
    """The reference peer's SDK lost the server's reply to an attribute write (see module doc)."""
    return 'request timeout' in str(exc)


class ReferencePeers:
    """livekit-portal Robots and Operators in one room, on one loop thread; all disconnected by close()."""

    def __init__(self, server: Any, room: str) -> None:
        self.lp = load_livekit_portal()
        self.server = server
        self.room = room
        self.loop = LoopThread('livekit-portal')
        self.peers: list[Any] = []
        self.sdk_retries: list[str] = []

    @staticmethod
    def portal_module() -> ModuleType:
        """``livekit.portal`` for tests that need no peers (the contract loader)."""
        return load_livekit_portal()

    def token(self, identity: str) -> str:
        return mint_token(self.server.api_key, self.server.api_secret, identity, self.room)

    def run(self, coro: Awaitable[T], timeout: float = 20.0) -> T:
        return self.loop.run(coro, timeout)

    def robot(self, contract_path: str, identity: str = 'robot', setup: Optional[Callable] = None) -> Any:
        """A connected livekit-portal Robot; ``setup(robot)`` registers callbacks before it joins."""
        lp = self.lp
        return self._connect(lambda: lp.Robot(lp.RobotConfig.from_yaml_file(contract_path, self.room)), identity, setup)

    def operator(self, contract_path: str, identity: str, setup: Optional[Callable] = None) -> Any:
        """A connected livekit-portal Operator; ``setup(operator)`` registers callbacks before it joins."""
        lp = self.lp
        return self._connect(
            lambda: lp.Operator(lp.OperatorConfig.from_yaml_file(contract_path, self.room)), identity, setup
        )

    def _connect(self, make: Callable[[], Any], identity: str, setup: Optional[Callable]) -> Any:
        for attempt in range(_ATTEMPTS):
            peer = make()
            if setup is not None:
                setup(peer)
            try:
                self.run(peer.connect(self.server.url, self.token(identity)), 30)
            except self.lp.PortalError as exc:
                if not is_sdk_request_timeout(exc) or attempt == _ATTEMPTS - 1:
                    raise
                self.sdk_retries.append(f'connect {identity}: {exc}')
                try:
                    self.run(peer.disconnect(), 10)
                except Exception:
                    pass
                continue
            self.peers.append(peer)
            return peer
        raise AssertionError('unreachable')

    def set_active_operator(self, peer: Any, identity: Optional[str], timeout: float = 20.0) -> None:
        """``peer.set_active_operator(identity)``, retried only when the robot's attribute write hit the SDK race."""
        for attempt in range(_ATTEMPTS):
            try:
                self.run(peer.set_active_operator(identity), timeout)
                return
            except self.lp.PortalError as exc:
                if not is_sdk_request_timeout(exc) or attempt == _ATTEMPTS - 1:
                    raise
                self.sdk_retries.append(f'set_active_operator({identity!r}) by {peer.local_identity()}: {exc}')

    def close(self) -> None:
        for peer in reversed(self.peers):
            try:
                self.run(peer.disconnect(), 10)
            except Exception:
                pass
        self.peers.clear()
        self.loop.stop()


class Repeater:
    """Call ``fn(i)`` every ``period`` seconds on a thread of its own until stopped (a robot loop, a teleop)."""

    def __init__(self, fn: Callable[[int], Any], period: float = 1 / 30) -> None:
        self.errors: list[BaseException] = []
        self._stop = threading.Event()
        self._fn = fn
        self._period = period
        self._thread = threading.Thread(target=self._run, daemon=True, name='repeater')
        self._thread.start()

    def _run(self) -> None:
        i = 0
        while not self._stop.is_set():
            try:
                self._fn(i)
            except Exception as exc:  # reported by stop(): a failing sender must fail the test
                self.errors.append(exc)
                return
            i += 1
            self._stop.wait(self._period)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(5)
        assert not self.errors, f'repeater failed: {self.errors!r}'
