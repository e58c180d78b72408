"""The wire contract: everything two Portal peers must agree on, and its ``portal.yaml`` form.

A contract names the camera tracks and their codecs, the state, action and chunk schemas, and the
sync and transport knobs. It is the same document livekit-portal loads from ``portal.yaml``
(format version 1), parsed with the same strictness: unknown keys, wrong types and bad values
are errors that name the offending field. Role, session label and encryption key are not part of
the contract; they are given in code.

Differences from livekit-portal, all of them rejections of inputs that Portal would accept and
then misbehave on: duplicate field names within a schema, and ``max_bitrate_kbps`` on a
byte-stream codec in the programmatic API (YAML already rejects it there). Configuration errors
are :class:`ContractError` exceptions, never crashes.
"""

from __future__ import annotations

from dataclasses import dataclass, field
import math
from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np

from ..codecs import VideoCodec
from .dtypes import DType
from .schema import (
    ChunkSpec,
    FieldSpec,
    action_fingerprint,
    as_fields,
    chunk_fingerprint,
    state_fingerprint,
)

__all__ = [
    'ContractError',
    'VideoCodec',
    'VideoSpec',
    'WireContract',
    'DEFAULT_MJPEG_QUALITY',
    'DEFAULT_MAX_BITRATE_KBPS',
    'SUPPORTED_VERSION',
    'search_range_us',
]

DEFAULT_MJPEG_QUALITY = 90
DEFAULT_MAX_BITRATE_KBPS = 10_000
SUPPORTED_VERSION = 1
MAX_TRACK_NAME_BYTES = 256
_U32_MAX = 2**32 - 1
_U64_MAX = 2**64 - 1


class ContractError(ValueError):
    """A wire contract that cannot be used. ``kind`` is parse, version, invalid or io."""

    def __init__(self, kind: str, message: str) -> None:
        self.kind = kind
        prefix = {
            'parse': 'yaml parse error: ',
            'io': 'io error: ',
            'invalid': 'invalid config: ',
            'version': '',
        }[kind]
        super().__init__(prefix + message)


@dataclass(frozen=True, slots=True)
class VideoSpec:
    """One camera track: WebRTC media (lossy, low latency) or byte-stream frame video."""

    name: str
    codec: VideoCodec = VideoCodec.H264
    quality: int = DEFAULT_MJPEG_QUALITY
    max_bitrate_kbps: int | None = None
    # Accepted as livekit-portal 0.2.8 accepts them, and carried; they change nothing on the wire
    # (see LOCAL_SETTINGS): stall handling is the operator's own choice, simulcast and screencast
    # are publishing options of WebRTC tracks.
    stall_behavior: str | None = None
    max_lag_ms: int | None = None
    simulcast: bool = False
    screencast: bool = False

    @property
    def bitrate_bps(self) -> int:
        """Encoder bitrate cap for WebRTC tracks, in bits per second."""
        return (self.max_bitrate_kbps or DEFAULT_MAX_BITRATE_KBPS) * 1000


def search_range_us(fps: int, tolerance: float) -> int:
    """Match-window half-width R in µs: ``trunc(f32(tolerance) * 1e6 / f32(fps))``, in f32.

    Portal computes this in single precision; doing the same keeps R identical to the microsecond,
    which decides borderline matches. An infinite tolerance saturates to the u64 maximum.
    """
    with np.errstate(over='ignore'):
        r = np.float32(tolerance) * np.float32(1_000_000.0) / np.float32(fps)
    if not math.isfinite(float(r)):
        return _U64_MAX
    return min(int(r), _U64_MAX)


@dataclass
class WireContract:
    """What a Portal robot and its operators agree on. Build it in code or load ``portal.yaml``.

    The ``add_*`` and ``set_*`` methods validate as they go and raise :class:`ContractError`.
    Fields may also be assigned directly; :meth:`validate` re-checks everything. ``slack``,
    ``ping_ms`` and ``action_subscription`` ride in the same document, as in livekit-portal, but
    are each peer's own defaults: sessions read them through :class:`~..peer_settings.PeerSettings`,
    which a node may override without touching the contract.
    """

    fps: int = 30
    slack: int = 5
    tolerance: float = 1.5
    state_reliable: bool = True
    action_reliable: bool = True
    reuse_stale_frames: bool = False
    ping_ms: int = 1000
    action_subscription: bool = False
    videos: list[VideoSpec] = field(default_factory=list)
    state: tuple[FieldSpec, ...] = ()
    action: tuple[FieldSpec, ...] = ()
    action_chunks: list[ChunkSpec] = field(default_factory=list)
    stall_behavior: str | None = None  # accepted and carried, see LOCAL_SETTINGS
    max_lag_ms: int | None = None

    # -- programmatic building (mirrors livekit-portal's config methods) -----------------------
    def add_video(
        self,
        name: str,
        codec: VideoCodec = VideoCodec.H264,
        quality: int = DEFAULT_MJPEG_QUALITY,
        max_bitrate_kbps: int | None = None,
    ) -> WireContract:
        """Declare a camera track; names are unique across WebRTC and frame-video tracks."""
        spec = VideoSpec(name, codec, quality, max_bitrate_kbps)
        _check_video(spec, [v.name for v in self.videos])
        self.videos.append(spec)
        return self

    def add_state(self, fields: Iterable[FieldSpec | tuple[str, DType]]) -> WireContract:
        """Append fields to the state schema (order is part of the wire format)."""
        new = self.state + as_fields(fields)
        _check_fields('state', new)
        self.state = new
        return self

    def add_action(self, fields: Iterable[FieldSpec | tuple[str, DType]]) -> WireContract:
        """Append fields to the action schema."""
        new = self.action + as_fields(fields)
        _check_fields('action', new)
        self.action = new
        return self

    def add_action_chunk(
        self, name: str, horizon: int, fields: Iterable[FieldSpec | tuple[str, DType]]
    ) -> WireContract:
        """Declare an action chunk: ``horizon`` rows of ``fields``, sent as one byte stream."""
        chunk = ChunkSpec(name, horizon, as_fields(fields))
        _check_chunk(chunk, [c.name for c in self.action_chunks])
        self.action_chunks.append(chunk)
        return self

    def set_fps(self, fps: int) -> WireContract:
        _check_positive_int('fps', fps)
        self.fps = fps
        return self

    def set_slack(self, ticks: int) -> WireContract:
        _check_positive_int('slack', ticks)
        self.slack = ticks
        return self

    def set_tolerance(self, ticks: float) -> WireContract:
        _check_tolerance(ticks)
        self.tolerance = float(np.float32(ticks))
        return self

    # -- derived values ------------------------------------------------------------------------
    @property
    def webrtc_videos(self) -> list[VideoSpec]:
        return [v for v in self.videos if v.codec.is_webrtc]

    @property
    def frame_videos(self) -> list[VideoSpec]:
        return [v for v in self.videos if not v.codec.is_webrtc]

    @property
    def track_order(self) -> list[str]:
        """Sync order of tracks: WebRTC tracks in declaration order, then frame-video tracks."""
        return [v.name for v in self.webrtc_videos] + [v.name for v in self.frame_videos]

    def video(self, name: str) -> VideoSpec | None:
        for v in self.videos:
            if v.name == name:
                return v
        return None

    def chunk(self, name: str) -> ChunkSpec | None:
        for c in self.action_chunks:
            if c.name == name:
                return c
        return None

    @property
    def search_range_us(self) -> int:
        return search_range_us(self.fps, self.tolerance)

    @property
    def state_fingerprint(self) -> int:
        return state_fingerprint(self.state)

    @property
    def action_fingerprint(self) -> int:
        return action_fingerprint(self.action)

    @property
    def chunk_fingerprints(self) -> dict[str, int]:
        return {c.name: chunk_fingerprint(c) for c in self.action_chunks}

    def fingerprints(self) -> dict[str, Any]:
        """The summary printed by the ``contract`` command, for comparing peers."""
        return {
            'state': f'0x{self.state_fingerprint:08x}',
            'action': f'0x{self.action_fingerprint:08x}',
            'chunks': {name: f'0x{fp:08x}' for name, fp in self.chunk_fingerprints.items()},
            'search_range_us': self.search_range_us,
        }

    def validate(self) -> WireContract:
        """Check every rule (the ones ``portal.yaml`` enforces, in the same order)."""
        _check_each(self.videos, _check_video)
        _check_positive_int('fps', self.fps)
        _check_positive_int('slack', self.slack)
        _check_tolerance(self.tolerance)
        _check_each(self.action_chunks, _check_chunk)
        _check_fields('state', self.state)
        _check_fields('action', self.action)
        if isinstance(self.ping_ms, bool) or not isinstance(self.ping_ms, int) or self.ping_ms < 0:
            raise ContractError('invalid', f'ping_ms must be a non-negative integer, got {self.ping_ms!r}')
        return self

    # -- YAML ------------------------------------------------------------------------------------
    @classmethod
    def from_yaml_str(cls, text: str) -> WireContract:
        """Load a contract from ``portal.yaml`` text (livekit-portal's format, version 1)."""
        from .contract_yaml import load

        return load(text)

    @classmethod
    def from_yaml_file(cls, path: str | Path) -> WireContract:
        """Load a contract from a ``portal.yaml`` file; unreadable files raise ContractError(io)."""
        try:
            text = Path(path).read_text(encoding='utf-8')
        except (OSError, UnicodeDecodeError) as exc:
            raise ContractError('io', f'{path}: {exc}') from exc
        from .contract_yaml import load

        return load(text)

    def to_yaml(self) -> str:
        """Serialise to ``portal.yaml`` (every key written), loadable by any Portal peer."""
        from .contract_yaml import dump

        return dump(self)


# -- validation rules shared by the programmatic API and the YAML loader ------------------------


def _check_video(spec: VideoSpec, existing: Sequence[str]) -> None:
    n = spec.name
    if not isinstance(n, str) or not n:
        raise ContractError('invalid', f'video track name must be a non-empty string, got {n!r}')
    if len(n.encode('utf-8')) > MAX_TRACK_NAME_BYTES:
        raise ContractError('invalid', f"video '{n}': track name longer than {MAX_TRACK_NAME_BYTES} bytes")
    if n in existing:
        raise ContractError('invalid', f"duplicate video track '{n}'")
    if not isinstance(spec.codec, VideoCodec):
        raise ContractError('invalid', f"video '{n}': codec must be a VideoCodec, got {spec.codec!r}")
    if spec.codec.spec.has_quality and not (1 <= spec.quality <= 100):
        raise ContractError(
            'invalid', f"video '{n}': {spec.codec.value} quality must be in 1..=100, got {spec.quality}"
        )
    if spec.max_bitrate_kbps is not None:
        if not spec.codec.is_webrtc:
            raise ContractError(
                'invalid',
                f"video '{n}': max_bitrate_kbps applies to the WebRTC codecs only, not {spec.codec.name}",
            )
        if spec.max_bitrate_kbps == 0:
            raise ContractError('invalid', f"video '{n}': max_bitrate_kbps must be > 0")


def _check_each(items: Sequence[Any], check: Any) -> None:
    """``check(item, names_before_it)`` for each item, in order (the names must be unique)."""
    seen: list[str] = []
    for item in items:
        check(item, seen)
        seen.append(item.name)


def _check_positive_int(name: str, value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise ContractError('invalid', f'{name} must be > 0')


def _check_tolerance(value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
        raise ContractError('invalid', 'tolerance must be > 0')


def _check_fields(schema: str, fields: Sequence[FieldSpec]) -> None:
    seen: set[str] = set()
    for i, f in enumerate(fields):
        if not isinstance(f.name, str) or not f.name:
            raise ContractError('invalid', f'{schema}[{i}]: field name must be a non-empty string')
        if not isinstance(f.dtype, DType):
            raise ContractError('invalid', f"{schema}[{i}] '{f.name}': dtype must be a DType")
        if f.name in seen:
            raise ContractError('invalid', f"{schema}: duplicate field '{f.name}'")
        seen.add(f.name)


def _check_chunk(chunk: ChunkSpec, existing: Sequence[str]) -> None:
    if chunk.name in existing:
        raise ContractError('invalid', f"duplicate action chunk '{chunk.name}'")
    if isinstance(chunk.horizon, bool) or not isinstance(chunk.horizon, int) or chunk.horizon <= 0:
        raise ContractError('invalid', f"action chunk '{chunk.name}' horizon must be > 0")
    _check_fields(f"action_chunks '{chunk.name}'", chunk.fields)


# -- YAML loading ---------------------------------------------------------------------------------


STALL_BEHAVIORS = ('drop', 'freeze', 'omit')
# Keys livekit-portal 0.2.8 reads that portal_bridge accepts and carries but does not act on: stall
# handling there is configured by operator_bridge's stall_max_lag_ms; simulcast and screencast
# are WebRTC publishing options the robot does not use. Neither is part of a fingerprint.
LOCAL_SETTINGS = ('stall_behavior', 'max_lag_ms', 'simulcast', 'screencast')
