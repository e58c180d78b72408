"""Field and chunk schemas and their 32-bit FNV-1a fingerprints.

Every Portal packet starts with the fingerprint of the schema it was encoded with. A receiver
whose own fingerprint differs drops the packet, so two peers only exchange data when their
field names, order, dtypes (and for chunks, name and horizon) agree exactly.
"""

from __future__ import annotations

from dataclasses import dataclass
import struct
from typing import Iterable, Sequence

from .dtypes import DType

__all__ = [
    'FieldSpec',
    'ChunkSpec',
    'schema_fingerprint',
    'state_fingerprint',
    'action_fingerprint',
    'chunk_fingerprint',
    'as_fields',
]

_FNV_OFFSET = 0x811C9DC5
_FNV_PRIME = 0x01000193
_ACTION_SALT = 0xA1C0B001
_CHUNK_SALT = 0xC1C0B001
_SEPARATOR = 0xFF


@dataclass(frozen=True, slots=True)
class FieldSpec:
    """One named, typed value of a state, action or chunk row."""

    name: str
    dtype: DType


@dataclass(frozen=True, slots=True)
class ChunkSpec:
    """A named ``(horizon, len(fields))`` action tensor sent as one byte stream."""

    name: str
    horizon: int
    fields: tuple[FieldSpec, ...]

    @property
    def row_bytes(self) -> int:
        return sum(f.dtype.width for f in self.fields)


def as_fields(fields: Iterable[FieldSpec | tuple[str, DType]]) -> tuple[FieldSpec, ...]:
    """Accept ``FieldSpec`` objects or ``(name, DType)`` pairs, like Portal's ``add_*_typed``."""
    out = []
    for f in fields:
        if isinstance(f, FieldSpec):
            out.append(f)
        else:
            name, dtype = f
            out.append(FieldSpec(str(name), dtype))
    return tuple(out)


def _mix(h: int, data: bytes) -> int:
    for b in data:
        h = ((h ^ b) * _FNV_PRIME) & 0xFFFFFFFF
    return h


def _schema_hash(fields: Sequence[FieldSpec]) -> int:
    h = _FNV_OFFSET
    for f in fields:
        h = _mix(h, f.name.encode('utf-8'))
        h = _mix(h, bytes((_SEPARATOR, f.dtype.tag, _SEPARATOR)))
    return h


def schema_fingerprint(fields: Sequence[FieldSpec]) -> int:
    """FNV-1a over ``name, 0xFF, tag, 0xFF`` for every field in order."""
    return _schema_hash(fields)


def state_fingerprint(fields: Sequence[FieldSpec]) -> int:
    """Fingerprint carried by ``portal_state`` packets."""
    return _schema_hash(fields)


def action_fingerprint(fields: Sequence[FieldSpec]) -> int:
    """Fingerprint carried by ``portal_action`` packets (salted so states never parse as actions)."""
    return _schema_hash(fields) ^ _ACTION_SALT


def chunk_fingerprint(chunk: ChunkSpec) -> int:
    """Fingerprint of an action chunk: fields, then name, 0xFF and the u32 LE horizon, salted."""
    h = _schema_hash(chunk.fields)
    h = _mix(h, chunk.name.encode('utf-8'))
    h = _mix(h, bytes((_SEPARATOR,)))
    h = _mix(h, struct.pack('<I', chunk.horizon))
    return h ^ _CHUNK_SALT
