"""The browser console in a real Chromium against a real robot: sim_robot + robot_bridge on a real server.

The page is the TypeScript bundle `make setup` builds, served by the console node; it joins the
room as a Portal operator on its own (no Python between it and the robot). The tests read what the
page shows (`window.portalConsole.stats()`, a grab of each camera's picture) and what the robot
does (its command topic, its gate, its e-stop).
"""

from __future__ import annotations

import os
from pathlib import Path
import time

import numpy as np
import pytest
from std_msgs.msg import Float64MultiArray
from support.browser import Browser
from support.ros_world import RELIABLE, to_parameters
from support.waiting import wait_for_sync

from portal_bridge.nodes.console import ConsoleNode, default_web_root
from portal_bridge.nodes.sim_robot import BARCODE_HEIGHT, SimRobot, read_barcode

pytestmark = [pytest.mark.livekit, pytest.mark.ros]

CONFIG = Path(__file__).resolve().parents[1] / 'config'
JOINTS = ['shoulder_pan', 'shoulder_lift', 'elbow_flex', 'wrist_flex', 'wrist_roll', 'gripper']
COMMANDS = '/forward_position_controller/commands'
ROBOT = {
    'cameras.front.topic': '/front/image_raw',
    'cameras.wrist.topic': '/wrist/image_raw',
    'state_joints': JOINTS,
    'command_type': 'float64_multi_array',
    'command_topic': COMMANDS,
    'command_joints': JOINTS,
    'command_interface': 'position',
    'action_timeout_ms': 500,
    'on_timeout': 'hold',
}


@pytest.fixture
def robot(world):
    """The demo's robot: sim_robot (15 fps cameras, to leave the browser CPU) and robot_bridge."""
    sim = world.robot_side.add(
        SimRobot(
            context=world.robot_side.context,
            cli_args=['--ros-args', '--params-file', str(CONFIG / 'sim_robot.yaml'), '-p', 'camera_fps:=15.0'],
        )
    )
    bridge = world.robot_bridge(str(CONFIG / 'portal.yaml'), **ROBOT)
    return sim, bridge


def console(world, contract: Path = CONFIG / 'portal.yaml', **params) -> ConsoleNode:
    values = {
        'livekit_url': world.server.url,
        'room': world.room,
        'credentials_file': str(world.credentials),
        'contract_file': str(contract),
        'keymap_file': str(CONFIG / 'console_keymap.yaml'),
        'port': 0,
        **params,
    }
    node = ConsoleNode(context=world.operator_side.context, parameter_overrides=to_parameters(values))
    world.operator_side.add(node)
    return node


@pytest.fixture
def browser():
    if not (default_web_root() / 'console.js').is_file():
        pytest.fail(f'the console page is not built in {default_web_root()}: run `make setup`')
    b = Browser()
    yield b
    b.close()


def held_for(commands: list, seconds: float) -> bool:
    """The last ``seconds`` of commands all carry the latest values (and span that long)."""
    if not commands:
        return False
    now, value = time.monotonic(), commands[-1][1]
    changed = max((t for t, v in commands if v != value), default=commands[0][0])
    return now - changed >= seconds and any(t > changed for t, _ in commands)


def barcode(grab: dict) -> int:
    rows = np.array(grab['rgb'], dtype=np.uint8).reshape(-1, grab['width'], 3)
    assert rows.shape[0] >= BARCODE_HEIGHT
    return read_barcode(rows)


def test_the_page_shows_the_robot_takes_control_drives_and_stops_it(world, robot, browser, tmp_path):
    sim, bridge = robot
    node = console(world)
    commands: list = []  # (arrival, values) of the robot's commands
    world.robot_side.node('controller').create_subscription(
        Float64MultiArray, COMMANDS, lambda m: commands.append((time.monotonic(), tuple(m.data))), RELIABLE
    )
    browser.open(node.server.url)

    # cameras: the WebRTC track plays in a <video>, the MJPEG frame video is drawn on a canvas; both
    # show frames the sim robot drew (its frame number is in the barcode)
    stats = browser.until(lambda s: s['connected'] and s['robot'] == 'robot' and s['state'], what='page joined')
    assert stats['identity'] == 'console' and not stats['problem']
    browser.until(
        lambda s: s['cameras']['front']['width'] == 640 and s['cameras']['wrist']['width'] == 320,
        what='both cameras shown',
    )
    for camera in ('front', 'wrist'):
        number = barcode(browser.js('window.portalConsole.grab(arguments[0])', camera))
        assert 1 <= number <= sim.frame_number, (camera, number, sim.frame_number)
    numbers = []
    browser.until(
        lambda s: numbers.append(barcode(browser.js("window.portalConsole.grab('front')"))) or numbers[-1] > number + 5,
        what='the front camera keeps playing',
    )
    assert numbers == sorted(numbers) and numbers[-1] <= sim.frame_number

    # joints: the page shows the robot's state (f32 on the wire) and it updates
    first = browser.stats()['state']
    browser.until(
        lambda s: s['state']['timestampUs'] > first['timestampUs'] and s['stateRateHz'] >= 10, what='states flow'
    )
    shown = browser.stats()['state']['values']
    assert np.allclose(shown, sim.positions, atol=0.05), (shown, sim.positions)
    assert browser.stats()['latencyP50Ms'] is not None

    # Take control: the robot's gate points at the page
    browser.driver.find_element('id', 'take').click()
    wait_for_sync(lambda: bridge.robot.active_operator() == 'console', 10, what='robot gate -> console')
    browser.until(lambda s: s['activeOperator'] == 'console', what='page sees itself in control')

    # holding Q drives shoulder_pan up (rate 0.6/s) through the robot's command topic; releasing stops
    from selenium.webdriver.common.action_chains import ActionChains

    start_pan = sim.positions[0]
    before = len(commands)
    ActionChains(browser.driver).key_down('q').perform()
    try:
        wait_for_sync(lambda: len(commands) >= before + 10, 10, what='commands while Q is held')
        wait_for_sync(lambda: commands[-1][1][0] > start_pan + 0.1, 10, what='shoulder_pan target rises')
        assert browser.stats()['driving']
    finally:
        ActionChains(browser.driver).key_up('q').perform()
    released = browser.until(lambda s: not s['driving'], 5, what='page stops driving on release')
    # every action the page sent reaches the robot (reliable data), then nothing more comes
    wait_for_sync(
        lambda: bridge.robot.metrics().transport.actions_received >= released['actionsSent'], 10, what='in flight'
    )
    # then the watchdog (500 ms) holds the last target: the robot's commands settle on the page's last action
    last = [float(np.float32(v)) for v in released['lastAction']]
    wait_for_sync(lambda: held_for(commands, 1.0), 15, what='commands settle after the release')
    assert browser.stats()['actionsSent'] == released['actionsSent'], 'the page sent actions after the key was released'
    assert bridge.robot.metrics().transport.actions_received == released['actionsSent']
    assert np.allclose(commands[-1][1], last, atol=1e-6), (commands[-1][1], last, bridge.counts(), browser.stats())
    assert not bridge.safety.estopped

    # a gamepad: left stick right turns shoulder_pan at -0.8/s, only while the enable button (4) is held
    browser.driver.execute_script(
        'window.testPad = {connected: true, axes: [1, 0, 0, 0], '
        'buttons: Array.from({length: 17}, () => ({pressed: false, value: 0}))}; '
        "Object.defineProperty(navigator, 'getGamepads', {value: () => [window.testPad], configurable: true})"
    )
    idle = browser.stats()['actionsSent']
    time.sleep(0.5)
    assert browser.stats()['actionsSent'] == idle, 'the stick alone (enable button not held) must not drive'
    pan = commands[-1][1][0]
    browser.js('window.testPad.buttons[4] = {pressed: true, value: 1}')
    try:
        wait_for_sync(lambda: commands[-1][1][0] < pan - 0.1, 10, what='shoulder_pan target falls with the stick')
    except AssertionError:
        raise AssertionError(f'{browser.stats()} {commands[-1]} {pan} {bridge.robot.active_operator()}') from None
    finally:
        browser.js('window.testPad.buttons[4] = {pressed: false, value: 0}')
    browser.until(lambda s: not s['driving'], 5, what='page stops driving when the enable button is released')

    # losing focus releases a held key: the page stops at once, the key still down
    ActionChains(browser.driver).key_down('q').perform()
    try:
        browser.until(lambda s: s['driving'], 5, what='driving with Q')
        browser.driver.execute_script("window.dispatchEvent(new Event('blur'))")
        stopped = browser.until(lambda s: not s['driving'], 2, what='blur releases the key')
        time.sleep(0.5)
        assert browser.stats()['actionsSent'] == stopped['actionsSent'], 'actions after the page lost focus'
    finally:
        ActionChains(browser.driver).key_up('q').perform()
        browser.driver.execute_script("window.dispatchEvent(new Event('focus'))")

    # E-stop: latched on the robot, control cleared, one safe command and nothing after it; the
    # page itself stops sending before any answer and stays stopped until Take control
    wait_for_sync(lambda: held_for(commands, 0.5), 10, what='commands settle before the e-stop')
    n0 = len(commands)
    browser.driver.find_element('id', 'estop').click()
    wait_for_sync(lambda: bridge.safety.estopped, 5, what='robot e-stop latched by the page')
    stopped = browser.until(
        lambda s: 'emergency stop latched' in s['message'] and s['inhibited'], 5, what='page reports'
    )
    wait_for_sync(lambda: bridge.robot.active_operator() in (None, ''), 5, what='control cleared')
    ActionChains(browser.driver).key_down('q').perform()
    time.sleep(1.0)
    ActionChains(browser.driver).key_up('q').perform()
    assert browser.stats()['actionsSent'] == stopped['actionsSent'], 'the page sent actions after its e-stop'
    assert bridge.safety.estopped
    after = [v for _, v in commands[n0:]]
    measured = tuple(float(v) for v in sim.positions)
    assert after and len(set(after)) == 1, f'one safe command, then nothing new: {sorted(set(after))[:4]}'
    assert np.allclose(after[-1], measured, atol=0.05), (after[-1], measured)  # stopped where the arm is

    shot = Path(__file__).resolve().parents[2] / 'docs' / 'console.png'
    if shot.parent.is_dir() and os.environ.get('PORTAL_BRIDGE_SCREENSHOT') == '1':
        browser.screenshot(str(shot))


def test_a_page_with_another_contract_says_so_instead_of_showing_numbers(world, robot, browser, tmp_path):
    other = tmp_path / 'other.yaml'
    other.write_text(
        (CONFIG / 'portal.yaml').read_text().replace('name: gripper, dtype: f32', 'name: gripper, dtype: f64', 1)
    )
    node = console(world, contract=other, keymap_file='')
    browser.open(node.server.url)
    stats = browser.until(lambda s: s['problem'], what='the page reports the mismatch')
    assert 'fingerprint' in stats['problem'] and 'different wire contracts' in stats['problem']
    assert stats['state'] is None and stats['counts'].get('schema-mismatch', 0) > 0
    assert browser.driver.find_element('css selector', '#joints td.v').text == '–'


def test_a_token_from_another_machine_needs_the_secret(world, tmp_path):
    import json
    import socket
    import urllib.error
    import urllib.request

    probe = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    probe.connect(('192.0.2.254', 9))  # no packet is sent: this picks the address of the default route
    address = probe.getsockname()[0]
    probe.close()
    assert not address.startswith('127.'), 'this test needs an address besides loopback'
    secret = tmp_path / 'secret'
    secret.write_text('correct horse battery staple\n')
    secret.chmod(0o600)
    node = console(world, address='0.0.0.0', secret_file=str(secret))

    def token(host: str, body: dict) -> tuple[int, dict]:
        request = urllib.request.Request(
            f'http://{host}:{node.server.port}/token', json.dumps(body).encode(), {'Content-Type': 'application/json'}
        )
        try:
            with urllib.request.urlopen(request, timeout=5) as response:
                return response.status, json.loads(response.read())
        except urllib.error.HTTPError as exc:
            return exc.code, json.loads(exc.read())

    status, answer = token(address, {})
    assert status == 401 and 'shared secret' in answer['error'] and 'token' not in answer
    status, answer = token(address, {'secret': 'wrong'})
    assert status == 401 and 'token' not in answer
    status, answer = token(address, {'secret': 'correct horse battery staple'})
    assert status == 200 and answer['identity'] == 'console' and answer['token'].startswith('eyJ')
    status, answer = token('127.0.0.1', {})
    assert status == 200, answer
    assert node.counts['token-refused'] == 2 and node.counts['token'] == 2


def test_the_page_encodes_the_portal_reference_vectors_byte_for_byte(world, browser):
    """The TypeScript codec against the reference's example bytes (schema j1:f32, gripper:bool, mode:i8)."""
    node = console(world, keymap_file='')
    browser.open(node.server.url)
    browser.until(lambda s: s.get('identity'), what='page loaded')
    fields = [{'name': 'j1', 'dtype': 'f32'}, {'name': 'gripper', 'dtype': 'bool'}, {'name': 'mode', 'dtype': 'i8'}]
    w = 'window.portalWire'
    state_fp = browser.js(f'{w}.stateFingerprint(arguments[0])', fields)
    action_fp = browser.js(f'{w}.actionFingerprint(arguments[0])', fields)
    assert (state_fp, action_fp) == (0xD257D812, 0x73976813)
    state = browser.js(f'Array.from({w}.encodeState([0.5, 1, -3], arguments[0], {state_fp}, 1700000000000000))', fields)
    assert bytes(state).hex() == '12d857d200401e18240a06000000003f01fd'
    action = browser.js(
        f'Array.from({w}.encodeAction([0.5, 1, -3], arguments[0], {action_fp}, 1700000000000123, 1700000000000000))',
        fields,
    )
    assert bytes(action).hex() == '136897737b401e18240a060000401e18240a06000000003f01fd'
    decoded = browser.js(f'{w}.decodeState(new Uint8Array(arguments[1]), arguments[0], {state_fp})', fields, state)
    assert decoded == {'ok': True, 'value': {'timestampUs': 1700000000000000, 'values': [0.5, 1, -3]}}
    foreign = browser.js(f'{w}.decodeState(new Uint8Array(arguments[1]), arguments[0], 1)', fields, state)
    assert foreign == {'ok': False, 'reason': 'schema-mismatch', 'fingerprint': state_fp}
    # saturating integer casts and truncation toward zero, as the reference encodes them
    ints = [{'name': 'a', 'dtype': 'i8'}, {'name': 'b', 'dtype': 'u8'}, {'name': 'c', 'dtype': 'i16'}]
    raw = browser.js(f'Array.from({w}.encodeState([-3.7, -1, 1e9], arguments[0], 0, 0))', ints)
    assert bytes(raw[12:]) == bytes([0xFD, 0x00, 0xFF, 0x7F])
    # the contract the console serves gives the fingerprints the Python core computes
    c = node.server.config['contract']
    assert browser.js(f'{w}.stateFingerprint(arguments[0])', c['state']) == c['fingerprints']['state']
    assert browser.js(f'{w}.actionFingerprint(arguments[0])', c['action']) == c['fingerprints']['action']


def test_the_page_and_the_python_core_encode_every_dtype_edge_alike(world, browser):
    """Saturation, truncation toward zero, NaN and bool rules: the page's bytes are the core's bytes."""
    from portal_bridge.portal.codecs import VideoCodec
    from portal_bridge.portal.wire import packets
    from portal_bridge.portal.wire.dtypes import DType
    from portal_bridge.portal.wire.frame_video import frame_header
    from portal_bridge.portal.wire.schema import FieldSpec

    node = console(world, keymap_file='')
    browser.open(node.server.url)
    browser.until(lambda s: s.get('identity'), what='page loaded')
    edges = [0.0, -0.0, 0.5, -1.0, -3.7, 3.9, 127.5, -128.9, 255.9, 65535.5, -(2.0**31) - 5, 2.0**32 + 5, 1e40, -1e40]
    specials = ['NaN', 'Infinity', '-Infinity']
    for dtype in DType:
        fields = [FieldSpec(f'v{i}', dtype) for i in range(len(edges) + len(specials))]
        codec = packets.StateCodec(fields)
        values = edges + [float(v.lower().replace('infinity', 'inf')) for v in specials]
        expected, _ = codec.encode({f.name: v for f, v in zip(fields, values)}, 1_700_000_000_000_000)
        js_fields = [{'name': f.name, 'dtype': str(dtype)} for f in fields]
        js_values = ', '.join([repr(v) for v in edges] + specials)
        got = browser.js(
            f'Array.from(window.portalWire.encodeState([{js_values}], arguments[0], '
            f'window.portalWire.stateFingerprint(arguments[0]), 1700000000000000))',
            js_fields,
        )
        assert bytes(got) == expected, dtype
    # RTT and the frame-video header, both ways
    assert bytes(browser.js('Array.from(window.portalWire.rttPacket(1, 1700000000000123))')) == packets.encode_rtt(
        1, 1_700_000_000_000_123
    )
    ping = list(packets.encode_rtt(0, 42))
    assert browser.js('window.portalWire.parseRtt(new Uint8Array(arguments[0]))', ping) == {
        'kind': 0,
        'timestampUs': 42,
    }
    assert browser.js('window.portalWire.parseRtt(new Uint8Array(arguments[0]))', ping[:8]) is None
    header = list(frame_header('wrist', VideoCodec.MJPEG, 320, 240, 1_700_000_000_000_000)) + [1, 2, 3]
    parsed = browser.driver.execute_script(
        'const f = window.portalWire.parseFrame(new Uint8Array(arguments[0]));'
        ' return f && [f.codec, f.width, f.height, f.timestampUs, f.name, Array.from(f.payload)];',
        header,
    )
    assert parsed == ['mjpeg', 320, 240, 1_700_000_000_000_000, 'wrist', [1, 2, 3]]
    for bad in (header[:15], [2] + header[1:], header[:1] + [9] + header[2:]):  # short, version 2, codec 9
        assert (
            browser.driver.execute_script('return window.portalWire.parseFrame(new Uint8Array(arguments[0]));', bad)
            is None
        )
