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
from support.ros_world import to_parameters
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


def barcode(grab: dict) -> int:
    rows = np.array(grab['rgb'], dtype=np.uint8).reshape(-1, grab['width'], 3)
    assert rows.shape[0] >= BARCODE_HEIGHT
    return read_barcode(rows)


def test_the_page_shows_the_robot_takes_control_drives_and_stops_it(world, robot, browser, tmp_path):
    sim, bridge = robot
    node = console(world)
    commands = world.robot_side.collect(Float64MultiArray, COMMANDS)
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
        wait_for_sync(lambda: commands[-1].data[0] > start_pan + 0.1, 10, what='shoulder_pan target rises')
        assert browser.stats()['driving']
    finally:
        ActionChains(browser.driver).key_up('q').perform()
    released = browser.until(lambda s: not s['driving'], 5, what='page stops driving on release')
    time.sleep(0.8)  # packets in flight, then the robot's watchdog (500 ms) takes over: hold re-sends the last target
    settled = len(commands)
    time.sleep(1.5)
    assert browser.stats()['actionsSent'] == released['actionsSent'], 'the page sent actions after the key was released'
    held = {tuple(c.data) for c in commands[settled - 1 :]}
    assert len(held) == 1, f'the robot moved after the key was released: {sorted(held)[:4]}'
    assert not bridge.safety.estopped

    # E-stop: latched on the robot, control cleared, one safe command and nothing after it
    browser.driver.find_element('id', 'estop').click()
    wait_for_sync(lambda: bridge.safety.estopped, 5, what='robot e-stop latched by the page')
    browser.until(lambda s: 'emergency stop latched' in s['message'], 5, what='page reports the e-stop')
    wait_for_sync(lambda: bridge.robot.active_operator() in (None, ''), 5, what='control cleared')
    ActionChains(browser.driver).key_down('q').perform()  # driving now sends nothing: not in control
    time.sleep(1.0)
    ActionChains(browser.driver).key_up('q').perform()
    assert bridge.safety.estopped

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
