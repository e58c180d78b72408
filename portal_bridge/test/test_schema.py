import pytest

from portal_bridge.portal.wire.dtypes import DType
from portal_bridge.portal.wire.schema import (
    ChunkSpec,
    FieldSpec,
    action_fingerprint,
    as_fields,
    chunk_fingerprint,
    state_fingerprint,
)

F = FieldSpec
BASIC = (
    F('j1', DType.F32),
    F('j2', DType.F32),
    F('j3', DType.F32),
    F('gripper', DType.BOOL),
    F('mode', DType.I8),
)

# Appendix A: schema -> (state fp, action fp)
VECTORS = [
    ((), 0x811C9DC5, 0x20DC2DC4),
    ((F('j1', DType.F32), F('j2', DType.F32), F('j3', DType.F32)), 0x4A37C3EF, 0xEBF773EE),
    (BASIC, 0x7700CAF1, 0xD6C07AF0),
    ((F('j', DType.F32),), 0xFD461C29, 0x5C86AC28),
    ((F('a', DType.F32),), 0xE76522CA, 0x46A592CB),
    ((F('seq', DType.F64),), 0x9C7E6235, 0x3DBED234),
    ((F('j1', DType.F32), F('gripper', DType.BOOL), F('mode', DType.I8)), 0xD257D812, 0x73976813),
]


@pytest.mark.parametrize(('fields', 'state_fp', 'action_fp'), VECTORS)
def test_appendix_a_schema_fingerprints(fields, state_fp, action_fp):
    assert state_fingerprint(fields) == state_fp
    assert action_fingerprint(fields) == action_fp


def test_appendix_a_chunk_fingerprints():
    assert chunk_fingerprint(ChunkSpec('act', 4, (F('j', DType.F32),))) == 0xA4CE3295
    vla = ChunkSpec('vla', 16, (F('joint_pos', DType.F32), F('gripper', DType.BOOL)))
    assert chunk_fingerprint(vla) == 0xA0D1F873


def test_fingerprint_sensitive_to_order_name_and_dtype():
    a = (F('x', DType.F32), F('y', DType.F32))
    assert state_fingerprint(a) != state_fingerprint(a[::-1])
    assert state_fingerprint(a) != state_fingerprint((F('x', DType.F32), F('z', DType.F32)))
    assert state_fingerprint(a) != state_fingerprint((F('x', DType.F64), F('y', DType.F32)))


def test_state_and_action_fingerprints_differ_for_same_fields():
    for fields, _, _ in VECTORS:
        assert state_fingerprint(fields) != action_fingerprint(fields)


def test_chunk_fingerprint_covers_name_and_horizon():
    fields = (F('j', DType.F32),)
    base = chunk_fingerprint(ChunkSpec('act', 4, fields))
    assert chunk_fingerprint(ChunkSpec('act', 5, fields)) != base
    assert chunk_fingerprint(ChunkSpec('acu', 4, fields)) != base
    assert chunk_fingerprint(ChunkSpec('act', 4, (F('j', DType.F64),))) != base


def test_as_fields_accepts_pairs_and_specs():
    assert as_fields([('a', DType.F32), F('b', DType.BOOL)]) == (F('a', DType.F32), F('b', DType.BOOL))


def test_utf8_names_hash_their_bytes():
    # Non-ASCII names hash their UTF-8 encoding, not code points.
    assert state_fingerprint((F('gelenk_ä', DType.F32),)) != state_fingerprint((F('gelenk_a', DType.F32),))
