import math
import struct

from hypothesis import given
from hypothesis import strategies as st
import numpy as np
import pytest

from portal_bridge.portal.wire.dtypes import DType, encode_scalar
from portal_bridge.portal.wire.packets import (
    ActionCodec,
    ChunkCodec,
    PacketError,
    StateCodec,
    decode_rtt,
    encode_rtt,
    peek_fingerprint,
)
from portal_bridge.portal.wire.schema import ChunkSpec, FieldSpec

F = FieldSpec
EXAMPLE = (F('j1', DType.F32), F('gripper', DType.BOOL), F('mode', DType.I8))
TS = 1_700_000_000_000_000


def test_spec_example_state_bytes():
    packet, saturated = StateCodec(EXAMPLE).encode({'j1': 0.5, 'gripper': True, 'mode': -3}, TS)
    assert packet.hex() == '12d857d200401e18240a06000000003f01fd'
    assert saturated == []


def test_spec_example_action_bytes():
    packet, _ = ActionCodec(EXAMPLE).encode({'j1': 0.5, 'gripper': True, 'mode': -3}, TS + 123, TS)
    assert packet.hex() == '136897737b401e18240a060000401e18240a06000000003f01fd'


def test_state_decode_round_trip_example():
    codec = StateCodec(EXAMPLE)
    packet, _ = codec.encode({'j1': 0.5, 'gripper': True, 'mode': -3}, TS)
    assert codec.decode(packet) == (TS, [0.5, 1.0, -3.0])


def test_carry_forward_and_partial_maps():
    codec = StateCodec(EXAMPLE)
    p1, _ = codec.encode({'mode': 4}, 1)
    assert codec.decode(p1)[1] == [0.0, 0.0, 4.0]  # never-sent fields are 0
    p2, _ = codec.encode({'j1': 1.25}, 2)
    assert codec.decode(p2)[1] == [1.25, 0.0, 4.0]  # mode carried forward
    codec.reset()
    p3, _ = codec.encode({}, 3)
    assert codec.decode(p3)[1] == [0.0, 0.0, 0.0]


def test_unknown_fields_are_ignored(caplog):
    codec = StateCodec(EXAMPLE)
    assert codec.update({'nope': 1.0, 'j1': 2.0}) == ['nope']
    assert codec.update({'nope': 1.0}) == ['nope']
    assert codec.last_values[0] == 2.0
    assert sum('[unknown-field]' in r.message for r in caplog.records) == 1  # logged once


def test_saturation_reported_on_encode():
    codec = ActionCodec(EXAMPLE)
    packet, saturated = codec.encode({'mode': 500, 'gripper': math.nan}, 1)
    assert sorted(saturated) == ['gripper', 'mode']
    assert codec.decode(packet)[2] == [0.0, 0.0, 127.0]
    assert codec.wire_values() == [0.0, 0.0, 127.0]


def test_nan_and_inf_survive_f32_and_f64():
    codec = StateCodec((F('a', DType.F32), F('b', DType.F64)))
    _, values = codec.decode(codec.encode({'a': math.nan, 'b': -math.inf}, 1)[0])
    assert math.isnan(values[0]) and values[1] == -math.inf


@pytest.mark.parametrize('codec_cls', [StateCodec, ActionCodec])
def test_bad_payloads_are_rejected_with_a_reason(codec_cls):
    codec = codec_cls(EXAMPLE)
    good = codec.encode({'j1': 1.0}, 5)[0]
    with pytest.raises(PacketError) as exc:
        codec.decode(good[:3])
    assert exc.value.reason == 'bad-payload'
    with pytest.raises(PacketError) as exc:
        codec.decode(good[:-1])  # truncated body
    assert exc.value.reason == 'bad-payload'
    with pytest.raises(PacketError) as exc:
        codec.decode(good + b'\x00')  # oversized
    assert exc.value.reason == 'bad-payload'
    wrong = struct.pack('<I', 0xDEADBEEF) + good[4:]
    with pytest.raises(PacketError) as exc:
        codec.decode(wrong)
    assert exc.value.reason == 'schema-mismatch' and exc.value.fingerprint == 0xDEADBEEF


def test_state_packet_never_parses_as_action():
    state = StateCodec(EXAMPLE).encode({}, 1)[0]
    with pytest.raises(PacketError):
        ActionCodec(EXAMPLE).decode(state + b'\x00' * 8)


def test_timestamps_must_fit_u64():
    with pytest.raises(ValueError):
        StateCodec(EXAMPLE).encode({}, -1)
    with pytest.raises(ValueError):
        ActionCodec(EXAMPLE).encode({}, 1, 2**64)


def test_peek_fingerprint():
    assert peek_fingerprint(b'\x01\x00\x00\x00xyz') == 1
    assert peek_fingerprint(b'\x01') is None


@given(st.binary(max_size=64))
def test_arbitrary_bytes_never_raise_unexpected_exceptions(data):
    for codec in (StateCodec(EXAMPLE), ActionCodec(EXAMPLE), ChunkCodec(ChunkSpec('c', 2, EXAMPLE))):
        try:
            codec.decode(data)
        except PacketError:
            pass
    decode_rtt(data)


# -- round trips over random schemas and values --------------------------------------------------------


def field_lists():
    names = st.text(alphabet='abcdefghij_', min_size=1, max_size=6)
    return st.lists(st.tuples(names, st.sampled_from(list(DType))), max_size=8, unique_by=lambda t: t[0])


def expected_wire_value(dtype: DType, v: float) -> float:
    w, _ = encode_scalar(dtype, v)
    if dtype is DType.F32:
        return float(np.float32(w))
    if dtype is DType.BOOL:
        return float(w)
    return float(w)


def same(a: float, b: float) -> bool:
    return (math.isnan(a) and math.isnan(b)) or a == b


@given(field_lists(), st.data(), st.integers(0, 2**64 - 1))
def test_state_round_trip(fields, data, ts):
    fields = tuple(F(n, d) for n, d in fields)
    values = {f.name: data.draw(st.floats(allow_nan=True, allow_infinity=True)) for f in fields}
    codec = StateCodec(fields)
    packet, _ = codec.encode(values, ts)
    assert len(packet) == 12 + sum(f.dtype.width for f in fields)
    got_ts, got = StateCodec(fields).decode(packet)
    assert got_ts == ts
    for f, g in zip(fields, got):
        assert same(g, expected_wire_value(f.dtype, values[f.name]))


@given(field_lists(), st.data(), st.integers(0, 2**64 - 1), st.integers(0, 2**64 - 1))
def test_action_round_trip(fields, data, ts, reply):
    fields = tuple(F(n, d) for n, d in fields)
    values = {f.name: data.draw(st.floats(-1e6, 1e6)) for f in fields}
    packet, _ = ActionCodec(fields).encode(values, ts, reply)
    got_ts, got_reply, got = ActionCodec(fields).decode(packet)
    assert (got_ts, got_reply) == (ts, reply)
    assert got == [expected_wire_value(f.dtype, values[f.name]) for f in fields]


# -- chunks ----------------------------------------------------------------------------------------------


def test_chunk_layout_is_row_major():
    spec = ChunkSpec('c', 2, (F('a', DType.I8), F('b', DType.U16)))
    payload, _, _ = ChunkCodec(spec).encode({'a': [1, 2], 'b': [3, 4]}, 10, 20)
    assert payload[20:] == bytes([1, 3, 0, 2, 4, 0])
    assert struct.unpack_from('<IQQ', payload)[1:] == (10, 20)


def test_chunk_pad_truncate_and_zero_fill():
    spec = ChunkSpec('c', 4, (F('a', DType.F32), F('b', DType.F32)))
    codec = ChunkCodec(spec)
    short = codec.decode(codec.encode({'a': [1, 2]}, 1)[0])
    assert short.columns['a'].tolist() == [1, 2, 0, 0]
    assert short.columns['b'].tolist() == [0, 0, 0, 0]
    long = codec.decode(codec.encode({'a': list(range(10))}, 1)[0])
    assert long.columns['a'].tolist() == [0, 1, 2, 3]
    empty = codec.decode(codec.encode({}, 1)[0])
    assert empty.matrix().tolist() == [[0, 0]] * 4


def test_chunk_from_2d_array_and_shape_errors():
    spec = ChunkSpec('c', 3, (F('a', DType.F64), F('b', DType.BOOL)))
    codec = ChunkCodec(spec)
    got = codec.decode(codec.encode(np.array([[1.5, 0], [2.5, 1], [3.5, 2]]), 1)[0])
    assert got.columns['a'].tolist() == [1.5, 2.5, 3.5]
    assert got.columns['b'].tolist() == [False, True, True]
    assert got.raw_columns()['b'] == [0.0, 1.0, 1.0]
    with pytest.raises(ValueError):
        codec.encode(np.zeros((3, 3)), 1)
    with pytest.raises(TypeError):
        codec.encode([1, 2, 3], 1)


def test_chunk_saturation_indices_and_values():
    spec = ChunkSpec('c', 4, (F('i', DType.I8), F('f', DType.F32)))
    payload, typed, saturated = ChunkCodec(spec).encode(
        {'i': [500, -500, 42, math.nan], 'f': [math.nan, math.inf, -math.inf, 1e40]}, 1
    )
    assert typed['i'].tolist() == [127, -128, 42, 0]
    assert saturated == [(0, 'i'), (1, 'i'), (3, 'i'), (3, 'f')]
    got = ChunkCodec(spec).decode(payload)
    f = got.columns['f']
    assert math.isnan(f[0]) and f[1] == math.inf and f[2] == -math.inf and f[3] == math.inf


def test_chunk_24kb_payload_exact():
    spec = ChunkSpec('big', 100, tuple(F(f'j{i}', DType.F64) for i in range(30)))
    data = np.random.default_rng(1).normal(size=(100, 30))
    codec = ChunkCodec(spec)
    payload, _, _ = codec.encode(data, 7, 3)
    assert len(payload) == 24_020
    assert np.array_equal(codec.decode(payload).matrix(), data)


def test_chunk_decode_rejects_wrong_fingerprint_and_length():
    spec = ChunkSpec('c', 2, (F('a', DType.F32),))
    codec = ChunkCodec(spec)
    payload = codec.encode({}, 1)[0]
    other = ChunkCodec(ChunkSpec('c', 3, (F('a', DType.F32),)))
    with pytest.raises(PacketError) as exc:
        other.decode(payload)
    assert exc.value.reason == 'unknown-chunk'
    with pytest.raises(PacketError) as exc:
        codec.decode(payload[:-1])
    assert exc.value.reason == 'bad-payload'


@given(
    st.lists(st.tuples(st.text('xyz', min_size=1, max_size=3), st.sampled_from(list(DType))),
             min_size=1, max_size=5, unique_by=lambda t: t[0]),
    st.integers(1, 20),
    st.data(),
)  # fmt: skip
def test_chunk_round_trip(fields, horizon, data):
    spec = ChunkSpec('chunk', horizon, tuple(F(n, d) for n, d in fields))
    columns = {
        f.name: data.draw(st.lists(st.floats(-1e3, 1e3), min_size=horizon, max_size=horizon)) for f in spec.fields
    }
    codec = ChunkCodec(spec)
    payload, typed, _ = codec.encode(columns, 1, 2)
    got = codec.decode(payload)
    assert (got.timestamp_us, got.in_reply_to_ts_us) == (1, 2)
    for f in spec.fields:
        expected = [expected_wire_value(f.dtype, v) for v in columns[f.name]]
        assert got.columns[f.name].astype(np.float64).tolist() == expected
        assert got.columns[f.name].dtype == (np.bool_ if f.dtype is DType.BOOL else f.dtype.numpy_dtype)


# -- rtt -------------------------------------------------------------------------------------------------


def test_rtt_packets():
    assert encode_rtt(0, 5) == b'\x00' + (5).to_bytes(8, 'little')
    assert decode_rtt(encode_rtt(1, 99)) == (1, 99)
    assert decode_rtt(b'\x02' + bytes(8)) is None  # unknown kind
    assert decode_rtt(b'\x00' * 8) is None
    assert decode_rtt(b'\x00' * 10) is None
