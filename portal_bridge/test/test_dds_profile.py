"""Fast DDS profile selection (dds_profile.py) and the server finder of the launch files (no ROS graph)."""

import os
from pathlib import Path
import xml.etree.ElementTree as ET

import pytest

from portal_bridge.ros.dds_profile import PROFILE_VARIABLES, PROFILES, fastdds_major, profile_env, profile_path
from portal_bridge.ros.launch_helpers import find_livekit_server, overrides_from, truthy

CONFIG = Path(__file__).resolve().parents[1] / 'config'
NS = {'p': 'http://www.eprosima.com/XMLSchemas/fastRTPS_Profiles'}


def test_the_installed_fastdds_major_matches_the_loaded_library():
    """2 with the Jazzy-era wheels (libfastrtps 2.14), 3 with the Kilted-era ones (libfastdds 3.x)."""
    venv = Path(os.environ.get('VIRTUAL_ENV', '/nonexistent'))
    if not venv.is_dir():
        pytest.skip('not in a project venv')
    has_fastrtps = any((venv / 'lib').glob('libfastrtps.so*'))
    assert fastdds_major() == (2 if has_fastrtps else 3)


@pytest.mark.parametrize(
    ('major', 'variable'), [(2, 'FASTRTPS_DEFAULT_PROFILES_FILE'), (3, 'FASTDDS_DEFAULT_PROFILES_FILE')]
)
def test_profile_env_uses_the_variable_that_version_reads(major, variable):
    env = profile_env('localhost', share=str(CONFIG.parent), major=major)
    assert env == {variable: str(CONFIG / 'fastdds_localhost.xml')}


def test_unknown_version_sets_both_and_none_sets_nothing():
    assert set(profile_env('large_messages', share='/x', major=7)) == set(PROFILE_VARIABLES.values())
    assert profile_env('none', share='/x', major=2) == {} and profile_env('', share='/x', major=2) == {}
    with pytest.raises(ValueError, match='large_messages, localhost, none'):
        profile_path('fast', share='/x')


@pytest.mark.parametrize('name', list(PROFILES))
def test_profiles_give_a_32_mb_shm_segment_and_only_localhost_is_confined(name):
    root = ET.parse(CONFIG / PROFILES[name]).getroot()
    transports = {
        t.findtext('p:transport_id', namespaces=NS): t for t in root.iterfind('.//p:transport_descriptor', NS)
    }
    shm = [t for t in transports.values() if t.findtext('p:type', namespaces=NS) == 'SHM']
    assert len(shm) == 1 and shm[0].findtext('p:segment_size', namespaces=NS) == str(32 * 1024 * 1024)
    udp = [t for t in transports.values() if t.findtext('p:type', namespaces=NS) == 'UDPv4']
    whitelist = [a.text for t in udp for a in t.iterfind('.//p:address', NS)]
    assert whitelist == (['127.0.0.1'] if name == 'localhost' else [])
    participant = root.find('.//p:participant', NS)
    assert participant.get('is_default_profile') == 'true'
    used = [t.text for t in participant.iterfind('.//p:transport_id', NS)]
    assert set(used) == set(transports) and participant.findtext('.//p:useBuiltinTransports', namespaces=NS) == 'false'


def test_find_livekit_server_order(tmp_path, monkeypatch):
    exe = tmp_path / 'repo' / '.tools' / 'bin' / 'livekit-server'
    exe.parent.mkdir(parents=True)
    exe.write_text('#!/bin/sh\n')
    exe.chmod(0o755)
    monkeypatch.delenv('PORTAL_BRIDGE_LIVEKIT_SERVER', raising=False)
    monkeypatch.setenv('PATH', str(tmp_path / 'empty'))
    assert find_livekit_server(tmp_path / 'repo' / 'a' / 'b') == str(exe)  # found above the start directory
    on_path = tmp_path / 'bin' / 'livekit-server'
    on_path.parent.mkdir()
    on_path.write_text('#!/bin/sh\n')
    on_path.chmod(0o755)
    monkeypatch.setenv('PATH', str(on_path.parent))
    assert find_livekit_server(tmp_path / 'repo') == str(on_path)  # PATH before .tools
    monkeypatch.setenv('PORTAL_BRIDGE_LIVEKIT_SERVER', str(exe))
    assert find_livekit_server(tmp_path) == str(exe)  # the variable before anything
    monkeypatch.setenv('PORTAL_BRIDGE_LIVEKIT_SERVER', str(tmp_path / 'missing'))
    assert find_livekit_server(tmp_path) is None  # a wrong variable is not silently replaced


def test_overrides_only_for_arguments_given():
    args = {'room': 'lab', 'identity': '', 'auto_claim': 'True'}
    table = {'room': ('room', str), 'identity': ('identity', str), 'auto_claim': ('auto_claim', truthy)}
    assert overrides_from(args.get, table) == {'room': 'lab', 'auto_claim': True}
