"""Portal field dtypes: tags, wire widths and the saturating f64 <-> wire conversions.

Every value crosses the Portal wire as one of nine fixed-width little-endian types. Senders hold
values as f64 and narrow them with Portal's exact rules (saturate integers, truncate toward zero,
NaN to 0, any non-zero to true); receivers widen back to f64. Keeping the rules in one table
means packets, chunks and typed delivery all agree bit for bit with other Portal peers.
"""

from __future__ import annotations

import enum
import math
from numbers import Integral, Real
from typing import Any, Callable, Mapping, NamedTuple

import numpy as np

from ..errors import DtypeMismatch

__all__ = [
    'DType',
    'Encoder',
    'encode_scalar',
    'encode_column',
    'decode_scalar',
    'parse_dtype',
    'typed_value',
    'check_value_types',
]


class _Info(NamedTuple):
    tag: int
    width: int
    struct_char: str
    numpy: str
    lo: float
    hi: float


_F32_MAX = float(np.finfo(np.float32).max)
# Smallest |v| that rounds to infinity when narrowed to f32 (MAX plus half an ulp, ties to even).
_F32_OVERFLOW = 3.4028235677973366e38


class DType(enum.Enum):
    """The nine Portal dtypes; the value of each member is its wire tag (used in fingerprints)."""

    F64 = _Info(1, 8, 'd', '<f8', -math.inf, math.inf)
    F32 = _Info(2, 4, 'f', '<f4', -_F32_MAX, _F32_MAX)
    I32 = _Info(3, 4, 'i', '<i4', -(2**31), 2**31 - 1)
    I16 = _Info(4, 2, 'h', '<i2', -(2**15), 2**15 - 1)
    I8 = _Info(5, 1, 'b', '<i1', -(2**7), 2**7 - 1)
    U32 = _Info(6, 4, 'I', '<u4', 0, 2**32 - 1)
    U16 = _Info(7, 2, 'H', '<u2', 0, 2**16 - 1)
    U8 = _Info(8, 1, 'B', '<u1', 0, 2**8 - 1)
    BOOL = _Info(9, 1, 'B', '<u1', 0, 1)

    @property
    def tag(self) -> int:
        """Wire tag mixed into schema fingerprints."""
        return self.value.tag

    @property
    def width(self) -> int:
        """Encoded size in bytes."""
        return self.value.width

    @property
    def struct_char(self) -> str:
        """``struct`` format character of the wire representation."""
        return self.value.struct_char

    @property
    def numpy_dtype(self) -> np.dtype:
        """Little-endian numpy dtype of the wire representation."""
        return np.dtype(self.value.numpy)

    @property
    def is_float(self) -> bool:
        return self in (DType.F64, DType.F32)

    @property
    def is_integer(self) -> bool:
        return not self.is_float and self is not DType.BOOL

    def __repr__(self) -> str:
        return f'DType.{self.name}'

    def __str__(self) -> str:
        return self.name.lower()


def parse_dtype(text: str) -> DType:
    """Parse a dtype name as written in ``portal.yaml`` (case-insensitive, e.g. ``f32``)."""
    try:
        return DType[text.strip().upper()]
    except (KeyError, AttributeError):
        names = ', '.join(d.name.lower() for d in DType)
        raise ValueError(f"unknown dtype '{text}' (expected one of {names})") from None


# A scalar encoder narrows one f64 to the value struct packs for the wire, and says whether the
# narrowing saturated (clipped, or replaced a NaN).
Encoder = Callable[[float], 'tuple[int | float, bool]']


def _encode_f64(v: float) -> tuple[float, bool]:
    return v, False


def _encode_f32(v: float) -> tuple[float, bool]:
    if v >= _F32_OVERFLOW:
        return math.inf, v != math.inf
    if v <= -_F32_OVERFLOW:
        return -math.inf, v != -math.inf
    return v, False


def _signed(lo: int, hi: int) -> Encoder:
    def encode(v: float) -> tuple[int, bool]:
        if v != v:  # NaN
            return 0, True
        if v > hi:
            return hi, True
        if v < lo:
            return lo, True
        return int(v), False  # int() truncates toward zero

    return encode


def _unsigned(hi: int) -> Encoder:
    def encode(v: float) -> tuple[int, bool]:
        if v != v or v < 0:
            return 0, True
        if v > hi:
            return hi, True
        return int(v), False

    return encode


def _encode_bool(v: float) -> tuple[int, bool]:
    if v != v:
        return 0, True
    return (1 if v != 0 else 0), False


_ENCODERS: dict[DType, Encoder] = {
    DType.F64: _encode_f64,
    DType.F32: _encode_f32,
    DType.I32: _signed(-(2**31), 2**31 - 1),
    DType.I16: _signed(-(2**15), 2**15 - 1),
    DType.I8: _signed(-(2**7), 2**7 - 1),
    DType.U32: _unsigned(2**32 - 1),
    DType.U16: _unsigned(2**16 - 1),
    DType.U8: _unsigned(2**8 - 1),
    DType.BOOL: _encode_bool,
}


def scalar_encoder(dtype: DType) -> Encoder:
    """Return the narrowing function of ``dtype`` (fast path for per-packet encoders)."""
    return _ENCODERS[dtype]


def encode_scalar(dtype: DType, value: float) -> tuple[int | float, bool]:
    """Narrow one f64 to its wire value for ``dtype``; the flag is True when it saturated."""
    return _ENCODERS[dtype](float(value))


def encode_column(dtype: DType, values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Vectorised :func:`encode_scalar`: narrow an f64 column, return (wire array, saturated mask)."""
    v = np.asarray(values, dtype=np.float64)
    nan = np.isnan(v)
    if dtype is DType.F64:
        return v.astype('<f8'), np.zeros(v.shape, dtype=bool)
    if dtype is DType.F32:
        finite = np.isfinite(v)
        with np.errstate(over='ignore'):
            out = v.astype('<f4')
        return out, finite & ~np.isfinite(out)
    if dtype is DType.BOOL:
        return ((v != 0) & ~nan).astype('<u1'), nan
    info = dtype.value
    sat = nan | (v > info.hi) | (v < info.lo)
    clipped = np.clip(np.where(nan, 0.0, v), info.lo, info.hi)
    return np.trunc(clipped).astype(dtype.numpy_dtype), sat


def decode_scalar(dtype: DType, raw: int | float) -> float:
    """Widen one unpacked wire value to f64 (BOOL: 0 -> 0.0, anything else -> 1.0)."""
    if dtype is DType.BOOL:
        return 1.0 if raw else 0.0
    return float(raw)


def typed_value(dtype: DType, value: float) -> bool | int | float:
    """Present a widened f64 as the Python type of its dtype (bool, int or float)."""
    if dtype is DType.BOOL:
        return bool(value)
    if dtype.is_integer:
        return int(value)
    return float(value)


def check_value_types(fields: Mapping[str, Any], values: Mapping[str, Any]) -> None:
    """Portal's send-side dtype check: BOOL takes bools, integers take integers, floats take reals.

    Unknown names are not checked here (the encoder ignores and logs them once).
    """
    for name, value in values.items():
        spec = fields.get(name)
        if spec is None:
            continue
        is_bool = isinstance(value, (bool, np.bool_))
        if spec.dtype is DType.BOOL:
            ok = is_bool
        elif spec.dtype.is_integer:
            ok = isinstance(value, Integral) and not is_bool
        else:
            ok = isinstance(value, Real) and not is_bool
        if not ok:
            raise DtypeMismatch(f"field '{name}' declared as {spec.dtype.name} but sent as {type(value).__name__}")
