"""The doctor command: each check in good and bad environments, exit status, JSON, secrets never printed.

No ROS graph and no LiveKit server: the reachability check talks to a tiny http.server on 127.0.0.1.
"""

import argparse
import contextlib
import datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
import io
import json
import os
from pathlib import Path
import site
import socket
import subprocess
import sys
import threading
from types import SimpleNamespace

from livekit import api
import numpy
import pytest

from portal_bridge.cli import doctor, doctor_base, doctor_install_checks, doctor_room_checks, doctor_ros_checks
from portal_bridge.cli.doctor_base import FAIL, OK, WARN, Context, Result
from portal_bridge.portal.room.tokens import mint_token
from portal_bridge.ros.dds_profile import PROFILE_VARIABLES, fastdds_major

CONFIG = Path(__file__).resolve().parents[1] / 'config'
LOCALHOST_XML = str(CONFIG / 'fastdds_localhost.xml')
LARGE_XML = str(CONFIG / 'fastdds_large_messages.xml')
OLD, NEW = 'FASTRTPS_DEFAULT_PROFILES_FILE', 'FASTDDS_DEFAULT_PROFILES_FILE'
KEY = 'APIdoctorKey'
SECRET = 'Zq8v1kP0sXw3mR7tY2bN5cJ9hL4dF6gA0e'  # >= 32 bytes: no short-HMAC warning
ENV_VARS = (
    'LIVEKIT_URL', 'LIVEKIT_TOKEN', 'LIVEKIT_API_KEY', 'LIVEKIT_API_SECRET', OLD, NEW, 'ROS_LOCALHOST_ONLY',
    'ROS_AUTOMATIC_DISCOVERY_RANGE', 'ROS_DOMAIN_ID', 'ROS_DISTRO',
)  # fmt: skip


@pytest.fixture
def clean_env(monkeypatch):
    for var in ENV_VARS:
        monkeypatch.delenv(var, raising=False)
    return monkeypatch


@pytest.fixture
def http_server():
    """start(body, status) -> ws:// URL of a local HTTP server answering every GET with that."""
    servers = []

    def start(body=b'OK', status=200):
        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):
                self.send_response(status)
                self.send_header('Content-Length', str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        server = ThreadingHTTPServer(('127.0.0.1', 0), Handler)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append(server)
        return f'ws://127.0.0.1:{server.server_address[1]}'

    yield start
    for server in servers:
        server.shutdown()
        server.server_close()


def closed_port_url():
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        port = s.getsockname()[1]
    return f'ws://127.0.0.1:{port}'


def leaks(secret, text):
    """Whether any 10 characters of ``secret`` show in ``text`` (YAML errors quote a line's start)."""
    return any(secret[i : i + 10] in text for i in range(len(secret) - 9))


def token(ttl=datetime.timedelta(hours=1), identity='robot', room='lab'):
    return mint_token(KEY, SECRET, identity, room, ttl=ttl)


def write_profile(path, shm_segment='33554432', whitelist=('127.0.0.1',), default='true'):
    addresses = ''.join(f'<address>{a}</address>' for a in whitelist)
    white = f'<interfaceWhiteList>{addresses}</interfaceWhiteList>' if whitelist else ''
    segment = f'<segment_size>{shm_segment}</segment_size>' if shm_segment else ''
    path.write_text(
        '<?xml version="1.0" encoding="UTF-8"?>'
        '<profiles xmlns="http://www.eprosima.com/XMLSchemas/fastRTPS_Profiles"><transport_descriptors>'
        f'<transport_descriptor><transport_id>shm</transport_id><type>SHM</type>{segment}</transport_descriptor>'
        f'<transport_descriptor><transport_id>udp</transport_id><type>UDPv4</type>{white}</transport_descriptor>'
        f'</transport_descriptors><participant profile_name="p" is_default_profile="{default}"><rtps>'
        '<userTransports><transport_id>shm</transport_id><transport_id>udp</transport_id></userTransports>'
        '<useBuiltinTransports>false</useBuiltinTransports></rtps></participant></profiles>'
    )
    return str(path)


# --- 1. ROS distro and Python ---------------------------------------------------------------------


def test_ros_ok_names_python_and_the_distro_told_by_rclpy(clean_env):
    result = doctor_ros_checks.check_ros(Context(environ={}))
    assert result.status == OK, result
    assert f'Python {sys.version_info[0]}.{sys.version_info[1]}' in result.message
    assert 'ROS_DISTRO unset (rclpy ' in result.message


def test_ros_fails_with_the_setup_command_when_rclpy_does_not_import(monkeypatch):
    monkeypatch.setitem(sys.modules, 'rclpy', None)
    result = doctor_ros_checks.check_ros(Context(environ={'ROS_DISTRO': 'humble'}))
    assert result.status == FAIL
    assert 'source /opt/ros/humble/setup.bash' in result.message
    if sys.version_info[:2] != (3, 10):
        assert 'built for Python 3.10' in result.message


def test_ros_warns_when_ros_distro_disagrees_with_the_installed_rclpy():
    installed, how = doctor_base.ros_distro({})
    if installed is None:
        pytest.skip(f'{how}: no distro known for it')
    other = 'humble' if installed != 'humble' else 'jazzy'
    result = doctor_ros_checks.check_ros(Context(environ={'ROS_DISTRO': other}))
    assert result.status == WARN and f'ROS_DISTRO={other}' in result.message


def test_ros_distro_from_the_variable_or_rclpy():
    assert doctor_base.ros_distro({'ROS_DISTRO': 'Humble'}) == ('humble', 'ROS_DISTRO')
    distro, how = doctor_base.ros_distro({})
    assert how.startswith('rclpy ') and distro == doctor_base.RCLPY_MAJOR_DISTRO.get(int(how.split()[1].split('.')[0]))


# --- 2. RMW and the Fast DDS profile --------------------------------------------------------------


def test_fastdds2_with_its_variable_reports_segment_and_loopback_confinement():
    status, text = doctor_ros_checks.fastdds_profile_status({OLD: LOCALHOST_XML}, 2)
    assert status == OK, text
    assert 'Fast DDS 2.x' in text and 'SHM segment 32 MB' in text
    assert 'UDP confined to 127.0.0.1: that process cannot talk to other hosts' in text


def test_multi_host_profile_is_not_reported_as_confined():
    status, text = doctor_ros_checks.fastdds_profile_status({NEW: LARGE_XML}, 3)
    assert status == OK and 'SHM segment 32 MB' in text
    assert 'confined' not in text and 'other hosts reachable' in text


def test_fastdds2_with_only_the_3x_variable_warns_it_is_silently_ignored():
    status, text = doctor_ros_checks.fastdds_profile_status({NEW: LOCALHOST_XML}, 2)
    assert status == WARN
    assert 'silently ignored' in text and f'export {OLD}={LOCALHOST_XML}' in text


def test_fastdds3_with_only_the_2x_variable_warns_to_rename():
    status, text = doctor_ros_checks.fastdds_profile_status({OLD: LOCALHOST_XML}, 3)
    assert status == WARN and f'rename it to {NEW}' in text and 'SHM segment 32 MB' in text


@pytest.mark.parametrize('major', [2, 3])
def test_both_variables_naming_one_file_are_fine_and_different_files_are_pointed_out(major, tmp_path):
    status, text = doctor_ros_checks.fastdds_profile_status({OLD: LOCALHOST_XML, NEW: LOCALHOST_XML}, major)
    assert status == OK and 'ignored' not in text
    other = write_profile(tmp_path / 'other.xml')
    status, text = doctor_ros_checks.fastdds_profile_status({OLD: LOCALHOST_XML, NEW: other}, major)
    used, ignored = (OLD, NEW) if major == 2 else (NEW, OLD)
    assert f'{used}=' in text and f'{ignored} (a different file) is ignored' in text


@pytest.mark.parametrize('major', [2, 3, None])
def test_no_profile_variable_warns_about_large_images(major):
    status, text = doctor_ros_checks.fastdds_profile_status({}, major)
    assert status == WARN and '512 KB' in text
    if major is not None:
        assert f'export {PROFILE_VARIABLES[major]}=' in text


@pytest.mark.parametrize('major', [2, 3])
def test_a_profile_variable_naming_a_missing_file_fails(major, tmp_path):
    missing = str(tmp_path / 'nope.xml')
    status, text = doctor_ros_checks.fastdds_profile_status({PROFILE_VARIABLES[major]: missing}, major)
    assert status == FAIL and missing in text and 'does not exist' in text


def test_profile_contents_small_segment_no_default_participant_bad_xml(tmp_path):
    status, text = doctor_ros_checks.summarize_profile(write_profile(tmp_path / 'small.xml', shm_segment='524288'))
    assert status == WARN and 'SHM segment 512 KB' in text
    status, text = doctor_ros_checks.summarize_profile(write_profile(tmp_path / 'dflt.xml', shm_segment=''))
    assert status == WARN and 'SHM segment 512 KB' in text  # no segment_size: Fast DDS's default
    status, text = doctor_ros_checks.summarize_profile(write_profile(tmp_path / 'named.xml', default='false'))
    assert status == WARN and 'is_default_profile' in text
    bad = tmp_path / 'bad.xml'
    bad.write_text('<profiles><unclosed></profiles>')
    status, text = doctor_ros_checks.summarize_profile(str(bad))
    assert status == FAIL and 'XML' in text
    status, text = doctor_ros_checks.summarize_profile(write_profile(tmp_path / 'all.xml', whitelist=()))
    assert status == OK and 'other hosts reachable' in text


def test_check_rmw_uses_the_installed_fastdds_version(monkeypatch):
    monkeypatch.setattr(doctor_ros_checks, 'fastdds_major', lambda: 3)
    result = doctor_ros_checks.check_rmw(
        Context(environ={'RMW_IMPLEMENTATION': 'rmw_fastrtps_cpp', OLD: LOCALHOST_XML})
    )
    assert result.status == WARN and 'Fast DDS 3.x' in result.message and f'rename it to {NEW}' in result.message
    monkeypatch.setattr(doctor_ros_checks, 'fastdds_major', lambda: 2)
    result = doctor_ros_checks.check_rmw(Context(environ={OLD: LOCALHOST_XML}))
    assert result.status == OK and 'RMW_IMPLEMENTATION unset (rmw_fastrtps_cpp)' in result.message


def test_check_rmw_fails_for_an_rmw_that_is_not_installed():
    result = doctor_ros_checks.check_rmw(Context(environ={'RMW_IMPLEMENTATION': 'rmw_doesnotexist_cpp'}))
    assert result.status == FAIL and 'rmw_doesnotexist_cpp is not installed' in result.message


# --- 3. Shared memory ---------------------------------------------------------------------------


def fake_statvfs(free, total=1 << 30):
    return lambda path: SimpleNamespace(f_frsize=4096, f_blocks=total // 4096, f_bavail=free // 4096)


def test_shm_ok_with_room_and_warns_below_64_mb(monkeypatch, tmp_path):
    monkeypatch.setattr(doctor_ros_checks, 'SHM_PATH', str(tmp_path))
    monkeypatch.setattr(doctor.os, 'statvfs', fake_statvfs(512 << 20))
    result = doctor_ros_checks.check_shm(Context())
    assert result.status == OK and '512 MB free of 1024 MB' in result.message
    monkeypatch.setattr(doctor.os, 'statvfs', fake_statvfs(32 << 20, total=64 << 20))
    result = doctor_ros_checks.check_shm(Context())
    assert result.status == WARN and '32 MB free of 64 MB' in result.message and '--shm-size' in result.message


def test_shm_missing_warns(monkeypatch, tmp_path):
    monkeypatch.setattr(doctor_ros_checks, 'SHM_PATH', str(tmp_path / 'no-shm'))
    result = doctor_ros_checks.check_shm(Context())
    assert result.status == WARN and 'does not exist' in result.message


def test_shm_on_this_machine_reports_sizes():
    if not os.path.isdir('/dev/shm'):
        pytest.skip('no /dev/shm here')
    assert 'free of' in doctor_ros_checks.check_shm(Context()).message


# --- 4. Discovery range -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ('env', 'status', 'text'),
    [
        ({'ROS_DISTRO': 'humble', 'ROS_LOCALHOST_ONLY': '1'}, OK, 'this host only'),
        ({'ROS_DISTRO': 'humble', 'ROS_AUTOMATIC_DISCOVERY_RANGE': 'LOCALHOST'}, WARN, 'is ignored'),
        ({'ROS_DISTRO': 'humble'}, OK, 'on the subnet'),
        ({'ROS_DISTRO': 'jazzy', 'ROS_AUTOMATIC_DISCOVERY_RANGE': 'LOCALHOST'}, OK, 'RANGE: LOCALHOST'),
        ({'ROS_DISTRO': 'jazzy', 'ROS_LOCALHOST_ONLY': '1'}, WARN, 'deprecated'),
        ({'ROS_DISTRO': 'jazzy'}, OK, 'RANGE: SUBNET'),
        ({'ROS_DISTRO': 'kilted', 'ROS_LOCALHOST_ONLY': '1'}, WARN, 'kilted ignores ROS_LOCALHOST_ONLY'),
        (
            {'ROS_DISTRO': 'kilted', 'ROS_LOCALHOST_ONLY': '1', 'ROS_AUTOMATIC_DISCOVERY_RANGE': 'LOCALHOST'},
            OK,
            '(ROS_LOCALHOST_ONLY is ignored)',
        ),
        ({'ROS_DISTRO': 'jazzy', 'ROS_AUTOMATIC_DISCOVERY_RANGE': 'NEARBY'}, WARN, 'is not one of'),
        ({'ROS_DISTRO': 'jazzy', 'ROS_DOMAIN_ID': '42'}, OK, 'ROS_DOMAIN_ID=42'),
        ({'ROS_DISTRO': 'jazzy', 'ROS_DOMAIN_ID': 'lab'}, FAIL, 'not an integer 0..232'),
        ({'ROS_DISTRO': 'jazzy', 'ROS_DOMAIN_ID': '300'}, FAIL, 'not an integer 0..232'),
    ],
)
def test_discovery_variables_against_the_distro(env, status, text):
    result = doctor_ros_checks.check_discovery(Context(environ=env))
    assert (result.status, text in result.message) == (status, True), result


def test_discovery_without_ros_distro_uses_rclpy():
    result = doctor_ros_checks.check_discovery(Context(environ={'ROS_AUTOMATIC_DISCOVERY_RANGE': 'LOCALHOST'}))
    distro, _ = doctor_base.ros_distro({})
    assert result.status == OK and f'{distro} reads ROS_AUTOMATIC_DISCOVERY_RANGE: LOCALHOST' in result.message


# --- 5. livekit SDK -----------------------------------------------------------------------------


def test_livekit_importable_and_in_the_tested_range():
    result = doctor_install_checks.check_livekit(Context(environ={}))
    assert result.status == OK, result
    assert 'livekit 1.2.' in result.message and 'livekit-api 1.2.' in result.message


@pytest.mark.parametrize('module', ['livekit.rtc', 'livekit.api'])
def test_livekit_not_importable_fails_with_the_pip_command(monkeypatch, module):
    monkeypatch.setitem(sys.modules, module, None)
    result = doctor_install_checks.check_livekit(Context(environ={'ROS_DISTRO': 'humble'}))
    assert result.status == FAIL and module in result.message
    assert 'pip install "livekit>=1.2.1,<1.3" "livekit-api>=1.2.2,<1.3" "numpy<2"' in result.message
    assert '--system-site-packages' in result.message
    assert 'numpy<2' not in doctor_install_checks.check_livekit(Context(environ={'ROS_DISTRO': 'jazzy'})).message


def test_livekit_outside_the_tested_range_warns(monkeypatch):
    versions = {'livekit': '1.3.0', 'livekit-api': '1.2.9'}
    monkeypatch.setattr(doctor_install_checks, '_dist_version', versions.get)
    result = doctor_install_checks.check_livekit(Context(environ={}))
    assert result.status == WARN
    assert 'livekit 1.3.0 is outside the tested range >=1.2.1,<1.3' in result.message
    assert 'livekit-api 1.2.9,' in result.message or 'livekit-api 1.2.9;' in result.message


# --- 6. numpy vs cv_bridge / OpenCV -------------------------------------------------------------


def fake_modules(monkeypatch, tmp_path, **sources):
    """Modules importable here and in subprocesses (ahead of any real cv_bridge/cv2)."""
    for name, source in sources.items():
        (tmp_path / f'{name}.py').write_text(source)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setenv('PYTHONPATH', os.pathsep.join(filter(None, [str(tmp_path), os.environ.get('PYTHONPATH')])))


NUMPY1_BUILD = (
    'import sys\n'
    "sys.stderr.write('A module that was compiled using NumPy 1.x cannot be run in\\n"
    "NumPy 2.1.0 as it may crash. To support both 1.x and 2.x versions of NumPy...\\n')\n"
    "raise ImportError('numpy.core.multiarray failed to import')\n"
)


def test_numpy_ok_when_cv_bridge_and_cv2_import(monkeypatch, tmp_path):
    fake_modules(monkeypatch, tmp_path, cv_bridge='X = 1\n', cv2='X = 1\n')
    result = doctor_install_checks.check_numpy(Context())
    assert result.status == OK, result
    assert f'numpy {numpy.__version__}' in result.message and 'cv_bridge imports, cv2 imports' in result.message


def test_cv_bridge_built_for_numpy1_fails_with_the_fix(monkeypatch, tmp_path):
    fake_modules(monkeypatch, tmp_path, cv_bridge=NUMPY1_BUILD, cv2='X = 1\n')
    result = doctor_install_checks.check_numpy(Context())
    assert result.status == FAIL
    assert 'cv_bridge was built for NumPy 1.x' in result.message and 'install "numpy<2"' in result.message
    assert 'cv2 imports' in result.message


def test_an_import_that_crashes_fails(monkeypatch, tmp_path):
    fake_modules(monkeypatch, tmp_path, cv_bridge='X = 1\n', cv2='import os\nos.abort()\n')
    result = doctor_install_checks.check_numpy(Context())
    assert result.status == FAIL and 'import cv2 crashed (signal' in result.message


def test_numpy_from_the_user_site_shadowing_another_warns(monkeypatch, tmp_path):
    (tmp_path / 'fakes').mkdir()
    fake_modules(monkeypatch, tmp_path / 'fakes', cv_bridge='X = 1\n', cv2='X = 1\n')
    other = tmp_path / 'system'
    (other / 'numpy').mkdir(parents=True)
    (other / 'numpy' / '__init__.py').write_text('')
    monkeypatch.syspath_prepend(str(other))
    monkeypatch.setattr(site, 'USER_SITE', str(tmp_path / 'empty-user-site'))
    assert 'shadows' not in doctor_install_checks.check_numpy(Context()).message
    # Pretend the numpy in use was pip --user installed: the user site is where it lives.
    monkeypatch.setattr(site, 'USER_SITE', str(Path(numpy.__file__).parents[1]))
    result = doctor_install_checks.check_numpy(Context())
    assert result.status == WARN and f'shadows the numpy in {other}' in result.message


def test_numpy_not_importable_fails(monkeypatch):
    monkeypatch.setitem(sys.modules, 'numpy', None)
    result = doctor_install_checks.check_numpy(Context())
    assert result.status == FAIL and 'numpy does not import' in result.message


# --- 7. portal_bridge_msgs ----------------------------------------------------------------------


def test_msgs_importable():
    result = doctor_install_checks.check_msgs(Context())
    assert result.status == OK and 'portal_bridge_msgs from ' in result.message


def test_dataset_libraries_found():
    for module in ('pyarrow', 'av', 'rosbags', 'matplotlib'):
        pytest.importorskip(module, reason='requirements/datasets.txt is not installed here')
    result = doctor_install_checks.check_datasets(Context())
    assert result.status == OK and 'pyarrow ' in result.message and 'av ' in result.message


def test_a_missing_dataset_library_is_a_warning_with_the_install_line(monkeypatch):
    monkeypatch.setitem(sys.modules, 'av', None)
    result = doctor_install_checks.check_datasets(Context())
    assert result.status == WARN and 'av (' in result.message and 'requirements/datasets.txt' in result.message


def test_the_console_page_is_found_or_its_build_line_given(tmp_path, monkeypatch):
    from portal_bridge.nodes import console

    result = doctor_install_checks.check_console(Context())
    assert result.status == OK and 'web/console' in result.message  # make setup built it
    monkeypatch.setattr(console, 'default_web_root', lambda: tmp_path)
    result = doctor_install_checks.check_console(Context())
    assert result.status == WARN and 'npm ci && npm run build' in result.message and 'index.html' in result.message


def test_msgs_missing_fails_with_build_hint(monkeypatch):
    monkeypatch.setitem(sys.modules, 'portal_bridge_msgs', None)
    monkeypatch.setitem(sys.modules, 'portal_bridge_msgs.msg', None)
    result = doctor_install_checks.check_msgs(Context())
    assert result.status == FAIL and 'colcon build' in result.message


# --- 8. Server reachable ------------------------------------------------------------------------


def test_server_answering_ok_is_reachable(http_server):
    url = http_server(b'OK')
    result = doctor_room_checks.check_server(Context(url=url))
    assert result.status == OK and url.replace('ws://', 'http://') + '/' in result.message


def test_server_unreachable_fails_with_the_url():
    url = closed_port_url()
    result = doctor_room_checks.check_server(Context(url=url))
    assert result.status == FAIL and url.replace('ws://', 'http://') in result.message


@pytest.mark.parametrize(('body', 'status'), [(b'<html>nginx</html>', 200), (b'not found', 404)])
def test_something_else_on_the_port_warns(http_server, body, status):
    result = doctor_room_checks.check_server(Context(url=http_server(body, status)))
    assert result.status == WARN and 'LiveKit' in result.message


def test_url_mapping_and_bad_schemes():
    assert doctor_room_checks._http_url('ws://127.0.0.1:7880') == 'http://127.0.0.1:7880/'
    assert doctor_room_checks._http_url('wss://u:pw@lk.example.com/rtc?access_token=abc') == 'https://lk.example.com/'
    assert (
        doctor_room_checks._display_url('wss://u:pw@lk.example.com/rtc?access_token=abc') == 'wss://lk.example.com/rtc'
    )
    result = doctor_room_checks.check_server(Context(url='ftp://example.com'))
    assert result.status == FAIL and 'ws://host:port' in result.message


# --- 9. Credentials -----------------------------------------------------------------------------


def test_no_credentials_fail():
    result = doctor_room_checks.check_credentials(Context(environ={}))
    assert result.status == FAIL and 'no LiveKit credentials' in result.message


def test_key_without_secret_names_what_is_missing():
    result = doctor_room_checks.check_credentials(Context(environ={'LIVEKIT_API_KEY': KEY}))
    assert result.status == FAIL and 'LIVEKIT_API_SECRET is not' in result.message


def test_api_key_and_secret_are_reported_by_kind_only():
    ctx = Context(environ={'LIVEKIT_API_KEY': KEY, 'LIVEKIT_API_SECRET': SECRET})
    result = doctor_room_checks.check_credentials(ctx)
    assert result.status == OK and 'API key and secret from LIVEKIT_API_KEY and LIVEKIT_API_SECRET' in result.message
    assert not leaks(SECRET, result.message) and KEY not in result.message
    assert SECRET in ctx.secrets  # what the output is scrubbed of


def test_valid_token_names_identity_room_and_expiry_not_the_token():
    jwt = token(identity='robot', room='lab')
    result = doctor_room_checks.check_credentials(Context(environ={'LIVEKIT_TOKEN': jwt}))
    assert result.status == OK, result
    assert "token from LIVEKIT_TOKEN (identity 'robot', room 'lab', expires in 0 h 59 min" in result.message
    assert not leaks(jwt.split('.')[2], result.message)


def test_expired_token_fails():
    jwt = token(ttl=datetime.timedelta(seconds=1))
    later = datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(seconds=30)
    result = doctor_room_checks.check_credentials(Context(environ={'LIVEKIT_TOKEN': jwt}, now=lambda: later))
    assert result.status == FAIL and 'expired' in result.message and not leaks(jwt.split('.')[2], result.message)


def test_token_without_portal_grants_fails():
    jwt = (
        api.AccessToken(KEY, SECRET)
        .with_identity('x')
        .with_grants(api.VideoGrants(room_join=True, room='lab'))
        .to_jwt()
    )
    result = doctor_room_checks.check_credentials(Context(environ={'LIVEKIT_TOKEN': jwt}))
    assert result.status == FAIL and 'lacks the grant(s) canUpdateOwnMetadata' in result.message


def test_credentials_file_ok_when_private_warns_when_readable(tmp_path):
    path = tmp_path / 'creds.yaml'
    path.write_text(f'api_key: {KEY}\napi_secret: {SECRET}\n')
    path.chmod(0o600)
    result = doctor_room_checks.check_credentials(Context(environ={}, credentials_file=str(path)))
    assert result.status == OK and f'credentials_file {path}' in result.message
    path.chmod(0o644)
    result = doctor_room_checks.check_credentials(Context(environ={}, credentials_file=str(path)))
    assert result.status == WARN and f'chmod 600 {path}' in result.message and not leaks(SECRET, result.message)


@pytest.mark.parametrize(
    ('content', 'text'),
    [
        (f'api_key: {KEY}\napi_secret: [{SECRET}\n', 'not valid YAML'),  # YAML errors quote the line
        (f'{SECRET}==\n', 'has a key other than'),  # a bare base64 secret parses as KEY=VALUE
    ],
)
def test_credentials_file_errors_never_quote_the_file(tmp_path, content, text):
    path = tmp_path / 'creds'
    path.write_text(content)
    result = doctor_room_checks.check_credentials(Context(environ={}, credentials_file=str(path)))
    assert result.status == FAIL and text in result.message and not leaks(SECRET, result.message)


def test_secret_and_token_never_printed_text_or_json(clean_env, capsys, http_server):
    jwt = token()
    clean_env.setenv('LIVEKIT_API_KEY', KEY)
    clean_env.setenv('LIVEKIT_API_SECRET', SECRET)
    clean_env.setenv('LIVEKIT_TOKEN', jwt)
    url = http_server(b'OK')
    for extra in ([], ['--json']):
        doctor.main(['--url', url, *extra])
        out = capsys.readouterr()
        for secret in (SECRET, jwt.split('.')[2]):
            assert not leaks(secret, out.out + out.err)
        assert 'LIVEKIT_TOKEN' in out.out  # the kind is reported


def test_a_check_that_leaks_is_scrubbed(monkeypatch):
    jwt = token()
    leaky = (('leak', 'Leak', lambda ctx: Result(OK, f'secret {SECRET} token {jwt}')),)
    monkeypatch.setattr(
        doctor, 'CHECKS', (('credentials', 'Credentials', doctor_room_checks.check_credentials), *leaky)
    )
    rows = doctor.run_checks(Context(environ={'LIVEKIT_API_KEY': KEY, 'LIVEKIT_API_SECRET': SECRET}))
    assert rows[1]['message'] == 'secret <redacted> token <token>'


def test_short_dev_secrets_do_not_blank_ordinary_words(monkeypatch):
    monkeypatch.setattr(doctor, 'CHECKS', (('credentials', 'Credentials', doctor_room_checks.check_credentials),))
    rows = doctor.run_checks(Context(environ={'LIVEKIT_API_KEY': 'devkey', 'LIVEKIT_API_SECRET': 'secret'}))
    message = {r['check']: r['message'] for r in rows}['credentials']
    assert message.startswith('API key and secret from LIVEKIT_API_KEY and LIVEKIT_API_SECRET')


# --- livekit-server for the demo, contract, settings --------------------------------------------


def test_livekit_server_binary_missing_only_warns(monkeypatch):
    monkeypatch.setattr(doctor_room_checks, 'find_livekit_server', lambda: None)
    assert doctor_room_checks.check_livekit_server(Context()).status == WARN
    monkeypatch.setattr(doctor_room_checks, 'find_livekit_server', lambda: '/opt/lk/livekit-server')
    result = doctor_room_checks.check_livekit_server(Context())
    assert result == Result(OK, 'livekit-server at /opt/lk/livekit-server')


def test_contract_default_loads_and_a_broken_one_fails(tmp_path):
    result = doctor_room_checks.check_contract(Context())
    assert result.status == OK and 'state 0x' in result.message
    bad = tmp_path / 'portal.yaml'
    bad.write_text('version: 99\n')
    result = doctor_room_checks.check_contract(Context(contract_file=str(bad)))
    assert result.status == FAIL and str(bad) in result.message


def test_params_file_values_and_precedence(clean_env, tmp_path):
    assert doctor.read_params_file(str(CONFIG / 'robot_arm.yaml')) == {'livekit_url': 'ws://127.0.0.1:7880'}
    params = tmp_path / 'p.yaml'
    params.write_text(
        '/**/operator_bridge:\n  ros__parameters:\n    livekit_url: wss://lk.example.com\n'
        '    credentials_file: /etc/portal/creds\n    contract_file: /etc/portal/portal.yaml\n'
    )
    clean_env.setenv('LIVEKIT_URL', 'ws://from-env:7880')
    parse = argparse.Namespace
    ctx = doctor.context_from_args(parse(url=None, credentials_file=None, params_file=str(params)))
    assert (ctx.url, ctx.credentials_file, ctx.contract_file) == (
        'wss://lk.example.com',
        '/etc/portal/creds',
        '/etc/portal/portal.yaml',
    )
    ctx = doctor.context_from_args(parse(url='ws://cli:1', credentials_file='/c', params_file=str(params)))
    assert (ctx.url, ctx.url_source, ctx.credentials_file) == ('ws://cli:1', '--url', '/c')
    ctx = doctor.context_from_args(parse(url=None, credentials_file=None, params_file=None))
    assert (ctx.url, ctx.url_source, ctx.credentials_file) == ('ws://from-env:7880', 'LIVEKIT_URL', '')
    clean_env.delenv('LIVEKIT_URL')
    ctx = doctor.context_from_args(parse(url=None, credentials_file=None, params_file=None))
    assert (ctx.url, ctx.url_source) == ('ws://127.0.0.1:7880', 'default')


def test_unreadable_params_file_fails_the_settings_check(tmp_path):
    bad = tmp_path / 'p.yaml'
    bad.write_text('just: [a, list\n')
    rows = {r['check']: r for r in json_run(['--params-file', str(bad), '--url', closed_port_url()])[1]['checks']}
    assert rows['settings']['status'] == FAIL and 'not valid YAML' in rows['settings']['message']
    rows = {r['check']: r for r in json_run(['--params-file', str(tmp_path / 'missing.yaml')])[1]['checks']}
    assert rows['settings']['status'] == FAIL and 'cannot read params file' in rows['settings']['message']


# --- main: exit status and JSON -----------------------------------------------------------------


def json_run(argv):
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        code = doctor.main([*argv, '--json'])
    return code, json.loads(out.getvalue())


def test_exit_status_is_1_only_when_a_check_fails(monkeypatch, capsys):
    table = [('a', 'A', lambda ctx: Result(OK, 'fine')), ('b', 'B', lambda ctx: Result(WARN, 'meh'))]
    monkeypatch.setattr(doctor, 'CHECKS', tuple(table))
    assert doctor.main([]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out == ['[ OK ] A  fine', '[WARN] B  meh', '1 OK, 1 WARN, 0 FAIL']
    table.append(('c', 'C', lambda ctx: Result(FAIL, 'broken')))
    monkeypatch.setattr(doctor, 'CHECKS', tuple(table))
    assert doctor.main([]) == 1
    assert capsys.readouterr().out.splitlines()[-1] == '1 OK, 1 WARN, 1 FAIL'


def test_a_check_that_raises_is_a_fail_and_the_rest_still_run(monkeypatch):
    def boom(ctx):
        raise RuntimeError('kaput')

    table = (('boom', 'Boom', boom), ('a', 'A', lambda ctx: Result(OK, 'fine')))
    monkeypatch.setattr(doctor, 'CHECKS', table)
    code, data = json_run([])
    assert code == 1 and [r['status'] for r in data['checks']] == [FAIL, OK]
    assert 'RuntimeError: kaput' in data['checks'][0]['message']


def test_full_run_json_parses_and_reports_every_check(clean_env, http_server, tmp_path):
    clean_env.setenv(PROFILE_VARIABLES.get(fastdds_major(), OLD), LOCALHOST_XML)
    clean_env.setenv('LIVEKIT_TOKEN', token())
    code, data = json_run(['--url', http_server(b'OK')])
    rows = {r['check']: r for r in data['checks']}
    assert list(rows) == [key for key, _, _ in doctor.CHECKS]
    assert all(r['status'] in (OK, WARN, FAIL) and r['message'] for r in rows.values())
    assert rows['server']['status'] == OK and rows['credentials']['status'] == OK
    failed = [r for r in rows.values() if r['status'] == FAIL]
    assert data['ok'] is (not failed) and code == (1 if failed else 0), failed
    code, data = json_run(['--url', closed_port_url()])
    assert code == 1 and data['ok'] is False
    assert {r['check']: r['status'] for r in data['checks']}['server'] == FAIL


def test_python_m_runs_and_keeps_the_secret_out(http_server):
    env = {k: v for k, v in os.environ.items() if not k.startswith('LIVEKIT_')}
    env.update(LIVEKIT_API_KEY=KEY, LIVEKIT_API_SECRET=SECRET)
    run = subprocess.run(
        [sys.executable, '-m', 'portal_bridge.cli.doctor', '--json', '--url', http_server(b'OK')],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert run.returncode in (0, 1), run.stderr
    data = json.loads(run.stdout)
    assert run.returncode == (0 if data['ok'] else 1)
    assert not leaks(SECRET, run.stdout + run.stderr)
    assert {r['check']: r['status'] for r in data['checks']}['credentials'] == OK
