"""Suite-wide test configuration.

Under ``make test`` (PORTAL_BRIDGE_FORBID_SKIPS=1) a skipped test is reported as a failure: every
test in this suite must run in CI, so a skip would hide a missing capability.
"""

import os
from pathlib import Path
import sys

import pytest

sys.path.insert(0, str(Path(__file__).parent))


def pytest_runtest_setup(item):
    """Outside `make test` (e.g. `colcon test` on a distro) tests that need a server say so and skip."""
    if item.get_closest_marker('livekit') is None:
        return
    from support.livekit_server import server_binary

    if server_binary() is None:
        pytest.skip('needs a livekit-server: set PORTAL_BRIDGE_LIVEKIT_SERVER, put one on PATH, or `make setup`')


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    if os.environ.get('PORTAL_BRIDGE_FORBID_SKIPS') == '1' and report.skipped and not hasattr(report, 'wasxfail'):
        report.outcome = 'failed'
        reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else report.longrepr
        report.longrepr = f'test was skipped, which this suite does not allow: {reason}'


@pytest.fixture(scope='session')
def livekit_server():
    """One real livekit-server (dev mode, loopback, free ports) for the whole run."""
    from support.livekit_server import start_server

    server = start_server()
    yield server
    server.stop()


@pytest.fixture
def room_name(request):
    """A fresh room per test, so tests never see each other's participants."""
    import uuid

    return f'{request.node.name[:40]}-{uuid.uuid4().hex[:8]}'


@pytest.fixture
def world(livekit_server, room_name, tmp_path):
    """Robot side and operator side on two ROS domains, joined only by a LiveKit room."""
    from support.ros_world import BridgeWorld

    w = BridgeWorld(livekit_server, room_name, tmp_path)
    yield w
    w.close()


_PROFILE = os.environ.get('PORTAL_BRIDGE_TEST_PROFILE')
_last_module = [None]


def _native_threads() -> int:
    with open('/proc/self/status') as f:
        return next(int(line.split()[1]) for line in f if line.startswith('Threads:'))


def pytest_runtest_logfinish(nodeid, location):
    """With PORTAL_BRIDGE_TEST_PROFILE=<file>: after each file's first test, what the process burns idle.

    A test that leaks a busy thread or a live session slows every later test; one line per file
    (idle CPU over a second, native threads, open descriptors) names the file where they grew.
    """
    if not _PROFILE or location[0] == _last_module[0]:
        return
    import time

    _last_module[0] = location[0]
    t0, c0 = time.monotonic(), time.process_time()
    time.sleep(1.0)
    idle_cpu = (time.process_time() - c0) / (time.monotonic() - t0)
    fds = len(os.listdir('/proc/self/fd'))
    with open(_PROFILE, 'a') as f:
        f.write(f'{nodeid}\tidle_cpu={idle_cpu:.3f}\tthreads={_native_threads()}\tfds={fds}\n')
