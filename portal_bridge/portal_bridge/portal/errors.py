"""Exceptions raised by Portal sessions.

Misuse and wrong state raise these; bad input from the network never does (it is counted and
dropped instead). RPC failures keep their numeric code, unlike livekit-portal's flat string.
"""

from __future__ import annotations

from typing import Optional

from .protocol import (  # re-exported: the codes belong with the errors that carry them
    EMERGENCY_STOP_REFUSED,
    RPC_APPLICATION_ERROR,
    SET_ACTIVE_OPERATOR_NOT_CONNECTED,
    SET_ACTIVE_OPERATOR_REFUSED,
    SET_ACTIVE_OPERATOR_WRITE_FAILED,
)

__all__ = [
    'PortalError',
    'NotConnected',
    'AlreadyConnected',
    'RoomError',
    'NoPeer',
    'AmbiguousPeer',
    'UnknownVideoTrack',
    'UnknownChunk',
    'WrongFrameSize',
    'InvalidFrameDimensions',
    'CodecError',
    'DtypeMismatch',
    'EmptySchema',
    'RpcCallError',
    'PointerRefused',
    'SET_ACTIVE_OPERATOR_NOT_CONNECTED',
    'SET_ACTIVE_OPERATOR_WRITE_FAILED',
    'SET_ACTIVE_OPERATOR_REFUSED',
    'RPC_APPLICATION_ERROR',
    'EMERGENCY_STOP_REFUSED',
]


class PortalError(Exception):
    """Base class of every session error."""


class NotConnected(PortalError):
    """The session is not connected (connect first, or it was disconnected)."""


class AlreadyConnected(PortalError):
    """``connect()`` on a session that already holds a room."""


class RoomError(PortalError):
    """LiveKit refused or lost the connection, or a room operation failed."""


class NoPeer(PortalError):
    """No participant to talk to (no robot in the room, or nobody to route an RPC to)."""


class AmbiguousPeer(PortalError):
    """An RPC without a destination when several participants could be meant."""


class UnknownVideoTrack(PortalError):
    """A frame for a track the wire contract does not declare."""


class UnknownChunk(PortalError):
    """An action chunk name the wire contract does not declare."""


class WrongFrameSize(PortalError):
    """A frame buffer whose length is not ``width * height * 3``."""


class InvalidFrameDimensions(PortalError):
    """Odd width or height on a WebRTC track (I420 needs even sizes)."""


class CodecError(PortalError):
    """A frame the frame-video encoder cannot send (too large, zero size, long name)."""


class DtypeMismatch(PortalError, TypeError):
    """A value whose Python type does not fit the field's declared dtype."""


class EmptySchema(PortalError):
    """Sending state or actions when the wire contract declares no such fields."""


class PointerRefused(PortalError):
    """A change of the active operator that the robot refuses (its e-stop is latched)."""


class RpcCallError(PortalError):
    """An RPC that failed, with LiveKit's numeric code (1500 handler error, 1502 timeout, ...)."""

    def __init__(self, code: int, message: str, data: Optional[str] = None) -> None:
        super().__init__(f'rpc error {code}: {message}')
        self.code = code
        self.message = message
        self.data = data
