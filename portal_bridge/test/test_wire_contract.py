"""portal.yaml loading (spec §2) and the programmatic contract API."""

import json
import subprocess
import sys
import textwrap

import pytest

from portal_bridge.cli.contract import main as contract_main
from portal_bridge.portal.wire.contract import ContractError, VideoCodec, WireContract
from portal_bridge.portal.wire.dtypes import DType
from portal_bridge.portal.wire.schema import ChunkSpec, FieldSpec

FULL = textwrap.dedent("""
    version: 1
    fps: 30
    slack: 5
    tolerance: 1.5
    state_reliable: true
    action_reliable: true
    reuse_stale_frames: false
    ping_ms: 1000
    action_subscription: false
    videos:
      - { name: front, codec: h264, max_bitrate_kbps: 8000 }
      - { name: wrist, codec: mjpeg, quality: 90 }
      - { name: depth, codec: png }
    state:
      - { name: joint_pos, dtype: f32 }
      - { name: gripper, dtype: bool }
    action:
      - { name: joint_pos, dtype: f32 }
      - { name: gripper, dtype: bool }
    action_chunks:
      - name: vla
        horizon: 16
        fields: [ { name: joint_pos, dtype: f32 }, { name: gripper, dtype: bool } ]
""")


def load(text: str) -> WireContract:
    return WireContract.from_yaml_str(textwrap.dedent(text))


def error(text: str) -> ContractError:
    with pytest.raises(ContractError) as exc:
        load(text)
    return exc.value


def test_full_document_mirrors_into_contract():
    c = load(FULL)
    assert [v.name for v in c.webrtc_videos] == ['front']
    assert [(v.name, v.codec) for v in c.frame_videos] == [
        ('wrist', VideoCodec.MJPEG),
        ('depth', VideoCodec.PNG),
    ]
    assert c.video('front').max_bitrate_kbps == 8000 and c.video('front').bitrate_bps == 8_000_000
    assert c.video('wrist').quality == 90
    assert c.state == (FieldSpec('joint_pos', DType.F32), FieldSpec('gripper', DType.BOOL))
    assert c.action_chunks == [ChunkSpec('vla', 16, c.state)]
    assert c.track_order == ['front', 'wrist', 'depth']
    assert c.fingerprints()['chunks'] == {'vla': '0xa0d1f873'}


def test_minimal_document_takes_defaults():
    c = load('version: 1')
    assert (c.fps, c.slack, c.tolerance, c.ping_ms) == (30, 5, 1.5, 1000)
    assert c.state_reliable and c.action_reliable
    assert not (c.reuse_stale_frames or c.action_subscription)
    assert c.videos == [] and c.state == () and c.search_range_us == 50_000


def test_yaml_and_programmatic_builds_are_identical():
    c = (
        WireContract()
        .add_video('front', VideoCodec.H264, max_bitrate_kbps=8000)
        .add_video('wrist', VideoCodec.MJPEG, quality=90)
        .add_video('depth', VideoCodec.PNG)
        .add_state([('joint_pos', DType.F32), ('gripper', DType.BOOL)])
        .add_action([FieldSpec('joint_pos', DType.F32), FieldSpec('gripper', DType.BOOL)])
        .add_action_chunk('vla', 16, [('joint_pos', DType.F32), ('gripper', DType.BOOL)])
    )
    assert c == load(FULL)
    assert WireContract.from_yaml_str(c.to_yaml()) == c


def test_codec_and_dtype_strings_are_case_insensitive():
    c = load("""
        version: 1
        videos: [ { name: a, codec: HEVC }, { name: b, codec: Vp9 }, { name: c, codec: RAW } ]
        state: [ { name: x, dtype: U16 } ]
    """)
    assert [v.codec for v in c.videos] == [VideoCodec.H265, VideoCodec.VP9, VideoCodec.RAW]
    assert c.state[0].dtype is DType.U16


@pytest.mark.parametrize(
    ('text', 'kind', 'fragment'),
    [
        ('fps: 30', 'parse', "missing field 'version'"),
        ('version: 1\nfsp: 30', 'parse', "unknown field 'fsp'"),
        ('version: 1\nvideos: [{name: a, codec: h264, bitrate: 1}]', 'parse', "videos[0]: unknown field 'bitrate'"),
        ('version: 1\nstate: [{name: a, dtype: f32, unit: rad}]', 'parse', "state[0]: unknown field 'unit'"),
        ('version: 1\naction_chunks: [{name: c, horizon: 2, fields: [], extra: 1}]', 'parse', 'extra'),
        ('version: 1\nstate: [{name: a, dtype: float64}]', 'parse', "state[0].dtype: unknown dtype 'float64'"),
        ('version: 1\nvideos: [{name: a, codec: h263}]', 'parse', "videos[0].codec: unknown codec 'h263'"),
        ('version: 1\nfps: thirty', 'parse', "fps: expected an unsigned integer, got string 'thirty'"),
        ('version: 1\nfps: -1', 'parse', 'fps: -1 is out of range for u32'),
        ('version: 1\nfps: 30.0', 'parse', 'fps: expected an unsigned integer'),
        ('version: 1\nstate_reliable: yes', 'parse', 'state_reliable: expected true or false'),
        ('version: 1\ntolerance: fast', 'parse', 'tolerance: expected a number'),
        ('version: 1\nvideos: [{name: a, codec: mjpeg, quality: 300}]', 'parse', 'videos[0].quality: 300 is out of range for u8'),
        ('version: 1\nvideos: {name: a}', 'parse', 'videos: expected a sequence'),
        ('version: 1\nstate: [{name: 5, dtype: f32}]', 'parse', 'state[0].name: expected a string'),
        ('version: 1\nversion: 1', 'parse', 'duplicate key'),
        ('[1, 2]', 'parse', 'document: expected a mapping'),
        ('', 'parse', 'document: expected a mapping, got null'),
        ('version: 1\n  bad: : indent', 'parse', 'yaml parse error'),
        ('version: 99', 'version', 'unsupported config-file version 99; this build supports version 1'),
        ('version: 1\nvideos: [{name: a, codec: h264}, {name: a, codec: png}]', 'invalid', "duplicate video track 'a'"),
        ('version: 1\nvideos: [{name: a, codec: mjpeg, quality: 0}]', 'invalid', "video 'a': mjpeg quality must be in 1..=100, got 0"),
        ('version: 1\nvideos: [{name: a, codec: mjpeg, quality: 101}]', 'invalid', 'got 101'),
        ('version: 1\nvideos: [{name: a, codec: png, max_bitrate_kbps: 10}]', 'invalid', "video 'a': max_bitrate_kbps applies to the WebRTC codecs only, not PNG"),
        ('version: 1\nvideos: [{name: a, codec: vp8, max_bitrate_kbps: 0}]', 'invalid', "video 'a': max_bitrate_kbps must be > 0"),
        ('version: 1\nfps: 0', 'invalid', 'fps must be > 0'),
        ('version: 1\nslack: 0', 'invalid', 'slack must be > 0'),
        ('version: 1\ntolerance: 0', 'invalid', 'tolerance must be > 0'),
        ('version: 1\ntolerance: -1.5', 'invalid', 'tolerance must be > 0'),
        ('version: 1\ntolerance: .nan', 'invalid', 'tolerance must be > 0'),
        ('version: 1\naction_chunks: [{name: c, horizon: 1, fields: []}, {name: c, horizon: 2, fields: []}]', 'invalid', "duplicate action chunk 'c'"),
        ('version: 1\naction_chunks: [{name: c, horizon: 0, fields: []}]', 'invalid', "action chunk 'c' horizon must be > 0"),
        ('version: 1\nstate: [{name: a, dtype: f32}, {name: a, dtype: f64}]', 'invalid', "state: duplicate field 'a'"),
    ],
)  # fmt: skip
def test_bad_documents_name_the_offending_field(text, kind, fragment):
    exc = error(text)
    assert exc.kind == kind
    assert fragment in str(exc)


def test_version_is_checked_after_parsing():
    # a parse error wins over a bad version, as in livekit-portal
    assert error('version: 2\nbogus: 1').kind == 'parse'


def test_invalid_checks_follow_portal_order():
    assert 'duplicate video' in str(
        error('version: 1\nfps: 0\nvideos: [{name: a, codec: h264}, {name: a, codec: h264}]')
    )
    assert 'fps' in str(error('version: 1\nfps: 0\naction_chunks: [{name: c, horizon: 0, fields: []}]'))


def test_edge_values_accepted():
    c = load('version: 1\ntolerance: .inf\nping_ms: 0\nvideos: [{name: a, codec: h264, quality: 7}]')
    assert c.search_range_us == 2**64 - 1 and c.ping_ms == 0
    assert c.video('a').quality == 7  # kept but unused for non-MJPEG
    assert load('version: 1\nvideos: [{name: a, codec: mjpeg, quality: ~}]').video('a').quality == 90


def test_tolerance_is_held_in_single_precision():
    assert load('version: 1\ntolerance: 0.1').tolerance == pytest.approx(0.10000000149011612, abs=0)


def test_programmatic_api_rejects_with_contract_errors():
    with pytest.raises(ContractError, match='fps must be > 0'):
        WireContract().set_fps(0)
    with pytest.raises(ContractError, match='slack'):
        WireContract().set_slack(-2)
    with pytest.raises(ContractError, match='tolerance'):
        WireContract().set_tolerance(float('nan'))
    with pytest.raises(ContractError, match='duplicate video'):
        WireContract().add_video('a').add_video('a', VideoCodec.RAW)
    with pytest.raises(ContractError, match='WebRTC codecs only'):
        WireContract().add_video('a', VideoCodec.MJPEG, max_bitrate_kbps=100)
    with pytest.raises(ContractError, match='horizon'):
        WireContract().add_action_chunk('c', 0, [])
    with pytest.raises(ContractError, match='duplicate field'):
        WireContract().add_state([('a', DType.F32)]).add_state([('a', DType.F32)])
    with pytest.raises(ContractError, match='longer than 256'):
        WireContract().add_video('x' * 257)


def test_missing_file_is_an_io_error(tmp_path):
    with pytest.raises(ContractError) as exc:
        WireContract.from_yaml_file(tmp_path / 'nope.yaml')
    assert exc.value.kind == 'io' and str(exc.value).startswith('io error: ')


# -- the contract command ----------------------------------------------------------------------------------

APPENDIX_CONTRACT = """\
version: 1
state:
  - { name: j1, dtype: f32 }
  - { name: j2, dtype: f32 }
  - { name: j3, dtype: f32 }
  - { name: gripper, dtype: bool }
  - { name: mode, dtype: i8 }
action:
  - { name: j1, dtype: f32 }
  - { name: j2, dtype: f32 }
  - { name: j3, dtype: f32 }
  - { name: gripper, dtype: bool }
  - { name: mode, dtype: i8 }
action_chunks:
  - name: vla
    horizon: 16
    fields: [ { name: joint_pos, dtype: f32 }, { name: gripper, dtype: bool } ]
  - { name: act, horizon: 4, fields: [ { name: j, dtype: f32 } ] }
"""


def test_contract_command_prints_appendix_a_fingerprints(tmp_path, capsys):
    path = tmp_path / 'portal.yaml'
    path.write_text(APPENDIX_CONTRACT)
    assert contract_main([str(path)]) == 0
    assert json.loads(capsys.readouterr().out) == {
        'state': '0x7700caf1',
        'action': '0xd6c07af0',
        'chunks': {'vla': '0xa0d1f873', 'act': '0xa4ce3295'},
        'search_range_us': 50000,
    }


def test_contract_module_entry_point_and_exit_code_2(tmp_path):
    good = tmp_path / 'good.yaml'
    good.write_text('version: 1\nstate: [{name: j, dtype: f32}]\naction: [{name: j, dtype: f32}]\nfps: 60')
    run = subprocess.run(
        [sys.executable, '-m', 'portal_bridge.cli.contract', str(good)], capture_output=True, text=True
    )
    assert run.returncode == 0, run.stderr
    assert json.loads(run.stdout) == {
        'state': '0xfd461c29',
        'action': '0x5c86ac28',
        'chunks': {},
        'search_range_us': 25000,
    }
    bad = tmp_path / 'bad.yaml'
    bad.write_text('version: 1\nfps: 0\n')
    run = subprocess.run([sys.executable, '-m', 'portal_bridge.cli.contract', str(bad)], capture_output=True, text=True)
    assert run.returncode == 2
    assert 'invalid config: fps must be > 0' in run.stderr and run.stdout == ''


def test_shipped_contract_is_valid():
    from pathlib import Path

    c = WireContract.from_yaml_file(Path(__file__).parents[1] / 'config' / 'portal.yaml')
    assert c.state and c.action and c.videos


def test_livekit_portal_0_2_8_local_settings_are_accepted_carried_and_not_fingerprinted():
    text = (
        'version: 1\nstall_behavior: omit\nmax_lag_ms: 100\n'
        'videos: [ { name: a, codec: h264, simulcast: true, screencast: true, stall_behavior: freeze, max_lag_ms: 50 } ]\n'
    )
    c = WireContract.from_yaml_str(text)
    assert (c.stall_behavior, c.max_lag_ms) == ('omit', 100)
    v = c.videos[0]
    assert (v.stall_behavior, v.max_lag_ms, v.simulcast, v.screencast) == ('freeze', 50, True, True)
    plain = WireContract.from_yaml_str('version: 1\nvideos: [ { name: a, codec: h264 } ]\n')
    assert c.fingerprints() == plain.fingerprints()
    again = WireContract.from_yaml_str(c.to_yaml())
    assert (again.stall_behavior, again.videos[0].stall_behavior, again.videos[0].simulcast) == ('omit', 'freeze', True)
    for bad, why in (
        ('version: 1\nstall_behavior: wait\n', 'drop, freeze, omit'),
        ('version: 1\nvideos: [ { name: a, codec: png, screencast: true } ]\n', 'WebRTC codecs only'),
        ('version: 1\nmax_lag_ms: -1\n', 'max_lag_ms'),
    ):
        with pytest.raises(ContractError, match=why):
            WireContract.from_yaml_str(bad)
