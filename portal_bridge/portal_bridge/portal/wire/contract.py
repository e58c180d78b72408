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
import enum
import math
from pathlib import Path
import re
from typing import Any, Iterable, Sequence

import numpy as np
import yaml

from .dtypes import DType, parse_dtype
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


class VideoCodec(enum.Enum):
    """Video codecs: the WebRTC media codecs and the byte-stream ("frame video") codecs."""

    H264 = 'h264'
    VP8 = 'vp8'
    VP9 = 'vp9'
    AV1 = 'av1'
    H265 = 'h265'
    RAW = 'raw'
    PNG = 'png'
    MJPEG = 'mjpeg'

    @property
    def is_webrtc(self) -> bool:
        """True for codecs carried on a WebRTC media track."""
        return self in _WEBRTC_CODECS

    @property
    def frame_codec_id(self) -> int:
        """Codec id in the frame-video header (byte-stream codecs only)."""
        return _FRAME_CODEC_IDS[self]

    @classmethod
    def parse(cls, text: str) -> VideoCodec:
        """Parse a codec name as written in ``portal.yaml`` (case-insensitive; ``hevc`` = h265)."""
        key = str(text).strip().lower()
        if key == 'hevc':
            key = 'h265'
        for codec in cls:
            if codec.value == key:
                return codec
        names = ', '.join(c.value for c in cls)
        raise ValueError(f"unknown codec '{text}' (expected one of {names}, hevc)")


_WEBRTC_CODECS = frozenset({VideoCodec.H264, VideoCodec.VP8, VideoCodec.VP9, VideoCodec.AV1, VideoCodec.H265})
_FRAME_CODEC_IDS = {VideoCodec.RAW: 0, VideoCodec.PNG: 1, VideoCodec.MJPEG: 2}


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
    Fields may also be assigned directly; :meth:`validate` re-checks everything.
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
        seen: list[str] = []
        for v in self.videos:
            _check_video(v, seen)
            seen.append(v.name)
        _check_positive_int('fps', self.fps)
        _check_positive_int('slack', self.slack)
        _check_tolerance(self.tolerance)
        names: list[str] = []
        for c in self.action_chunks:
            _check_chunk(c, names)
            names.append(c.name)
        _check_fields('state', self.state)
        _check_fields('action', self.action)
        if isinstance(self.ping_ms, bool) or not isinstance(self.ping_ms, int) or self.ping_ms < 0:
            raise ContractError('invalid', f'ping_ms must be a non-negative integer, got {self.ping_ms!r}')
        return self

    # -- YAML ------------------------------------------------------------------------------------
    @classmethod
    def from_yaml_str(cls, text: str) -> WireContract:
        """Load a contract from ``portal.yaml`` text (livekit-portal's format, version 1)."""
        return _load(text)

    @classmethod
    def from_yaml_file(cls, path: str | Path) -> WireContract:
        """Load a contract from a ``portal.yaml`` file; unreadable files raise ContractError(io)."""
        try:
            text = Path(path).read_text(encoding='utf-8')
        except (OSError, UnicodeDecodeError) as exc:
            raise ContractError('io', f'{path}: {exc}') from exc
        return _load(text)

    def to_yaml(self) -> str:
        """Serialise to ``portal.yaml`` (every key written), loadable by any Portal peer."""

        def fields(fs: Sequence[FieldSpec]) -> list[dict[str, str]]:
            return [{'name': f.name, 'dtype': str(f.dtype)} for f in fs]

        videos = []
        for v in self.videos:
            entry: dict[str, Any] = {'name': v.name, 'codec': v.codec.value}
            if v.codec is VideoCodec.MJPEG:
                entry['quality'] = v.quality
            if v.max_bitrate_kbps is not None:
                entry['max_bitrate_kbps'] = v.max_bitrate_kbps
            entry.update({k: getattr(v, k) for k in LOCAL_SETTINGS if getattr(v, k) not in (None, False)})
            videos.append(entry)
        doc = {
            'version': SUPPORTED_VERSION,
            'fps': self.fps,
            'slack': self.slack,
            'tolerance': self.tolerance,
            'state_reliable': self.state_reliable,
            'action_reliable': self.action_reliable,
            'reuse_stale_frames': self.reuse_stale_frames,
            'ping_ms': self.ping_ms,
            'action_subscription': self.action_subscription,
            'videos': videos,
            'state': fields(self.state),
            'action': fields(self.action),
            'action_chunks': [
                {'name': c.name, 'horizon': c.horizon, 'fields': fields(c.fields)} for c in self.action_chunks
            ],
        }
        doc.update({k: getattr(self, k) for k in ('stall_behavior', 'max_lag_ms') if getattr(self, k) is not None})
        return yaml.safe_dump(doc, sort_keys=False)


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
    if spec.codec is VideoCodec.MJPEG and not (1 <= spec.quality <= 100):
        raise ContractError('invalid', f"video '{n}': mjpeg quality must be in 1..=100, got {spec.quality}")
    if spec.max_bitrate_kbps is not None:
        if not spec.codec.is_webrtc:
            raise ContractError(
                'invalid',
                f"video '{n}': max_bitrate_kbps applies to the WebRTC codecs only, not {spec.codec.name}",
            )
        if spec.max_bitrate_kbps == 0:
            raise ContractError('invalid', f"video '{n}': max_bitrate_kbps must be > 0")


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


class _StrictLoader(yaml.SafeLoader):
    """YAML 1.2 core-schema scalars (only true/false are booleans) and no duplicate keys.

    PyYAML follows YAML 1.1, where ``yes``/``on`` are booleans and ``1_000`` is an integer;
    livekit-portal's parser follows YAML 1.2. Matching 1.2 keeps both peers reading the same file
    the same way.
    """


_StrictLoader.yaml_implicit_resolvers = {
    k: [(tag, rx) for tag, rx in v if tag not in ('tag:yaml.org,2002:bool', 'tag:yaml.org,2002:int')]
    for k, v in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
_StrictLoader.add_implicit_resolver(
    'tag:yaml.org,2002:bool', re.compile(r'^(?:true|True|TRUE|false|False|FALSE)$'), list('tTfF')
)
_StrictLoader.add_implicit_resolver(
    'tag:yaml.org,2002:int',
    re.compile(r'^(?:[-+]?[0-9]+|0o[0-7]+|0x[0-9a-fA-F]+)$'),
    list('-+0123456789'),
)


def _construct_int(loader: yaml.SafeLoader, node: yaml.Node) -> int:
    text = loader.construct_scalar(node)
    if text.startswith('0o'):
        return int(text[2:], 8)
    if text.startswith('0x'):
        return int(text[2:], 16)
    return int(text)


def _construct_mapping(loader: yaml.SafeLoader, node: yaml.MappingNode) -> dict:
    loader.flatten_mapping(node)
    out = {}
    for key_node, value_node in node.value:
        key = loader.construct_object(key_node, deep=True)
        if key in out:
            raise ContractError('parse', f'duplicate key {key!r} (line {key_node.start_mark.line + 1})')
        out[key] = loader.construct_object(value_node, deep=True)
    return out


_StrictLoader.add_constructor('tag:yaml.org,2002:int', _construct_int)
_StrictLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)

_TOP_KEYS = {
    'version',
    'fps',
    'slack',
    'tolerance',
    'state_reliable',
    'action_reliable',
    'reuse_stale_frames',
    'ping_ms',
    'action_subscription',
    'videos',
    'state',
    'action',
    'action_chunks',
    'stall_behavior',
    'max_lag_ms',
}
_VIDEO_KEYS = {
    'name',
    'codec',
    'quality',
    'max_bitrate_kbps',
    'stall_behavior',
    'max_lag_ms',
    'simulcast',
    'screencast',
}
STALL_BEHAVIORS = ('drop', 'freeze', 'omit')
# Keys livekit-portal 0.2.8 reads that portal_bridge accepts and carries but does not act on: stall
# handling there is configured by operator_bridge's stall_max_lag_ms; simulcast and screencast
# are WebRTC publishing options the robot does not use. Neither is part of a fingerprint.
LOCAL_SETTINGS = ('stall_behavior', 'max_lag_ms', 'simulcast', 'screencast')
_FIELD_KEYS = {'name', 'dtype'}
_CHUNK_KEYS = {'name', 'horizon', 'fields'}


def _parse_error(where: str, msg: str) -> ContractError:
    return ContractError('parse', f'{where}: {msg}')


def _mapping(value: Any, where: str, allowed: set[str], required: Sequence[str]) -> dict:
    if not isinstance(value, dict):
        raise _parse_error(where, f'expected a mapping, got {_kind(value)}')
    for key in value:
        if key not in allowed:
            expected = ', '.join(sorted(allowed))
            raise _parse_error(where, f"unknown field '{key}', expected one of: {expected}")
    for key in required:
        if key not in value:
            raise _parse_error(where, f"missing field '{key}'")
    return value


def _kind(value: Any) -> str:
    if value is None:
        return 'null'
    if isinstance(value, bool):
        return f'boolean {value}'
    if isinstance(value, (int, float)):
        return f'number {value}'
    if isinstance(value, str):
        return f"string '{value}'"
    if isinstance(value, list):
        return 'a sequence'
    if isinstance(value, dict):
        return 'a mapping'
    return type(value).__name__


def _uint(value: Any, where: str, bits: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise _parse_error(where, f'expected an unsigned integer, got {_kind(value)}')
    if not 0 <= value <= 2**bits - 1:
        raise _parse_error(where, f'{value} is out of range for u{bits}')
    return value


def _bool(value: Any, where: str) -> bool:
    if not isinstance(value, bool):
        raise _parse_error(where, f'expected true or false, got {_kind(value)}')
    return value


def _float(value: Any, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise _parse_error(where, f'expected a number, got {_kind(value)}')
    return float(np.float32(value))


def _str(value: Any, where: str) -> str:
    if not isinstance(value, str):
        raise _parse_error(where, f'expected a string, got {_kind(value)}')
    return value


def _stall_behavior(value: Any, where: str) -> str:
    text = _str(value, where)
    if text not in STALL_BEHAVIORS:
        raise _parse_error(where, f"expected one of {', '.join(STALL_BEHAVIORS)}, got '{text}'")
    return text


def _list(value: Any, where: str) -> list:
    if not isinstance(value, list):
        raise _parse_error(where, f'expected a sequence, got {_kind(value)}')
    return value


def _parse_fields(value: Any, where: str) -> tuple[FieldSpec, ...]:
    out = []
    for i, item in enumerate(_list(value, where)):
        w = f'{where}[{i}]'
        item = _mapping(item, w, _FIELD_KEYS, ('name', 'dtype'))
        name = _str(item['name'], f'{w}.name')
        try:
            dtype = parse_dtype(_str(item['dtype'], f'{w}.dtype'))
        except ValueError as exc:
            raise _parse_error(f'{w}.dtype', str(exc)) from None
        out.append(FieldSpec(name, dtype))
    return tuple(out)


def _load(text: str) -> WireContract:
    try:
        doc = yaml.load(text, Loader=_StrictLoader)  # noqa: S506 - _StrictLoader is a SafeLoader
    except ContractError:
        raise
    except yaml.YAMLError as exc:
        raise ContractError('parse', str(exc).replace('\n', ' ')) from None
    doc = _mapping(doc, 'document', _TOP_KEYS, ('version',))

    # Parse every key first (types, codecs, dtypes), as livekit-portal does.
    version = _uint(doc['version'], 'version', 32)
    c = WireContract()
    if 'fps' in doc:
        c.fps = _uint(doc['fps'], 'fps', 32)
    if 'slack' in doc:
        c.slack = _uint(doc['slack'], 'slack', 32)
    if 'tolerance' in doc:
        c.tolerance = _float(doc['tolerance'], 'tolerance')
    for key in ('state_reliable', 'action_reliable', 'reuse_stale_frames', 'action_subscription'):
        if key in doc:
            setattr(c, key, _bool(doc[key], key))
    if 'ping_ms' in doc:
        c.ping_ms = _uint(doc['ping_ms'], 'ping_ms', 64)
    if 'stall_behavior' in doc:
        c.stall_behavior = _stall_behavior(doc['stall_behavior'], 'stall_behavior')
    if 'max_lag_ms' in doc:
        c.max_lag_ms = _uint(doc['max_lag_ms'], 'max_lag_ms', 32)
    for i, item in enumerate(_list(doc.get('videos', []), 'videos')):
        w = f'videos[{i}]'
        item = _mapping(item, w, _VIDEO_KEYS, ('name', 'codec'))
        name = _str(item['name'], f'{w}.name')
        try:
            codec = VideoCodec.parse(_str(item['codec'], f'{w}.codec'))
        except ValueError as exc:
            raise _parse_error(f'{w}.codec', str(exc)) from None
        quality = item.get('quality')
        quality = DEFAULT_MJPEG_QUALITY if quality is None else _uint(quality, f'{w}.quality', 8)
        bitrate = item.get('max_bitrate_kbps')
        bitrate = None if bitrate is None else _uint(bitrate, f'{w}.max_bitrate_kbps', 32)
        local: dict[str, Any] = {}
        if 'stall_behavior' in item:
            local['stall_behavior'] = _stall_behavior(item['stall_behavior'], f'{w}.stall_behavior')
        if 'max_lag_ms' in item:
            local['max_lag_ms'] = _uint(item['max_lag_ms'], f'{w}.max_lag_ms', 32)
        for key in ('simulcast', 'screencast'):
            if key in item:
                local[key] = _bool(item[key], f'{w}.{key}')
                if local[key] and not codec.is_webrtc:
                    raise _parse_error(w, f'{key} applies to the WebRTC codecs only, not {codec.name}')
        c.videos.append(VideoSpec(name, codec, quality, bitrate, **local))
    c.state = _parse_fields(doc.get('state', []), 'state')
    c.action = _parse_fields(doc.get('action', []), 'action')
    for i, item in enumerate(_list(doc.get('action_chunks', []), 'action_chunks')):
        w = f'action_chunks[{i}]'
        item = _mapping(item, w, _CHUNK_KEYS, ('name', 'horizon', 'fields'))
        c.action_chunks.append(
            ChunkSpec(
                _str(item['name'], f'{w}.name'),
                _uint(item['horizon'], f'{w}.horizon', 32),
                _parse_fields(item['fields'], f'{w}.fields'),
            )
        )

    if version != SUPPORTED_VERSION:
        raise ContractError(
            'version',
            f'unsupported config-file version {version}; this build supports version {SUPPORTED_VERSION}',
        )
    return c.validate()
