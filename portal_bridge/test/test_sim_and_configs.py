"""The simulated robot, the shipped parameter files and `make demo`, as CI can run them.

`ros2 launch` is not available in CI; the launch files start these same executables with these
same parameter files, so the files are exercised here directly.
"""

import importlib.util
import os
from pathlib import Path
import py_compile
import re
import subprocess
import threading
import time

import numpy as np
import pytest
from sensor_msgs.msg import Image, JointState
from std_msgs.msg import Float64MultiArray
from support.ros_world import RosDomain, base_domain
from support.waiting import wait_for_sync
import yaml

from portal_bridge.nodes.operator_bridge import OperatorBridge
from portal_bridge.nodes.robot_bridge import RobotBridge
from portal_bridge.nodes.sim_robot import BARCODE_HEIGHT, SimRobot, draw_frame, read_barcode

PACKAGE = Path(__file__).resolve().parents[1]
CONFIG = PACKAGE / 'config'
ROOT = PACKAGE.parent


@pytest.mark.parametrize('number', [0, 1, 255, 65536, 2**32 - 1])
def test_barcode_round_trip(number):
    assert read_barcode(draw_frame(640, 480, number)) == number
    assert read_barcode(draw_frame(160, 120, number)) == number


def test_frames_move():
    assert not np.array_equal(draw_frame(64, 48, 1)[20:], draw_frame(64, 48, 2)[20:])


@pytest.mark.parametrize(('width', 'height', 'number', 'hue'), [(64, 48, 7, 0), (333, 17, 1000, 80), (5, 300, 64, 300)])
def test_frame_bands_are_the_palette_along_the_diagonal(width, height, number, hue):
    """The strided fast path draws exactly the bands its definition says (below the barcode and digits)."""
    y, x = np.mgrid[0:height, 0:width]
    k = (x + y + 4 * number) % 256
    expected = np.stack([(k + hue) % 256, (255 - k) // 2 + 64, (2 * k + hue) % 256], axis=-1).astype(np.uint8)
    img = draw_frame(width, height, number, hue)
    assert img.shape == (height, width, 3) and img.flags.c_contiguous
    below = BARCODE_HEIGHT + 8 + 5 * max(height // 60, 2)  # under the barcode band and the number's digits
    assert np.array_equal(img[below:], expected[below:])


@pytest.fixture
def domain():
    d = RosDomain(base_domain())
    yield d
    d.close()


@pytest.mark.ros
def test_sim_robot_publishes_and_follows_commands(domain):
    sim = domain.add(
        SimRobot(context=domain.context, cli_args=['--ros-args', '--params-file', str(CONFIG / 'sim_robot.yaml')])
    )
    images = domain.collect(Image, '/front/image_raw')
    wrist = domain.collect(Image, '/wrist/image_raw')
    joints = domain.collect(JointState, '/joint_states')
    wait_for_sync(lambda: len(images) >= 3 and wrist and len(joints) >= 10)
    first = images[-1]
    assert (first.width, first.height, first.encoding) == (640, 480, 'rgb8')
    assert (wrist[-1].width, wrist[-1].height) == (320, 240)
    number = read_barcode(np.frombuffer(first.data, np.uint8).reshape(480, 640, 3))
    assert 1 <= number <= sim.frame_number
    cmd = domain.node('controller').create_publisher(Float64MultiArray, '/forward_position_controller/commands', 10)
    wait_for_sync(lambda: cmd.get_subscription_count())
    target = [0.3, -0.2, 0.1, 0.0, 0.5, 1.0]
    cmd.publish(Float64MultiArray(data=target))
    wait_for_sync(lambda: np.allclose(joints[-1].position, target, atol=1e-3), timeout=5, what='joints reach target')


def node_with(cls, params_file, domain, tmp_path, **extra):
    args = ['--ros-args', '--params-file', str(params_file)]
    for k, v in extra.items():
        args += ['-p', f'{k}:={v}']
    return cls(context=domain.context, cli_args=args)


@pytest.mark.ros
@pytest.mark.parametrize(
    ('cls', 'params', 'contract'),
    [
        (RobotBridge, 'robot_arm.yaml', 'portal.yaml'),
        (RobotBridge, 'mobile_base.yaml', 'mobile_base_portal.yaml'),
        (OperatorBridge, 'operator.yaml', 'portal.yaml'),
        ('Recorder', 'operator.yaml', 'portal.yaml'),  # imported in the test: it needs pyarrow and av
    ],
)
def test_shipped_parameter_files_configure_the_nodes(domain, tmp_path, monkeypatch, cls, params, contract):
    if cls == 'Recorder':
        pytest.importorskip('pyarrow', reason='the recorder needs pyarrow (requirements/*.txt)')
        pytest.importorskip('av', reason='the recorder needs PyAV (requirements/*.txt)')
        from portal_bridge.nodes.recorder import Recorder as cls
    monkeypatch.setenv('LIVEKIT_API_KEY', 'devkey')
    monkeypatch.setenv('LIVEKIT_API_SECRET', 'secret')
    # an unreachable server: the node must come up, retry and never crash
    node = node_with(
        cls, CONFIG / params, domain, tmp_path, contract_file=CONFIG / contract, livekit_url='ws://127.0.0.1:9'
    )
    domain.add(node)
    try:
        # the file's section for this node (a file may configure several, as operator.yaml does)
        sections = re.split(r'^/\*\*/([a-z_]+):$', (CONFIG / params).read_text(), flags=re.M)
        text = dict(zip(sections[1::2], sections[2::2]))[node.get_name()]
        for key, value in re.findall(r'^    ([a-z_.]+): ([^\s#\[]+)', text, re.M):
            if value.lower() in ('true', 'false') or key in ('livekit_url',):
                continue
            actual = node.get_parameter(key).value
            assert str(actual) == value.strip("'") or float(actual) == float(value), (key, actual, value)
        assert node.wait_connected(0.5) is False  # still retrying, still alive
    finally:
        node.shutdown()


def test_launch_files_compile():
    for path in (PACKAGE / 'launch').glob('*.launch.py'):
        py_compile.compile(str(path), doraise=True)


@pytest.mark.livekit
@pytest.mark.ros
def test_make_demo_shows_observations_flowing_and_the_console_shows_the_robot(tmp_path):
    """The demo runs its loop: observations with camera frames, the teleop in control, the arm moving.

    It prints the browser console's URL, and a real Chromium opening it sees both simulated cameras
    (their frame numbers) and the joints within seconds. How many observations per second a host
    sustains is the benchmarks' job (docs/benchmarks.md): the demo keeps both cores of a 2-core
    machine busy, and on a slower one it rightly drops states whose frames came late, so this
    checks the loop, not the rate. With PORTAL_BRIDGE_SCREENSHOT=1 the page is saved as
    docs/console.png (the README's picture).
    """
    from support.browser import Browser

    env = dict(
        os.environ,
        DEMO_DURATION='24',
        DEMO_ROBOT_DOMAIN=str(base_domain() + 4),
        DEMO_CONSOLE_PORT='0',
        DEMO_LOGS=str(tmp_path / 'demo-logs'),
    )
    demo = subprocess.Popen(
        [str(ROOT / 'scripts' / 'demo.sh')], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    out: list[str] = []
    reader = threading.Thread(target=lambda: out.extend(demo.stdout), daemon=True)
    reader.start()
    try:
        url = wait_for_sync(lambda: next((m.group(1) for ln in list(out) if (m := URL.search(ln))), None), 30,
                            what='the console URL')  # fmt: skip
        browser = Browser()
        try:
            browser.open(url)
            seen = browser.until(
                lambda s: s['state'] and all(s['cameras'][c]['fps'] > 0 for c in ('front', 'wrist')),
                15,
                what='the console shows both cameras and the joints',
            )
            assert seen['robot'] == 'robot' and not seen['problem'] and len(seen['state']['values']) == 6
            for camera, width in (('front', 640), ('wrist', 320)):
                grab = browser.js('window.portalConsole.grab(arguments[0])', camera)
                assert grab['width'] == width
                rows = np.array(grab['rgb'], dtype=np.uint8).reshape(-1, width, 3)
                assert read_barcode(rows) >= 1, camera  # a frame the sim robot drew
            if os.environ.get('PORTAL_BRIDGE_SCREENSHOT') == '1':
                # the demo state: the demo policy in control, the arm moving, the numbers settled
                browser.until(lambda s: s['activeOperator'] == 'demo-teleop' and s['cameras']['front']['fps'] >= 20, 15)
                time.sleep(3)
                browser.js('window.portalConsole.resetStats()')
                time.sleep(2)
                browser.screenshot(str(ROOT / 'docs' / 'console.png'))
        finally:
            browser.close()
        assert demo.wait(90) == 0
    finally:
        if demo.poll() is None:
            demo.kill()
    reader.join(5)
    lines = [ln for ln in out if ln.startswith('[demo] observations/s')]
    text = ''.join(out)
    flowing = [ln for ln in lines if 'camera frame #' in ln and 'active operator: demo-teleop' in ln]
    assert len(flowing) >= 3, text  # seconds of observations under the teleop's control
    rates = [int(re.search(r'observations/s\s+(\d+)', ln).group(1)) for ln in flowing]
    frames = [int(re.search(r'camera frame #(\d+)', ln).group(1)) for ln in flowing]
    pans = [float(re.search(r'shoulder_pan=([-+0-9.]+)', ln).group(1)) for ln in flowing]
    assert sum(rates) >= 10 and frames == sorted(frames) and frames[-1] > frames[0], text  # frames keep coming
    assert len(set(pans)) >= 2, text  # the teleop's actions move the arm, and its state comes back
    assert 'Traceback' not in text
    logs = sorted((tmp_path / 'demo-logs').glob('*.log'))
    assert {p.name for p in logs} >= {'robot_bridge.log', 'operator_bridge.log', 'sim_robot.log', 'console.log'}
    for log in logs:
        assert 'Traceback' not in log.read_text(errors='replace'), log.name


URL = re.compile(r'browser console: (http://\S+)')


@pytest.mark.livekit
@pytest.mark.ros
@pytest.mark.slow
@pytest.mark.timeout(900)  # eleven cases, each starting its processes: ~6 min on 2 idle cores, more when busy
def test_benchmark_harness_smoke():
    """`make bench` in its short form: every case runs and prints its table (no timing assertions)."""
    env = dict(os.environ, BENCH_QUICK='1', ROS_DOMAIN_ID=str(base_domain() + 6))
    run = subprocess.run([str(ROOT / 'scripts' / 'bench.sh')], env=env, capture_output=True, text=True, timeout=840)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    for heading in ('## 1-3. Observation latency', '## 4. Action path', '## 5. Sustained load', '## 6. Scale',
                    '## 7. Safety clock under image load', '## 8. Recorder', '## 9. Browser console',
                    '## 10. Side by side with livekit-portal', '## 11. The data channel alone'):  # fmt: skip
        assert heading in run.stdout
    if importlib.util.find_spec('livekit.portal') is not None:  # not on Python 3.10 (cp312 wheels only)
        for pair in ('livekit-portal -> livekit-portal', 'livekit-portal -> portal_bridge core',
                     'portal_bridge core -> livekit-portal', 'portal_bridge core -> portal_bridge core'):  # fmt: skip
            assert f'| {pair} | ' in run.stdout
    else:
        assert 'Not run: livekit-portal is not installed' in run.stdout
    assert '| 640x480 q90 (50 KB) | 1 | ' in run.stdout
    assert 'error:' not in run.stdout and '| 640x480 | 1 | h264 |' in run.stdout
    assert '| idle | 0 |' in run.stdout and '| load | 3 x PNG 640x480 |' in run.stdout
    assert '| 3 x 640x480 | h264 | 30 fps for 4 s | 120 |' in run.stdout  # every frame fed was saved
    assert '| WebRTC H264 -> `<video>` | ' in run.stdout and 'no browser' not in run.stdout


RVIZ_TYPES = {
    'rviz_default_plugins/Image': 'sensor_msgs/msg/Image',
    'rviz_default_plugins/JointState': 'sensor_msgs/msg/JointState',
}
# Topics the rviz config shows that other nodes publish on the operator host (see the file's comments).
RVIZ_EXTERNAL = {'/robot_description': 'robot_state_publisher, from the robot URDF'}


@pytest.mark.ros
def test_the_rviz_config_shows_topics_operator_bridge_publishes(domain, tmp_path, monkeypatch):
    monkeypatch.setenv('LIVEKIT_API_KEY', 'devkey')
    monkeypatch.setenv('LIVEKIT_API_SECRET', 'secret')
    config = yaml.safe_load((CONFIG / 'operator.rviz').read_text())
    shown = {}
    for display in config['Visualization Manager']['Displays']:
        for key in ('Topic', 'Description Topic'):
            if key in display:
                shown[display[key]['Value']] = display['Class']
    node = domain.add(
        node_with(
            OperatorBridge,
            CONFIG / 'operator.yaml',
            domain,
            tmp_path,
            contract_file=CONFIG / 'portal.yaml',
            livekit_url='ws://127.0.0.1:9',
        )  # fmt: skip
    )
    try:
        published = dict(node.get_publisher_names_and_types_by_node('operator_bridge', '/'))
        assert shown, 'the rviz config shows nothing'
        for topic, cls in shown.items():
            if topic in RVIZ_EXTERNAL:
                continue
            assert topic in published, (
                f'rviz shows {topic}, which operator_bridge does not publish ({sorted(published)})'
            )
            assert RVIZ_TYPES[cls] in published[topic], (topic, cls, published[topic])
    finally:
        node.shutdown()
