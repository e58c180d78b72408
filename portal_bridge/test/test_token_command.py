"""The token command mints tokens that any Portal peer can join with."""

import os
import subprocess
import sys

from livekit import api, rtc
import pytest
from support.waiting import async_test, wait_for

from portal_bridge.portal.protocol import ACTIVE_OPERATOR_ATTR, ROLE_ATTR


def run_token(*args, env_extra=None):
    env = {k: v for k, v in os.environ.items() if not k.startswith('LIVEKIT_')}
    env.update(env_extra or {})
    return subprocess.run(
        [sys.executable, '-m', 'portal_bridge.cli.token', *args], capture_output=True, text=True, env=env
    )


def test_token_has_portal_grants():
    run = run_token(
        '--identity',
        'policy',
        '--room',
        'lab',
        '--active-operator',
        'teleop',
        env_extra={'LIVEKIT_API_KEY': 'devkey', 'LIVEKIT_API_SECRET': 'secret'},
    )
    assert run.returncode == 0, run.stderr
    claims = api.TokenVerifier('devkey', 'secret').verify(run.stdout.strip())
    assert claims.identity == 'policy'
    v = claims.video
    assert (
        v.room_join,
        v.room,
        v.can_publish,
        v.can_subscribe,
        v.can_publish_data,
        v.can_update_own_metadata,
    ) == (True, 'lab', True, True, True, True)
    assert claims.attributes == {ACTIVE_OPERATOR_ATTR: 'teleop'}


def test_token_without_credentials_explains_and_exits_2():
    run = run_token('--identity', 'x', '--room', 'y')
    assert run.returncode == 2
    assert 'LIVEKIT_API_KEY' in run.stderr and run.stdout == ''


@pytest.mark.livekit
@async_test()
async def test_minted_token_joins_and_sets_attributes(livekit_server, room_name):
    run = run_token(
        '--identity',
        'browser',
        '--room',
        room_name,
        env_extra={
            'LIVEKIT_API_KEY': livekit_server.api_key,
            'LIVEKIT_API_SECRET': livekit_server.api_secret,
        },
    )
    room = rtc.Room()
    await room.connect(livekit_server.url, run.stdout.strip())
    try:
        await room.local_participant.set_attributes({ROLE_ATTR: 'operator'})
        await wait_for(lambda: room.local_participant.attributes.get(ROLE_ATTR) == 'operator')
        assert room.name == room_name
    finally:
        await room.disconnect()


def test_redaction_blanks_tokens_and_secrets_in_quoted_server_errors():
    from portal_bridge.portal.room.tokens import mint_token, redact_tokens
    from portal_bridge.ros.credentials import Credentials, redact

    token = mint_token('k', 'the-secret', 'robot', 'room')
    error = f'invalid token: {token}, error: token signature is invalid (key k, secret the-secret)'
    assert (
        redact_tokens(error) == 'invalid token: <token>, error: token signature is invalid (key k, secret the-secret)'
    )
    assert redact(error, Credentials(api_key='k', api_secret='the-secret')) == (
        'invalid token: <token>, error: token signature is invalid (key k, secret <redacted>)'
    )
    assert redact('no token here: eyJ.x', None) == 'no token here: eyJ.x'
