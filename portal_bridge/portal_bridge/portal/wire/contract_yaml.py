"""``portal.yaml``: the strict YAML reading and the writing of a :class:`~.contract.WireContract`.

Parsed as livekit-portal parses it: unknown keys, wrong types and bad values are
:class:`~.contract.ContractError` exceptions that name the offending field; YAML's implicit
conversions that Portal's parser does not make (``yes`` as a boolean, ``0x10`` as an int,
duplicate keys) are refused.
"""

from __future__ import annotations

import re
from typing import Any, Sequence

import numpy as np
import yaml

from ..codecs import VideoCodec
from .contract import (
    DEFAULT_MJPEG_QUALITY,
    LOCAL_SETTINGS,
    STALL_BEHAVIORS,
    SUPPORTED_VERSION,
    ContractError,
    VideoSpec,
    WireContract,
)
from .dtypes import parse_dtype
from .schema import ChunkSpec, FieldSpec

__all__ = ['load', 'dump']


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


def _expect(ok: bool, value: Any, where: str, expected: str) -> None:
    if not ok:
        raise _parse_error(where, f'expected {expected}, got {_kind(value)}')


def _uint(value: Any, where: str, bits: int) -> int:
    _expect(isinstance(value, int) and not isinstance(value, bool), value, where, 'an unsigned integer')
    if not 0 <= value <= 2**bits - 1:
        raise _parse_error(where, f'{value} is out of range for u{bits}')
    return value


def _bool(value: Any, where: str) -> bool:
    _expect(isinstance(value, bool), value, where, 'true or false')
    return value


def _float(value: Any, where: str) -> float:
    _expect(isinstance(value, (int, float)) and not isinstance(value, bool), value, where, 'a number')
    return float(np.float32(value))


def _str(value: Any, where: str) -> str:
    _expect(isinstance(value, str), value, where, 'a string')
    return value


def _stall_behavior(value: Any, where: str) -> str:
    text = _str(value, where)
    if text not in STALL_BEHAVIORS:
        raise _parse_error(where, f"expected one of {', '.join(STALL_BEHAVIORS)}, got '{text}'")
    return text


def _list(value: Any, where: str) -> list:
    _expect(isinstance(value, list), value, where, 'a sequence')
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


def load(text: str) -> WireContract:
    """Parse ``portal.yaml`` text (livekit-portal's format, version 1); ContractError on any fault."""
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


def dump(contract: WireContract) -> str:
    """``portal.yaml`` text of ``contract`` (every key written), loadable by any Portal peer."""

    def fields(fs: Sequence[FieldSpec]) -> list[dict[str, str]]:
        return [{'name': f.name, 'dtype': str(f.dtype)} for f in fs]

    videos = []
    for v in contract.videos:
        entry: dict[str, Any] = {'name': v.name, 'codec': v.codec.value}
        if v.codec.spec.has_quality:
            entry['quality'] = v.quality
        if v.max_bitrate_kbps is not None:
            entry['max_bitrate_kbps'] = v.max_bitrate_kbps
        entry.update({k: getattr(v, k) for k in LOCAL_SETTINGS if getattr(v, k) not in (None, False)})
        videos.append(entry)
    doc = {
        'version': SUPPORTED_VERSION,
        'fps': contract.fps,
        'slack': contract.slack,
        'tolerance': contract.tolerance,
        'state_reliable': contract.state_reliable,
        'action_reliable': contract.action_reliable,
        'reuse_stale_frames': contract.reuse_stale_frames,
        'ping_ms': contract.ping_ms,
        'action_subscription': contract.action_subscription,
        'videos': videos,
        'state': fields(contract.state),
        'action': fields(contract.action),
        'action_chunks': [
            {'name': c.name, 'horizon': c.horizon, 'fields': fields(c.fields)} for c in contract.action_chunks
        ],
    }
    doc.update({k: getattr(contract, k) for k in ('stall_behavior', 'max_lag_ms') if getattr(contract, k) is not None})
    return yaml.safe_dump(doc, sort_keys=False)
