"""Case 9: the browser console, in headless Chromium, watching one 640x480 camera and the joints.

The robot side is robot_bridge fed by the bench publisher (one camera at 30 fps, joint states at
30 Hz); the console node serves the page and Chromium opens it (the system browser through
chromedriver, as the tests do). The page measures what it shows: states per second, state ->
display latency (the robot's state timestamp to the animation frame that painted it), frames per
second painted per camera, RTT. Chromium's CPU is the sum over its processes (browser, renderer,
GPU and network services). The camera is either a WebRTC H264 track (a ``<video>``) or MJPEG
frame video (decoded by the page onto a ``<canvas>``), side by side.
"""

from __future__ import annotations

import socket
import time
from typing import Any

import psutil

from .harness import Processes
from .runner import Bench, Emit
from .stats import table


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]


def _tree_cpu(root: psutil.Process, seconds: float) -> float:
    """CPU % (of one core) of ``root``'s descendants over ``seconds`` (processes that come and go included)."""
    procs = {p.pid: p for p in root.children(recursive=True)}
    for p in procs.values():
        try:
            p.cpu_percent(None)
        except psutil.Error:
            pass
    time.sleep(seconds)
    total = 0.0
    for p in procs.values():
        try:
            total += p.cpu_percent(None)
        except psutil.Error:
            pass
    return total


def console(b: Bench, codec: str) -> dict[str, Any]:
    from support.browser import Browser

    procs = Processes(b.env)
    room = b.room()
    browser = None
    try:
        contract = b.contract(1, codec)
        procs.bridge('robot_bridge', 'robot_bridge', b.base, livekit_url=b.server.url, room=room,
                     contract_file=contract, state_joints=[f'j{i}' for i in range(6)], command_topic='/cmd',
                     **{'cameras.cam0.topic': '/cam0/image_raw'})  # fmt: skip
        procs.start('publisher', ['-m', 'bench.ros_publisher', '--cameras', '1'], b.base)
        port = _free_port()
        procs.bridge('console', 'console', b.base + 1, livekit_url=b.server.url, room=room, contract_file=contract,
                     port=port)  # fmt: skip
        if not b.wait(lambda: _answers(port), 20):
            return {'error': 'console did not start'}
        try:
            browser = Browser()
        except BaseException as exc:  # pytest's Skipped when chromium is missing
            return {'error': f'no browser: {exc}'}
        browser.open(f'http://127.0.0.1:{port}/')
        try:
            browser.until(lambda s: s['state'] and s['cameras']['cam0']['fps'] > 5, 30, what='page shows cam0')
        except AssertionError:
            return {'error': 'page showed no video'}
        time.sleep(2.0)  # settle, then measure over a fresh window
        browser.js('window.portalConsole.resetStats()')
        seconds = b.seconds(10.0)
        chromium = psutil.Process(browser.driver.service.process.pid)
        ps = {n: psutil.Process(p.pid) for n, p in procs.procs.items() if p.poll() is None}
        for p in ps.values():
            p.cpu_percent(None)
        cpu = _tree_cpu(chromium, seconds)
        others = {n: p.cpu_percent(None) for n, p in ps.items()}
        s = browser.stats()
        return {
            'fps': s['cameras']['cam0']['fps'],
            'states': s['stateRateHz'],
            'p50': s['latencyP50Ms'],
            'p95': s['latencyP95Ms'],
            'samples': s['latencySamples'],
            'rtt': s['rttMs'],
            'chromium': cpu,
            'robot_bridge': others.get('robot_bridge'),
            'console': others.get('console'),
        }
    finally:
        if browser is not None:
            browser.close()
        procs.stop()


def _answers(port: int) -> bool:
    import urllib.request

    try:
        with urllib.request.urlopen(f'http://127.0.0.1:{port}/healthz', timeout=1) as r:
            return r.status == 200
    except OSError:
        return False


def section(b: Bench, emit: Emit) -> None:
    emit('\n## 9. Browser console (headless Chromium; one 640x480 camera at 30 fps, joint states at 30 Hz)\n')
    rows = []
    for codec, shown in (('h264', 'WebRTC H264 -> `<video>`'), ('mjpeg', 'MJPEG frame video -> `<canvas>`')):
        r = console(b, codec)
        if 'error' in r:
            rows.append([shown, r['error'], '', '', '', '', '', '', ''])
            continue
        rows.append([shown, r['fps'], r['states'], r['p50'], r['p95'], r['rtt'], r['chromium'], r['robot_bridge'],
                     r['console']])  # fmt: skip
    emit(table(['camera', 'frames painted/s', 'states shown/s', 'state->display p50 ms', 'p95 ms', 'RTT ms',
                'Chromium CPU % (all processes)', 'robot_bridge CPU %', 'console node CPU %'], rows))  # fmt: skip
    emit(
        '\nstate->display: the robot stamps each state when robot_bridge reads it; the page subtracts that from '
        'the wall clock in the animation frame that paints the new value (same host, same clock). It includes '
        "robot_bridge's pacing (one state per camera frame: up to a frame period before a state is sent) and the "
        'wait for the next animation frame. Headless Chromium decodes and paints in software here; a desktop '
        'browser with a GPU spends less. With MJPEG frame video the page decodes every JPEG on its main thread '
        'and the robot encodes them: for a browser, a WebRTC track is the better choice.'
    )
