import math
import struct

from hypothesis import given
from hypothesis import strategies as st
import numpy as np
import pytest

from portal_bridge.portal.wire.dtypes import (
    DType,
    decode_scalar,
    encode_column,
    encode_scalar,
    parse_dtype,
    typed_value,
)


def wire(dtype: DType, value: float) -> bytes:
    v, _ = encode_scalar(dtype, value)
    return struct.pack('<' + dtype.struct_char, v)


# Appendix A encoder probes: input, output bytes, saturation flag.
PROBES = [
    (DType.I8, 500, b'\x7f', True),
    (DType.I8, -3.7, b'\xfd', False),
    (DType.U8, -1, b'\x00', True),
    (DType.U16, 3.9, b'\x03\x00', False),
    (DType.BOOL, 0.5, b'\x01', False),
    (DType.F32, 1e40, struct.pack('<f', math.inf), True),
    (DType.I32, math.nan, b'\x00\x00\x00\x00', True),
]


@pytest.mark.parametrize(('dtype', 'value', 'expected', 'saturated'), PROBES)
def test_appendix_a_encoder_probes(dtype, value, expected, saturated):
    assert wire(dtype, value) == expected
    assert encode_scalar(dtype, value)[1] is saturated


def test_tags_and_widths():
    assert [d.tag for d in DType] == list(range(1, 10))
    assert {d.name: d.width for d in DType} == {
        'F64': 8, 'F32': 4, 'I32': 4, 'I16': 2, 'I8': 1, 'U32': 4, 'U16': 2, 'U8': 1, 'BOOL': 1,
    }  # fmt: skip


@pytest.mark.parametrize(
    ('dtype', 'lo', 'hi'),
    [(DType.I8, -128, 127), (DType.I16, -(2**15), 2**15 - 1), (DType.I32, -(2**31), 2**31 - 1)],
)
def test_signed_boundaries_are_exact_and_not_flagged(dtype, lo, hi):
    assert encode_scalar(dtype, lo) == (lo, False)
    assert encode_scalar(dtype, hi) == (hi, False)
    assert encode_scalar(dtype, hi + 1) == (hi, True)
    assert encode_scalar(dtype, lo - 1) == (lo, True)
    assert encode_scalar(dtype, math.inf) == (hi, True)
    assert encode_scalar(dtype, -math.inf) == (lo, True)


def test_truncation_toward_zero():
    assert encode_scalar(DType.I16, 3.9) == (3, False)
    assert encode_scalar(DType.I16, -3.9) == (-3, False)
    assert encode_scalar(DType.U32, 7.99) == (7, False)


def test_unsigned_rules():
    assert encode_scalar(DType.U8, 255) == (255, False)
    assert encode_scalar(DType.U8, 256) == (255, True)
    assert encode_scalar(DType.U8, -0.5) == (0, True)
    assert encode_scalar(DType.U8, math.nan) == (0, True)
    assert encode_scalar(DType.U32, 2**32) == (2**32 - 1, True)


def test_bool_rules():
    assert encode_scalar(DType.BOOL, -1.0) == (1, False)
    assert encode_scalar(DType.BOOL, 0.0) == (0, False)
    assert encode_scalar(DType.BOOL, math.nan) == (0, True)
    assert decode_scalar(DType.BOOL, 0) == 0.0
    assert decode_scalar(DType.BOOL, 7) == 1.0


def test_f32_keeps_nan_and_inf_without_flag():
    assert encode_scalar(DType.F32, math.inf) == (math.inf, False)
    v, sat = encode_scalar(DType.F32, math.nan)
    assert math.isnan(v) and not sat
    assert encode_scalar(DType.F32, -1e40) == (-math.inf, True)
    # Just above f32 max still rounds to max, as Rust's `as f32` does.
    assert struct.unpack('<f', wire(DType.F32, 3.4028235e38))[0] == np.finfo(np.float32).max


def test_parse_dtype_case_insensitive_and_strict():
    assert parse_dtype('F32') is DType.F32
    assert parse_dtype('bool') is DType.BOOL
    with pytest.raises(ValueError, match="unknown dtype 'float64'"):
        parse_dtype('float64')


def test_typed_values():
    assert typed_value(DType.BOOL, 1.0) is True
    assert typed_value(DType.I8, -3.0) == -3 and isinstance(typed_value(DType.I8, -3.0), int)
    assert isinstance(typed_value(DType.F32, 2.0), float)


@given(st.sampled_from(list(DType)), st.lists(st.floats(allow_nan=True, allow_infinity=True), max_size=20))
def test_column_encoder_matches_scalar_encoder(dtype, values):
    col, sat = encode_column(dtype, np.array(values, dtype=np.float64))
    for i, v in enumerate(values):
        expected, expected_sat = encode_scalar(dtype, v)
        got = col[i].item()
        if isinstance(expected, float) and math.isnan(expected):
            assert math.isnan(got)
        else:
            assert got == (np.float32(expected).item() if dtype is DType.F32 else expected)
        assert bool(sat[i]) is expected_sat


@given(st.sampled_from([d for d in DType if d.is_integer]), st.data())
def test_integer_round_trip_in_range(dtype, data):
    info = dtype.value
    v = data.draw(st.integers(int(info.lo), int(info.hi)))
    raw = struct.unpack('<' + dtype.struct_char, wire(dtype, float(v)))[0]
    assert decode_scalar(dtype, raw) == float(v)
