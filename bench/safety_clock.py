"""Benchmark case 7, "safety clock under image load": the robot's safety timer against PNG cameras.

The question: does robot_bridge's safety timer keep its period while its camera workers convert
and PNG-encode camera frames? robot_bridge runs its command output's clock in a thread of its own
(``command_output.py``): it wakes every 20 ms (or at the state machine's next deadline) and
records how late each timed wake-up was; the node reports the p50/p99 of the last 256 of them as
``tick_lateness_us_p50/p99`` in its ``robot_bridge: safety`` diagnostics status. This case runs,
against the bench's livekit-server:

- robot_bridge with a contract of N PNG frame-video cameras (640x480, 30 fps) plus joint states;
- a camera publisher (``bench.ros_publisher --pattern camera``: gradients, moving blocks and
  Gaussian sensor noise, so PNG costs what it costs on real cameras) and 30 Hz joint states;
- operator_bridge with ``auto_claim`` and 30 Hz actions on its ``~/action``, so the robot's
  command output is DRIVING during the whole window;

and reads, over the window, every 1 Hz update of the robot's safety, transport and conversion
statuses plus the CPU of each process. :func:`safety_clock` runs it with 3 cameras and with 0
(the idle baseline); :func:`safety_clock_table` formats both rows.
"""

from __future__ import annotations

import os
import statistics
import threading
import time
from typing import Any, Optional

import psutil
from sensor_msgs.msg import JointState

from .harness import JOINTS, Processes
from .stats import fmt, table

SAFETY = 'robot_bridge: safety'
TRANSPORT = 'robot_bridge: transport'
CONVERSION = 'robot_bridge: conversion'
WIDTH, HEIGHT, FPS = 640, 480, 30.0
ACTION_HZ = 30.0
RING_FILL_S = 9.0  # 256 timed wake-ups at ~30/s while actions arrive at 30 Hz: the ring holds only load


def _number(values: dict[str, str], key: str) -> Optional[float]:
    try:
        return float(values[key])
    except (KeyError, ValueError):  # absent, or 'None' before the first sample
        return None


def _counter(key: str) -> bool:
    return not key.endswith(('.fps', '_us'))  # rates and gauges, not counters


def _rate(history: list[tuple[float, dict[str, str]]], key: str) -> Optional[float]:
    """Per-second rate of a counter between the first and the last update of the window."""
    if len(history) < 2:
        return None
    (t0, v0), (t1, v1) = history[0], history[-1]
    a, b = _number(v0, key), _number(v1, key)
    if b is None:
        return None
    return (b - (a or 0.0)) / max(t1 - t0, 1e-6)


def _cpu(procs: Processes, extra: dict[str, int], seconds: float) -> tuple[dict[str, float], float]:
    """CPU % (of one core) of the case's processes and ``extra`` pids over ``seconds``, and of the host.

    The host figure is in % of one core too (200 = both cores of a two-core machine busy), so
    what else ran on the machine is the host figure minus the processes'.
    """
    ps = {n: psutil.Process(p.pid) for n, p in procs.procs.items() if p.poll() is None}
    ps.update({n: psutil.Process(pid) for n, pid in extra.items()})
    for proc in ps.values():
        proc.cpu_percent(None)
    psutil.cpu_percent(None)
    time.sleep(seconds)
    host = psutil.cpu_percent(None) * (psutil.cpu_count() or 1)
    return {n: proc.cpu_percent(None) for n, proc in ps.items()}, host


class _Actions:
    """30 Hz ``JointState`` actions on operator_bridge's ``~/action``, from a bench thread."""

    def __init__(self, node, hz: float) -> None:
        self.pub = node.create_publisher(JointState, '/operator_bridge/action', 10)
        self.node = node
        self.hz = hz
        self.sent = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name='bench-actions', daemon=True)
        self._thread.start()

    def _run(self) -> None:
        next_t = time.monotonic()
        while not self._stop.is_set():
            n = self.sent
            self.pub.publish(JointState(name=JOINTS, position=[0.001 * (n % 100) + 0.1 * i for i in range(6)]))
            self.sent += 1
            next_t += 1.0 / self.hz
            self._stop.wait(max(0.0, next_t - time.monotonic()))

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(2)
        self.node.destroy_publisher(self.pub)


def measure(bench: Any, cameras: int, seconds: float) -> dict[str, Any]:
    """One row: robot_bridge DRIVING at 30 Hz actions with ``cameras`` PNG cameras for ``seconds``."""
    procs = Processes(bench.env)
    room = bench.room()
    robot = bench.robot_side
    actions: Optional[_Actions] = None
    for name in (SAFETY, TRANSPORT, CONVERSION):  # an earlier case's robot_bridge must not count as this one
        robot.diagnostics.pop(name, None)
    try:
        bench.bridges(procs, bench.contract(cameras, 'png'), room, cameras=cameras)
        procs.start('publisher', ['-m', 'bench.ros_publisher', '--cameras', str(cameras), '--width', str(WIDTH),
                                  '--height', str(HEIGHT), '--fps', str(FPS), '--state-hz', '30',
                                  '--pattern', 'camera'], bench.base)  # fmt: skip
        actions = _Actions(bench.operator_side.node, ACTION_HZ)

        def driving() -> bool:
            return robot.diagnostics.get(SAFETY, {}).get('state') == 'driving'

        def sending() -> bool:
            t = robot.diagnostics.get(TRANSPORT, {})
            return all((_number(t, f'cam{i}.frames_sent') or 0) > 0 for i in range(cameras))

        if not bench.wait(lambda: driving() and sending(), 90):
            state = robot.diagnostics.get(SAFETY, {}).get('state')
            seen = ', '.join(sorted(robot.diagnostics)) or 'none'
            why = f'safety state {state}; statuses seen: {seen}; executor errors: {robot.spin_errors}'
            return {'cameras': cameras, 'error': f'robot not driving with frames flowing ({why})'}
        time.sleep(RING_FILL_S if not bench.quick else 2.0)  # the lateness ring now holds only this load
        robot.record(SAFETY, TRANSPORT, CONVERSION)
        extra = {'livekit-server': bench.server.process.pid, 'bench': os.getpid()}
        cpu, host = _cpu(procs, extra, seconds)
        time.sleep(1.2)  # the update that closes the window
        safety, transport = robot.history[SAFETY], robot.history[TRANSPORT]
        conversion = robot.history[CONVERSION]
        p50s = [v for _, s in safety if (v := _number(s, 'tick_lateness_us_p50')) is not None]
        p99s = [v for _, s in safety if (v := _number(s, 'tick_lateness_us_p99')) is not None]
        states = {s.get('state') for _, s in safety}
        trips = [_number(s, 'trips') or 0 for _, s in safety]
        per_cam = [_rate(transport, f'cam{i}.frames_sent') for i in range(cameras)]
        full = [_rate(transport, f'cam{i}.dropped_publisher_full') or 0.0 for i in range(cameras)]
        behind = _rate(conversion, 'frames_behind') or 0.0
        sent = [r for r in per_cam if r is not None]
        return {
            'cameras': cameras,
            'seconds': seconds,
            'updates': len(safety),
            'states': sorted(s for s in states if s),
            'trips': (trips[-1] - trips[0]) if trips else None,
            'lateness_p50_ms': statistics.median(p50s) / 1000 if p50s else None,
            'lateness_p99_ms': statistics.median(p99s) / 1000 if p99s else None,
            'lateness_p99_worst_ms': max(p99s) / 1000 if p99s else None,
            'fps_sent': statistics.mean(sent) if sent else None,
            'fps_sent_each': sent,
            # frames a worker encoded: sent + evicted from the full send queue (queue contents aside)
            'fps_encoded': statistics.mean(s + f for s, f in zip(sent, full)) if sent else None,
            'fps_behind': behind / cameras if cameras else None,
            'actions_received': _rate(transport, 'actions_received'),
            # every counter of the transport and conversion statuses, per second over the window
            'rates': {k: _rate(h, k) for h in (transport, conversion) for k in (h[-1][1] if h else {}) if _counter(k)},
            'cpu': cpu,
            'host_cpu': host,
            'other_cpu': max(host - sum(cpu.values()), 0.0),
            'actions_sent': actions.sent,
        }
    finally:
        if actions is not None:
            actions.stop()
        procs.stop()


def safety_clock(bench: Any, seconds: float) -> dict[str, Any]:
    """The idle baseline (0 cameras) and the image load (3 PNG cameras), same window each."""
    return {'idle': measure(bench, 0, seconds), 'load': measure(bench, 3, seconds)}


def safety_clock_table(result: dict[str, Any]) -> str:
    rows = []
    for case, r in result.items():
        if 'error' in r:
            rows.append([case, str(r['cameras']), f'error: {r["error"]}', *[''] * 10])
            continue
        cams = r['cameras']
        cpu = r['cpu']
        rows.append([
            case,
            f'{cams} x PNG 640x480' if cams else '0',
            fmt(r['fps_sent'], 1) if cams else '-',
            fmt(r['fps_encoded'], 1) if cams else '-',
            fmt(r['lateness_p50_ms']),
            f"{fmt(r['lateness_p99_ms'])} / {fmt(r['lateness_p99_worst_ms'])}",
            '/'.join(r['states']) + (f", {fmt(r['trips'], 0)} trips" if r['trips'] else ''),
            fmt(r['actions_received'], 1),
            fmt(cpu.get('robot_bridge'), 0),
            fmt(cpu.get('publisher'), 0),
            fmt(cpu.get('operator_bridge'), 0),
            fmt(cpu.get('livekit-server'), 0),
            f"{fmt(r['host_cpu'], 0)} ({fmt(r['other_cpu'], 0)})",
        ])  # fmt: skip
    return table(['case', 'cameras', 'frames/s sent per camera', 'frames/s encoded per camera',
                  'tick lateness p50 ms', 'tick lateness p99 ms (median / worst)', 'safety state', 'actions/s in',
                  'CPU % robot_bridge', 'CPU % publisher', 'CPU % operator_bridge', 'CPU % livekit-server',
                  'host CPU % (not this case)'], rows)  # fmt: skip
