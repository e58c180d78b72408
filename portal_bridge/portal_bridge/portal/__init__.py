"""The Portal protocol and sessions in plain Python: no rclpy anywhere in this package.

Wire format, schemas and fingerprints, the ``portal.yaml`` contract, the SyncBuffer, metrics,
and the Robot and Operator roles on top of the ``livekit`` SDK. Usable without ROS.
"""

from .codecs import VideoCodec
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
from .peer_settings import PeerSettings
from .records import Action, ActionChunk, Observation, State
from .roles.access import AccessPolicy
from .roles.operator import Operator
from .roles.robot import Robot
from .room.session import ConnectionState, now_us
from .room.tokens import mint_token
from .sync_buffer import StallPolicy, SyncBuffer
from .wire.contract import ContractError, VideoSpec, WireContract
from .wire.dtypes import DType
from .wire.schema import ChunkSpec, FieldSpec

__all__ = [
    'AccessPolicy', 'Action', 'ActionChunk', 'AlreadyConnected', 'AmbiguousPeer', 'ChunkSpec', 'CodecError',
    'ConnectionState', 'ContractError', 'DType', 'DtypeMismatch', 'EmptySchema', 'FieldSpec',
    'InvalidFrameDimensions', 'NoPeer', 'NotConnected', 'Observation', 'Operator', 'PeerSettings', 'PortalError',
    'PortalMetrics', 'Robot', 'RoomError', 'RpcCallError', 'StallPolicy', 'State', 'SyncBuffer',
    'UnknownChunk', 'UnknownVideoTrack', 'VideoCodec', 'VideoFrame', 'VideoSpec', 'WireContract',
    'WrongFrameSize', 'mint_token', 'now_us',
]  # fmt: skip
