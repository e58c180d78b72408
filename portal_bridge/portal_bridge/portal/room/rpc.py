"""RPC: the methods a session serves (kept across reconnects) and calls to other peers.

Handlers may be sync or async and return a string; :class:`~..errors.RpcCallError` keeps its code
on the wire, any other exception becomes LiveKit's application error (1500) naming the exception,
so a bug in a handler is an answer to the caller and never a silent timeout.
"""

from __future__ import annotations

import inspect
from typing import Awaitable, Callable, Optional, Union

from livekit import rtc

from ..errors import RpcCallError
from ..protocol import RPC_APPLICATION_ERROR

__all__ = ['RpcTable', 'RpcHandler', 'RpcInvocation', 'DEFAULT_RPC_TIMEOUT_S', 'call']

DEFAULT_RPC_TIMEOUT_S = 15.0

RpcInvocation = rtc.RpcInvocationData
RpcHandler = Callable[[rtc.RpcInvocationData], Union[str, None, Awaitable[Optional[str]]]]


def _wrap(handler: RpcHandler) -> Callable[[rtc.RpcInvocationData], Awaitable[str]]:
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


class RpcTable:
    """The served methods; registered on each room the session joins."""

    def __init__(self) -> None:
        self._handlers: dict[str, RpcHandler] = {}
        self._participant: Optional[rtc.LocalParticipant] = None

    def register(self, method: str, handler: RpcHandler) -> None:
        self._handlers[method] = handler
        if self._participant is not None:
            self._participant.register_rpc_method(method, _wrap(handler))

    def unregister(self, method: str) -> None:
        self._handlers.pop(method, None)
        if self._participant is not None:
            self._participant.unregister_rpc_method(method)

    def attach(self, participant: Optional[rtc.LocalParticipant], builtin: dict[str, RpcHandler]) -> None:
        """Serve the built-in and registered methods on a newly joined room (None: left it)."""
        self._participant = participant
        if participant is None:
            return
        for method, handler in {**builtin, **self._handlers}.items():
            participant.register_rpc_method(method, _wrap(handler))


async def call(participant: rtc.LocalParticipant, destination: str, method: str, payload: str, timeout_s: float) -> str:
    """Call ``method`` on ``destination``; RpcCallError (with the LiveKit code) when it fails."""
    try:
        return await participant.perform_rpc(
            destination_identity=destination, method=method, payload=payload, response_timeout=timeout_s
        )
    except rtc.RpcError as exc:
        raise RpcCallError(exc.code, exc.message, exc.data) from None
