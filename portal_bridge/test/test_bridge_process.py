"""The node executables as processes: clean exit on Ctrl-C and SIGTERM, clear configuration errors."""

import os
import signal
import subprocess
import sys

import pytest
from support.child_process import spawn
from support.portal_peers import Peers, fixture_contract
from support.waiting import async_test, wait_for

pytestmark = [pytest.mark.livekit, pytest.mark.ros]


def start(module, tmp_path, server, room, **params):
    contract = tmp_path / 'portal.yaml'
    contract.write_text(fixture_contract().to_yaml())
    args = [
        sys.executable,
        '-m',
        f'portal_bridge.nodes.{module}',
        '--ros-args',
        '-p',
        f'livekit_url:={server.url}',
        '-p',
        f'room:={room}',
        '-p',
        f'contract_file:={contract}',
    ]
    for k, v in params.items():
        args += ['-p', f'{k}:={v}']
    env = dict(os.environ, LIVEKIT_API_KEY=server.api_key, LIVEKIT_API_SECRET=server.api_secret)
    return spawn(args, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


@pytest.mark.parametrize('sig', [signal.SIGINT, signal.SIGTERM])
@async_test(timeout=90)
async def test_robot_bridge_leaves_room_cleanly_on_signal(livekit_server, room_name, tmp_path, sig):
    async with Peers(livekit_server, room_name) as peers:
        op = await peers.operator(fixture_contract())
        left = []
        op.on_operator_left(left.append)
        proc = start('robot_bridge', tmp_path, livekit_server, room_name)
        try:
            await wait_for(lambda: op.robot_identity() == 'robot', timeout=30, what='robot_bridge joined')
            proc.send_signal(sig)
            out, _ = proc.communicate(timeout=20)
        finally:
            proc.kill()
        assert proc.returncode == 0, out
        assert 'Traceback' not in out, out
        assert 'left room' in out, out
        await wait_for(lambda: op.robot_identity() is None, timeout=10, what='robot left the room')


def test_bad_contract_exits_2_with_one_clear_line(tmp_path, livekit_server):
    bad = tmp_path / 'bad.yaml'
    bad.write_text('version: 1\nfps: 0\n')
    env = dict(os.environ, LIVEKIT_API_KEY='k', LIVEKIT_API_SECRET='s')
    run = subprocess.run(
        [sys.executable, '-m', 'portal_bridge.nodes.operator_bridge', '--ros-args', '-p', f'contract_file:={bad}'],
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert run.returncode == 2
    assert 'Traceback' not in run.stdout + run.stderr
    assert 'invalid config: fps must be > 0' in run.stdout + run.stderr


def test_missing_credentials_exit_2_with_the_fix(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith('LIVEKIT_')}
    run = subprocess.run(
        [sys.executable, '-m', 'portal_bridge.nodes.robot_bridge'], env=env, capture_output=True, text=True, timeout=30
    )
    assert run.returncode == 2 and 'Traceback' not in run.stderr
    assert 'LIVEKIT_API_KEY' in run.stderr + run.stdout
