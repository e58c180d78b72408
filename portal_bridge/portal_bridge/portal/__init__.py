"""The Portal protocol and sessions in plain Python: no rclpy anywhere in this package.

Wire format, schemas and fingerprints, the ``portal.yaml`` contract, the SyncBuffer, metrics,
and the Robot and Operator roles on top of the ``livekit`` SDK. Usable without ROS.
"""

from .dtypes import DType
from .errors import (
    AlreadyConnected,
    AmbiguousPeer,
    CodecError,
    DtypeMismatch,
    EmptySchema,
    InvalidFrameDimensions,
    NoPeer,
    NotConnected,
    PortalError,
    RoomError,
    RpcCallError,
    UnknownChunk,
    UnknownVideoTrack,
    WrongFrameSize,
)
from .frames import VideoFrame
from .metrics import PortalMetrics
from .operator import Operator
from .records import Action, ActionChunk, Observation, State
from .robot import AccessPolicy, Robot
from .schema import ChunkSpec, FieldSpec
from .session import ConnectionState, now_us
from .sync_buffer import StallPolicy, SyncBuffer
from .tokens import mint_token
from .wire_contract import ContractError, VideoCodec, VideoSpec, WireContract

__all__ = [
    'AccessPolicy', 'Action', 'ActionChunk', 'AlreadyConnected', 'AmbiguousPeer', 'ChunkSpec', 'CodecError',
    'ConnectionState', 'ContractError', 'DType', 'DtypeMismatch', 'EmptySchema', 'FieldSpec',
    'InvalidFrameDimensions', 'NoPeer', 'NotConnected', 'Observation', 'Operator', 'PortalError',
    'PortalMetrics', 'Robot', 'RoomError', 'RpcCallError', 'StallPolicy', 'State', 'SyncBuffer',
    'UnknownChunk', 'UnknownVideoTrack', 'VideoCodec', 'VideoFrame', 'VideoSpec', 'WireContract',
    'WrongFrameSize', 'mint_token', 'now_us',
]  # fmt: skip
