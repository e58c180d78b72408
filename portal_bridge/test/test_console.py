"""The console's ROS-free parts: keymap validation, the token policy and the HTTP server (real sockets)."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import aiohttp
from livekit import api
import pytest

from portal_bridge.console.access import (
    AccessError,
    Grant,
    Refusal,
    TokenPolicy,
    check_binding,
    read_logins,
    read_secret,
)
from portal_bridge.console.keymap import KeymapError, load_keymap, parse_keymap
from portal_bridge.console.page_config import contract_json, page_config
from portal_bridge.console.server import ConsoleServer, content_security_policy
from portal_bridge.portal import WireContract

CONFIG = Path(__file__).resolve().parents[1] / 'config'
ARM = WireContract.from_yaml_file(CONFIG / 'portal.yaml')
ARM_FIELDS = [f.name for f in ARM.action]
KEY, SECRET = 'devkey', 'secret'


# -- keymap --------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ('contract', 'keymap'),
    [('portal.yaml', 'console_keymap.yaml'), ('mobile_base_portal.yaml', 'mobile_base_keymap.yaml')],
)
def test_the_shipped_keymaps_fit_their_contracts(contract, keymap):
    fields = [f.name for f in WireContract.from_yaml_file(CONFIG / contract).action]
    c = WireContract.from_yaml_file(CONFIG / contract)
    parsed = load_keymap(str(CONFIG / keymap), fields, [f.name for f in c.state])
    assert parsed['keyboard'] and parsed['gamepad']['enable_button'] == 4
    assert {b['field'] for b in parsed['keyboard']} <= set(fields)


@pytest.mark.parametrize(
    ('text', 'message'),
    [
        ('version: 2', 'version must be 1'),
        ('version: 1\nkeyboard: [{key: KeyQ, field: elbow, rate: 1}]', "field 'elbow' is not an action field"),
        ('version: 1\nkeyboard: [{key: q, field: gripper, rate: 1}]', "'q' is not a KeyboardEvent.code"),
        ('version: 1\nkeyboard: [{key: KeyQ, field: gripper}]', 'exactly one of rate'),
        ('version: 1\nkeyboard: [{key: KeyQ, field: gripper, rate: 1, value: 2}]', 'exactly one of rate'),
        ('version: 1\nkeyboard: [{key: KeyQ, field: gripper, rate: .nan}]', 'must be a finite number'),
        (
            'version: 1\nkeyboard: [{key: KeyQ, field: gripper, rate: 1}, {key: KeyQ, field: gripper, rate: -1}]',
            'bound twice',
        ),
        (
            'version: 1\nkeyboard: [{key: KeyQ, field: gripper, rate: 1}, {key: KeyA, field: gripper, value: 1}]',
            'both with rate and with value',
        ),
        ('version: 1\ngamepad: {axes: []}', 'enable_button is required'),
        (
            'version: 1\ngamepad: {enable_button: 4, buttons: [{button: 4, field: gripper, rate: 1}]}',
            'is the enable button',
        ),
        ('version: 1\nrate_hz: 0', 'rate_hz 0.0 must be within'),
        ('version: 1\nspeed: 3', 'unknown key(s) speed'),
        ('[unclosed', 'not valid YAML'),
        ('- a list', 'must be a mapping'),
    ],
)
def test_a_bad_keymap_is_refused_naming_the_entry(text, message):
    with pytest.raises(KeymapError, match=None) as exc:
        parse_keymap(text, ARM_FIELDS)
    assert message in str(exc.value)


def test_a_rate_binding_needs_a_state_field_to_start_from():
    text = 'version: 1\nkeyboard: [{key: KeyW, field: linear_x, rate: 0.2}]'
    with pytest.raises(KeymapError, match="no state field 'linear_x'"):
        parse_keymap(text, ['linear_x', 'angular_z'], ['odom_x', 'odom_yaw'])
    assert parse_keymap(text.replace('rate', 'value'), ['linear_x'], ['odom_x'])['keyboard'][0]['value'] == 0.2


def test_a_missing_keymap_file_names_the_file(tmp_path):
    with pytest.raises(KeymapError, match='cannot read keymap'):
        load_keymap(str(tmp_path / 'none.yaml'), ARM_FIELDS)


# -- access --------------------------------------------------------------------------------------
def claims(token: str) -> api.Claims:
    return api.TokenVerifier(KEY, SECRET).verify(token)


def test_local_requests_get_a_short_lived_token_for_the_configured_identity():
    policy = TokenPolicy(KEY, SECRET, 'lab', 'console', 600, secret='a shared secret!')
    grant = policy.decide(True, {})
    assert isinstance(grant, Grant) and grant.identity == 'console' and grant.ttl_s == 600
    c = claims(grant.token)
    assert c.identity == 'console' and c.video.room == 'lab' and c.video.room_join and c.video.can_update_own_metadata
    assert c.video.can_publish_data and c.video.can_subscribe and not c.video.can_publish  # data only


def test_other_machines_need_the_secret_and_logins_need_a_password():
    policy = TokenPolicy(KEY, SECRET, 'lab', 'console', 600, secret='a shared secret!')
    assert policy.decide(False, {}) == Refusal(401, 'this console needs the shared secret')
    assert policy.decide(False, {'secret': 'a shared secret?'}) == Refusal(401, 'wrong shared secret')
    assert policy.decide(False, {'secret': 7}).status == 401
    assert isinstance(policy.decide(False, {'secret': 'a shared secret!'}), Grant)
    no_secret = TokenPolicy(KEY, SECRET, 'lab', 'console', 600)
    assert no_secret.decide(False, {'secret': ''}).status == 401

    logins = TokenPolicy(KEY, SECRET, 'lab', 'console', 600, logins={'alice': 'alice password 1'})
    assert logins.decide(True, {}).status == 401  # a login list applies to everyone
    assert logins.decide(True, {'identity': 'bob', 'password': 'alice password 1'}).status == 401
    assert logins.decide(True, {'identity': 'alice', 'password': 'wrong'}).status == 401
    grant = logins.decide(False, {'identity': 'alice', 'password': 'alice password 1'})
    assert isinstance(grant, Grant) and claims(grant.token).identity == 'alice'


def test_binding_beyond_loopback_needs_a_secret_or_logins(tmp_path):
    assert 'loopback only' in check_binding('127.0.0.1', None, None)
    with pytest.raises(AccessError, match='set secret_file'):
        check_binding('0.0.0.0', None, None)
    assert 'shared secret' in check_binding('0.0.0.0', 'x' * 12, None)
    short = tmp_path / 'short'
    short.write_text('tooshort\n')
    with pytest.raises(AccessError, match='at least 12 characters'):
        read_secret(str(short))
    logins = tmp_path / 'logins.yaml'
    logins.write_text('alice: short\n')
    with pytest.raises(AccessError, match="password of 'alice'"):
        read_logins(str(logins))
    logins.write_text('alice: a long password\n')
    assert read_logins(str(logins)) == {'alice': 'a long password'}


# -- page config and server --------------------------------------------------------------------
def test_the_page_gets_the_contract_fields_tracks_and_fingerprints():
    doc = contract_json(ARM)
    assert [f['name'] for f in doc['state']] == [f.name for f in ARM.state] and doc['state'][0]['dtype'] == 'f32'
    assert doc['videos'] == [
        {'name': 'front', 'codec': 'h264', 'webrtc': True},
        {'name': 'wrist', 'codec': 'mjpeg', 'webrtc': False},
    ]
    assert doc['fingerprints']['state'] == ARM.state_fingerprint == 0xF61F1947
    json.dumps(doc)  # plain JSON


def served(tmp_path, address='127.0.0.1', bundle=True, **policy):
    root = tmp_path / 'web'
    root.mkdir(exist_ok=True)
    if bundle:
        for name, text in (('index.html', '<html>page</html>'), ('console.js', '//js'), ('console.css', '/*css*/')):
            (root / name).write_text(text)
    config = page_config(ARM, {'version': 1}, livekit_url='ws://lk', room='lab', contract_name='portal.yaml')
    return ConsoleServer(root, config, TokenPolicy(KEY, SECRET, 'lab', 'console', 60, **policy), address, 0)


async def fetch(server, path, method='GET', host=None, headers=None, **kwargs):
    headers = {**({'Host': host} if host else {}), **(headers or {})}
    async with aiohttp.ClientSession() as session:
        async with session.request(method, f'http://127.0.0.1:{server.port}{path}', headers=headers, **kwargs) as r:
            return r.status, dict(r.headers), await r.read()


def test_the_server_serves_page_config_and_tokens_with_a_strict_policy(tmp_path):
    async def run():
        server = served(tmp_path)
        port = await server.start()
        assert port > 0 and server.url == f'http://127.0.0.1:{port}/'
        try:
            status, headers, body = await fetch(server, '/')
            assert status == 200 and body == b'<html>page</html>'
            assert "connect-src 'self' ws://lk http://lk;" in headers['Content-Security-Policy']
            assert (await fetch(server, '/assets/console.js'))[0] == 200
            status, headers, _ = await fetch(server, '/assets/secret.txt')
            assert status == 404 and 'Content-Security-Policy' in headers  # errors carry the headers too
            assert (await fetch(server, '/assets/..%2Fconsole.js'))[0] == 404
            status, _, body = await fetch(server, '/config.json')
            assert status == 200 and json.loads(body)['contract']['fingerprints']['action'] == ARM.action_fingerprint
            status, headers, body = await fetch(server, '/token', 'POST', json={})
            answer = json.loads(body)
            assert status == 200 and headers['Cache-Control'] == 'no-store' and answer['livekit_url'] == 'ws://lk'
            assert claims(answer['token']).identity == 'console'
            assert (await fetch(server, '/token', 'POST', data=b'not json'))[0] == 400
            assert (await fetch(server, '/token', 'POST', data=b'x' * 10000))[0] in (400, 413)
            # DNS rebinding: a page of another site resolved to 127.0.0.1 carries its own Host
            status, headers, body = await fetch(server, '/token', 'POST', host=f'evil.example:{port}', json={})
            assert status == 403 and b'localhost names' in body and 'Content-Security-Policy' in headers
            # a page of another site posting from the user's browser
            status, _, body = await fetch(server, '/token', 'POST', json={}, headers={'Origin': 'http://evil.example'})
            assert status == 403 and b'console page itself' in body
            origin = {'Origin': f'http://127.0.0.1:{port}'}
            assert (await fetch(server, '/token', 'POST', json={}, headers=origin))[0] == 200
            assert (await fetch(server, '/', host=f'localhost:{port}'))[0] == 200
        finally:
            await server.stop()

    asyncio.run(run())


def test_only_direct_local_requests_skip_the_secret(tmp_path):
    """Bound beyond loopback: a rebound name or a reverse proxy on this host must not make a request local."""

    async def run():
        server = served(tmp_path, address='0.0.0.0', secret='a shared secret!')
        port = await server.start()
        try:
            assert (await fetch(server, '/token', 'POST', json={}))[0] == 200  # Host 127.0.0.1:port, direct
            rebound = await fetch(server, '/token', 'POST', host=f'robot.evil.example:{port}', json={})
            assert rebound[0] == 401 and b'shared secret' in rebound[2]
            for header in ('X-Forwarded-For', 'Forwarded', 'X-Real-IP'):
                proxied = await fetch(server, '/token', 'POST', json={}, headers={header: '203.0.113.9'})
                assert proxied[0] == 401, header
            with_secret = await fetch(server, '/token', 'POST', json={'secret': 'a shared secret!'},
                                      headers={'X-Forwarded-For': '203.0.113.9'})  # fmt: skip
            assert with_secret[0] == 200  # through the proxy, the secret works
        finally:
            await server.stop()

    asyncio.run(run())


def test_the_csp_allows_exactly_the_livekit_server():
    assert "connect-src 'self' wss://lk.example:7880 https://lk.example:7880;" in content_security_policy(
        'wss://lk.example:7880'
    )
    cloud = content_security_policy('wss://proj.livekit.cloud')
    assert 'wss://proj.livekit.cloud https://proj.livekit.cloud wss://*.livekit.cloud https://*.livekit.cloud' in cloud


def test_an_unbuilt_page_answers_503_saying_how_to_build_it(tmp_path):
    async def run():
        server = served(tmp_path, bundle=False)
        assert server.bundle_missing() == ['index.html', 'console.js', 'console.css']
        await server.start()
        try:
            status, _, body = await fetch(server, '/')
            assert status == 503 and b'make setup' in body
        finally:
            await server.stop()

    asyncio.run(run())


def test_an_address_that_keeps_guessing_is_told_to_wait(tmp_path):
    async def run():
        server = served(tmp_path, logins={'alice': 'alice password 1'})
        await server.start()
        try:
            wrong = {'identity': 'alice', 'password': 'a guess'}
            statuses = [(await fetch(server, '/token', 'POST', json=wrong))[0] for _ in range(6)]
            assert statuses == [401] * 5 + [429]
            right = {'identity': 'alice', 'password': 'alice password 1'}
            assert (await fetch(server, '/token', 'POST', json=right))[0] == 429  # the minute is not over
        finally:
            await server.stop()

    asyncio.run(run())
