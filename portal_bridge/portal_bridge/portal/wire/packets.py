"""Encoders and decoders for Portal's data packets: state, action, action chunk and RTT.

Layouts (all little-endian):

* state   ``[u32 fp][u64 ts_us][fields...]``                      (12-byte header)
* action  ``[u32 fp][u64 ts_us][u64 in_reply_to_ts_us][fields...]`` (20-byte header)
* chunk   ``[u32 fp][u64 ts_us][u64 in_reply_to_ts_us][row 0][row 1]...`` (row-major)
* rtt     ``[u8 kind][u64 ts_us]`` (9 bytes, kind 0 = ping, 1 = pong)

Decoders raise :class:`PacketError` with a ``reason`` a receiver counts and logs; they never raise
anything else on malformed input.
"""

from __future__ import annotations

from dataclasses import dataclass
import logging
import struct
from typing import Mapping, Sequence

import numpy as np

from .dtypes import DType, encode_column, scalar_encoder
from .schema import ChunkSpec, FieldSpec, action_fingerprint, chunk_fingerprint, state_fingerprint

__all__ = [
    'PacketError',
    'StateCodec',
    'ActionCodec',
    'ChunkCodec',
    'DecodedChunk',
    'RTT_PING',
    'RTT_PONG',
    'encode_rtt',
    'decode_rtt',
    'peek_fingerprint',
    'EXECUTED_ACTION',
    'EXECUTED_CHUNK',
    'encode_executed',
    'decode_executed',
]

_log = logging.getLogger('portal_bridge.portal.wire.packets')

STATE_HEADER = struct.Struct('<IQ')
ACTION_HEADER = struct.Struct('<IQQ')
_RTT = struct.Struct('<BQ')
_FP = struct.Struct('<I')
RTT_PING = 0
RTT_PONG = 1
_U64_MAX = 2**64 - 1


class PacketError(ValueError):
    """A packet that cannot be decoded; ``reason`` is bad-payload or schema-mismatch."""

    def __init__(self, reason: str, message: str, fingerprint: int | None = None) -> None:
        super().__init__(message)
        self.reason = reason
        self.fingerprint = fingerprint


def peek_fingerprint(payload: bytes) -> int | None:
    """The leading u32 fingerprint of a packet, or None when it is shorter than 4 bytes."""
    if len(payload) < 4:
        return None
    return _FP.unpack_from(payload)[0]


def _check_ts(name: str, ts: int) -> int:
    ts = int(ts)
    if not 0 <= ts <= _U64_MAX:
        raise ValueError(f'{name} must fit in u64, got {ts}')
    return ts


class _FlatCodec:
    """Shared machinery of the state and action packets: a fixed header plus one value per field.

    The sender side keeps ``last_values`` (all 0.0 at first): a send updates only the fields it
    names and every packet carries all fields, repeating the last sent value for the others.
    """

    header: struct.Struct

    def __init__(self, fields: Sequence[FieldSpec], fingerprint: int) -> None:
        self.fields = tuple(fields)
        self.fingerprint = fingerprint
        self.names = tuple(f.name for f in self.fields)
        self.index = {name: i for i, name in enumerate(self.names)}
        self._encoders = [scalar_encoder(f.dtype) for f in self.fields]
        body = ''.join(f.dtype.struct_char for f in self.fields)
        self._body = struct.Struct('<' + body)
        self._packet = struct.Struct(self.header.format + body)
        self.size = self._packet.size
        self._bool_idx = [i for i, f in enumerate(self.fields) if f.dtype is DType.BOOL]
        self.last_values = [0.0] * len(self.fields)
        self._unknown_logged: set[str] = set()

    def reset(self) -> None:
        """Forget carried-forward values (a new session starts from zeros)."""
        self.last_values = [0.0] * len(self.fields)

    def update(self, values: Mapping[str, float]) -> list[str]:
        """Merge ``values`` into ``last_values``; return the unknown names (dropped, logged once)."""
        unknown = []
        index = self.index
        last = self.last_values
        for name, value in values.items():
            i = index.get(name)
            if i is None:
                unknown.append(name)
                if name not in self._unknown_logged:
                    self._unknown_logged.add(name)
                    _log.warning('[unknown-field] %r is not in the schema; ignored', name)
                continue
            last[i] = float(value)
        return unknown

    def _narrow(self) -> tuple[list, list[str]]:
        wire = []
        saturated = []
        for name, enc, v in zip(self.names, self._encoders, self.last_values):
            w, sat = enc(v)
            wire.append(w)
            if sat:
                saturated.append(name)
        return wire, saturated

    def wire_values(self) -> list[float]:
        """The values the next packet will carry, widened back to f64 (post-saturation)."""
        wire, _ = self._narrow()
        packed = self._body.pack(*wire)
        return self._widen(self._body.unpack(packed))

    def _widen(self, raw: Sequence) -> list[float]:
        out = [float(x) for x in raw]
        for i in self._bool_idx:
            out[i] = 1.0 if out[i] else 0.0
        return out

    def _decode_body(self, payload: bytes, kind: str) -> tuple:
        n = len(payload)
        if n < self.header.size:
            raise PacketError('bad-payload', f'{kind} packet of {n} bytes is shorter than its header')
        fp = _FP.unpack_from(payload)[0]
        if fp != self.fingerprint:
            raise PacketError(
                'schema-mismatch',
                f'{kind} fingerprint 0x{fp:08x} does not match local 0x{self.fingerprint:08x}',
                fp,
            )
        if n != self.size:
            raise PacketError('bad-payload', f'{kind} packet is {n} bytes, schema needs {self.size}')
        return self._packet.unpack(payload)


class StateCodec(_FlatCodec):
    """``portal_state`` packets for one state schema."""

    header = STATE_HEADER

    def __init__(self, fields: Sequence[FieldSpec]) -> None:
        super().__init__(fields, state_fingerprint(fields))

    def encode(self, values: Mapping[str, float], timestamp_us: int) -> tuple[bytes, list[str]]:
        """Merge ``values`` and build a packet; also return the fields that saturated."""
        self.update(values)
        wire, saturated = self._narrow()
        return self._packet.pack(self.fingerprint, _check_ts('timestamp_us', timestamp_us), *wire), saturated

    def decode(self, payload: bytes) -> tuple[int, list[float]]:
        """Return ``(timestamp_us, values)``; raise PacketError on anything malformed."""
        raw = self._decode_body(payload, 'state')
        return raw[1], self._widen(raw[2:])


class ActionCodec(_FlatCodec):
    """``portal_action`` packets for one action schema."""

    header = ACTION_HEADER

    def __init__(self, fields: Sequence[FieldSpec]) -> None:
        super().__init__(fields, action_fingerprint(fields))

    def encode(
        self, values: Mapping[str, float], timestamp_us: int, in_reply_to_ts_us: int = 0
    ) -> tuple[bytes, list[str]]:
        """Merge ``values`` and build a packet (``in_reply_to_ts_us`` 0 means none)."""
        self.update(values)
        wire, saturated = self._narrow()
        packet = self._packet.pack(
            self.fingerprint,
            _check_ts('timestamp_us', timestamp_us),
            _check_ts('in_reply_to_ts_us', in_reply_to_ts_us),
            *wire,
        )
        return packet, saturated

    def decode(self, payload: bytes) -> tuple[int, int, list[float]]:
        """Return ``(timestamp_us, in_reply_to_ts_us, values)``."""
        raw = self._decode_body(payload, 'action')
        return raw[1], raw[2], self._widen(raw[3:])


@dataclass(frozen=True, slots=True)
class DecodedChunk:
    """A received chunk: wire-typed columns plus the f64 view of each."""

    spec: ChunkSpec
    timestamp_us: int
    in_reply_to_ts_us: int
    columns: dict[str, np.ndarray]

    def raw_columns(self) -> dict[str, list[float]]:
        """Columns widened to f64 lists (BOOL as 0.0/1.0)."""
        return {name: [float(x) for x in col.astype(np.float64)] for name, col in self.columns.items()}

    def matrix(self) -> np.ndarray:
        """The chunk as an f64 ``(horizon, n_fields)`` array in field order."""
        if not self.columns:
            return np.zeros((self.spec.horizon, 0))
        return np.stack([self.columns[f.name].astype(np.float64) for f in self.spec.fields], axis=1)


class ChunkCodec:
    """``portal_action_chunk`` byte-stream payloads for one chunk spec.

    Rows are packed back to back with each field at its own width, which is exactly the memory
    layout of a packed numpy structured array, so encode and decode are single numpy operations.
    """

    def __init__(self, spec: ChunkSpec) -> None:
        self.spec = spec
        self.fingerprint = chunk_fingerprint(spec)
        self.row_dtype = np.dtype([(f.name, f.dtype.numpy_dtype) for f in spec.fields] if spec.fields else [])
        self.size = ACTION_HEADER.size + spec.horizon * spec.row_bytes
        self._field_names = {f.name for f in spec.fields}
        self._unknown_logged: set[str] = set()

    def columns_from(self, data: Mapping[str, Sequence[float]] | np.ndarray) -> dict[str, np.ndarray]:
        """Normalise a dict of columns or a ``(rows, n_fields)`` array to f64 columns.

        Columns shorter than the horizon are zero-padded, longer ones truncated, missing ones
        zero; unknown names are ignored and logged once.
        """
        h = self.spec.horizon
        if isinstance(data, np.ndarray):
            if data.ndim != 2 or data.shape[1] != len(self.spec.fields):
                raise ValueError(
                    f"chunk '{self.spec.name}' expects an array of shape (rows, "
                    f'{len(self.spec.fields)}), got {data.shape}'
                )
            data = {f.name: data[:, i] for i, f in enumerate(self.spec.fields)}
        elif not isinstance(data, Mapping):
            raise TypeError(f"chunk '{self.spec.name}' data must be a dict of columns or a 2-D array")
        for name in data:
            if name not in self._field_names and name not in self._unknown_logged:
                self._unknown_logged.add(name)
                _log.warning("[unknown-field] chunk '%s': %r is not a chunk field; ignored", self.spec.name, name)
        out = {}
        for f in self.spec.fields:
            col = np.zeros(h, dtype=np.float64)
            given = data.get(f.name)
            if given is not None:
                arr = np.asarray(given, dtype=np.float64).reshape(-1)[:h]
                col[: arr.shape[0]] = arr
            out[f.name] = col
        return out

    def encode(
        self,
        data: Mapping[str, Sequence[float]] | np.ndarray,
        timestamp_us: int,
        in_reply_to_ts_us: int = 0,
    ) -> tuple[bytes, dict[str, np.ndarray], list[tuple[int, str]]]:
        """Build a payload; return it, the wire-typed columns, and the saturated ``(row, field)``s."""
        columns = self.columns_from(data)
        rows = np.zeros(self.spec.horizon, dtype=self.row_dtype)
        typed = {}
        saturated: list[tuple[int, str]] = []
        for f in self.spec.fields:
            wire, sat = encode_column(f.dtype, columns[f.name])
            rows[f.name] = wire
            typed[f.name] = wire
            saturated.extend((int(t), f.name) for t in np.flatnonzero(sat))
        header = ACTION_HEADER.pack(
            self.fingerprint,
            _check_ts('timestamp_us', timestamp_us),
            _check_ts('in_reply_to_ts_us', in_reply_to_ts_us),
        )
        return header + rows.tobytes(), typed, saturated

    def decode(self, payload: bytes) -> DecodedChunk:
        """Parse a payload whose fingerprint is this chunk's; raise PacketError otherwise."""
        n = len(payload)
        if n < ACTION_HEADER.size:
            raise PacketError('bad-payload', f'chunk payload of {n} bytes is shorter than its header')
        fp, ts, reply = ACTION_HEADER.unpack_from(payload)
        if fp != self.fingerprint:
            raise PacketError('unknown-chunk', f'chunk fingerprint 0x{fp:08x} is not declared', fp)
        if n != self.size:
            raise PacketError('bad-payload', f"chunk '{self.spec.name}' payload is {n} bytes, schema needs {self.size}")
        rows = np.frombuffer(payload, dtype=self.row_dtype, count=self.spec.horizon, offset=ACTION_HEADER.size)
        columns = {}
        for f in self.spec.fields:
            col = rows[f.name].copy()
            columns[f.name] = (col != 0) if f.dtype is DType.BOOL else col
        return DecodedChunk(self.spec, ts, reply, columns)


def encode_rtt(kind: int, timestamp_us: int) -> bytes:
    """Build a 9-byte ping (kind 0) or pong (kind 1)."""
    return _RTT.pack(kind, timestamp_us)


def decode_rtt(payload: bytes) -> tuple[int, int] | None:
    """Return ``(kind, ts)`` for a well-formed RTT packet, None for anything else (ignored)."""
    if len(payload) != _RTT.size:
        return None
    kind, ts = _RTT.unpack(payload)
    if kind not in (RTT_PING, RTT_PONG):
        return None
    return kind, ts


# -- portal_bridge extension: what the robot executed -----------------------------------------------
# [u8 version=1][u8 kind (0 action, 1 chunk)][u16 sender_len][sender UTF-8][the accepted packet]
_EXECUTED = struct.Struct('<BBH')
EXECUTED_ACTION = 0
EXECUTED_CHUNK = 1


def encode_executed(kind: int, sender: str, packet: bytes) -> bytes:
    """Wrap an accepted action or chunk payload with the sender that passed the robot's gate."""
    raw = sender.encode('utf-8')
    return _EXECUTED.pack(1, kind, len(raw)) + raw + packet


def decode_executed(payload: bytes) -> tuple[int, str, bytes]:
    """Return ``(kind, sender, packet)``; PacketError('bad-payload') on anything malformed."""
    if len(payload) < _EXECUTED.size:
        raise PacketError('bad-payload', 'executed-action record shorter than its header')
    version, kind, n = _EXECUTED.unpack_from(payload)
    end = _EXECUTED.size + n
    if version != 1 or kind not in (EXECUTED_ACTION, EXECUTED_CHUNK) or len(payload) < end:
        raise PacketError('bad-payload', f'malformed executed-action record (version {version}, kind {kind})')
    try:
        sender = bytes(payload[_EXECUTED.size : end]).decode('utf-8')
    except UnicodeDecodeError:
        raise PacketError('bad-payload', 'executed-action sender is not UTF-8') from None
    return kind, sender, bytes(payload[end:])
