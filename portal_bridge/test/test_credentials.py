"""Credentials: never in parameters or logs; short-lived tokens work; bad tokens explained in one line.

A server of its own with a distinctive API secret, so a leak of it anywhere is unmistakable.
"""

import asyncio
import datetime
import os
import signal
import subprocess
import sys
import time
import uuid

from livekit import api
import pytest
from support.child_process import spawn
from support.livekit_server import start_server
from support.portal_peers import Peers, fixture_contract
from support.ros_world import BridgeWorld
from support.waiting import async_test, wait_for

from portal_bridge.portal import mint_token

pytestmark = [pytest.mark.livekit, pytest.mark.ros]

KEY = 'pb-test-key'
SECRET = 'pb-secret-' + uuid.uuid4().hex


@pytest.fixture(scope='module')
def server():
    s = start_server(keys=(KEY, SECRET))
    yield s
    s.stop()


def bridge_command(module: str, server, room: str, tmp_path, *extra: str) -> list[str]:
    contract = tmp_path / 'portal.yaml'
    contract.write_text(fixture_contract().to_yaml())
    return [
        sys.executable, '-m', f'portal_bridge.nodes.{module}', '--ros-args',
        '-p', f'livekit_url:={server.url}', '-p', f'room:={room}', '-p', f'contract_file:={contract}',
        *extra,
    ]  # fmt: skip


def without_livekit_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith('LIVEKIT_')}
    env.update(extra)
    return env


def run_to_exit(cmd: list[str], env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=60)


def fatal_lines(out: str) -> list[str]:
    return [line for line in out.splitlines() if '[FATAL]' in line or 'Traceback' in line]


def test_expired_token_exits_2_with_one_clear_line(server, room_name, tmp_path):
    token = mint_token(KEY, SECRET, 'robot', room_name, ttl=datetime.timedelta(seconds=-60))
    run = run_to_exit(
        bridge_command('robot_bridge', server, room_name, tmp_path), without_livekit_env(LIVEKIT_TOKEN=token)
    )
    out = run.stdout + run.stderr
    assert run.returncode == 2, out
    lines = fatal_lines(out)
    assert len(lines) == 1 and 'token expired at' in lines[0] and 'portal_bridge token' in lines[0], out
    assert token not in out and token.split('.')[2] not in out


def test_under_granted_token_exits_2_naming_the_missing_grant(server, room_name, tmp_path):
    grants = api.VideoGrants(
        room_join=True, room=room_name, can_publish=True, can_subscribe=True, can_publish_data=True
    )  # no can_update_own_metadata: the robot could not publish its role or the active operator
    token = api.AccessToken(KEY, SECRET).with_identity('robot').with_grants(grants).to_jwt()
    run = run_to_exit(
        bridge_command('robot_bridge', server, room_name, tmp_path), without_livekit_env(LIVEKIT_TOKEN=token)
    )
    out = run.stdout + run.stderr
    assert run.returncode == 2, out
    lines = fatal_lines(out)
    assert len(lines) == 1 and 'lacks the grant(s) canUpdateOwnMetadata' in lines[0], out
    assert token not in out


def test_token_signed_with_the_wrong_secret_is_refused_in_one_line_per_attempt(server, room_name, tmp_path):
    token = mint_token(KEY, 'not-the-secret', 'robot', room_name)
    proc = spawn(
        bridge_command('robot_bridge', server, room_name, tmp_path),
        env=without_livekit_env(LIVEKIT_TOKEN=token),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    lines = []
    try:
        while sum('cannot join room' in line for line in lines) < 2:  # two attempts: one line each
            lines.append(proc.stdout.readline())
            assert lines[-1], 'robot_bridge exited without explaining the refused token'
    finally:
        proc.send_signal(signal.SIGINT)
        rest, _ = proc.communicate(timeout=20)
    first = next(line for line in lines if 'cannot join room' in line)
    rest = ''.join(lines) + rest
    assert 'LiveKit rejected the credentials' in first, first
    assert proc.returncode == 0 and 'Traceback' not in rest, rest
    assert token not in rest and token.split('.')[2] not in rest, rest


@async_test(timeout=90)
async def test_short_lived_token_joins_and_outlives_its_expiry(server, room_name, tmp_path):
    ttl = 6
    token = mint_token(KEY, SECRET, 'robot', room_name, ttl=datetime.timedelta(seconds=ttl))
    async with Peers(server, room_name) as peers:
        op = await peers.operator(fixture_contract())
        proc = spawn(
            bridge_command('robot_bridge', server, room_name, tmp_path, '--log-level', 'debug'),
            env=without_livekit_env(LIVEKIT_TOKEN=token),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        try:
            await wait_for(lambda: op.robot_identity() == 'robot', timeout=30, what='robot_bridge joined')
            until = time.monotonic() + ttl + 3  # past the token's expiry, the robot stays in the room
            while time.monotonic() < until:
                assert op.robot_identity() == 'robot', 'the robot left when its token expired'
                await asyncio.sleep(0.05)
            proc.send_signal(signal.SIGINT)
            out, _ = proc.communicate(timeout=20)
        finally:
            proc.kill()
    assert proc.returncode == 0 and 'Traceback' not in out, out
    assert token not in out and token.split('.')[2] not in out


def test_secret_never_in_parameters_or_logs(server, room_name, tmp_path, capfd):
    """The node holds the API secret (it mints its own tokens) yet no parameter or log line shows it."""
    world = BridgeWorld(server, room_name, tmp_path)
    try:
        c = world.contract(fixture_contract().to_yaml())
        robot = world.robot_bridge(c)
        op = world.operator_bridge(c, auto_claim=True)
        for node in (robot, op):
            node.get_logger().set_level(10)  # DEBUG: even debug lines must not carry it
        assert robot.robot.is_connected and op.operator.is_connected
        for node in (robot, op):
            for name, param in node._parameters.items():
                assert SECRET not in str(param.value), name
                assert not any(word in name for word in ('secret', 'token', 'api_key')), name
    finally:
        world.close()
    # ...and the same through a process, at debug level, with credentials from the environment.
    proc = spawn(
        bridge_command('operator_bridge', server, room_name, tmp_path, '--log-level', 'debug'),
        env=without_livekit_env(LIVEKIT_API_KEY=KEY, LIVEKIT_API_SECRET=SECRET),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        line = ''
        while 'connected as operator' not in line:
            line = proc.stdout.readline()
            assert line, 'operator_bridge exited before joining'
    finally:
        proc.send_signal(signal.SIGINT)
        out, _ = proc.communicate(timeout=20)
    captured = capfd.readouterr()
    assert SECRET not in captured.out + captured.err + out
    assert proc.returncode == 0, out


def test_credential_file_errors_never_quote_the_file(tmp_path):
    """A malformed file's error names the problem and the place, never the content (it may be a secret)."""
    from portal_bridge.ros.credentials import CredentialsError, load_credentials

    secret = 'Zm9vYmFyYmF6cXV4c2VjcmV0LXZhbHVlLTEyMzQ1Njc4OQ=='
    cases = {
        'yaml.yaml': f'api_key: k\napi_secret: [{secret}\n',  # YAML's own message quotes this line
        'bare.yaml': f'{secret}: 1\n',  # an unknown key that is the secret itself
    }
    for name, text in cases.items():
        path = tmp_path / name
        path.write_text(text)
        with pytest.raises(CredentialsError) as exc:
            load_credentials(str(path))
        message = str(exc.value)
        assert all(secret[i : i + 10] not in message for i in range(len(secret) - 9)), message
        assert str(path) in message
