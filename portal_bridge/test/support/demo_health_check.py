"""A healthy demo tells the truth: 60 s of `make demo` all OK, no warning line; Ctrl-C stops it in 2 s.

The demo (scripts/demo.sh: a local livekit-server, the simulated robot, both bridges, the browser
console's node and the demo teleop; the executables and parameter files of launch/demo.launch.py)
runs while this test listens to /diagnostics on both of its ROS domains. Once every task of both
bridges is OK, each of them must stay OK for 60 s; no node may log a WARN or ERROR line at any
time, startup included; and SIGINT to the demo's process group (what Ctrl-C in its terminal sends)
must stop everything within 2 s with exit code 0. The lines the nodes printed are shown with
``pytest -s``, for the record.

One warning is allowed, and only as far as it is true: ``[sync-drop]``, for states whose video
frame never reached the operator. On a 2-core host the demo, its server and the test share the CPU
and WebRTC may lose a frame now and then under that load; each lost frame costs the state it
belonged to. So the states dropped after the start must not exceed the frames the video stack
lost (dropped from a full send queue, never received, or dropped from a full receive ring).

Not collected by `make test` (run it by hand: ``python -m pytest -s
portal_bridge/test/support/demo_health_check.py``). What used to fail it was the start: the robot's
frame-video queue overflowing while five processes started (fixed by sending a few frames' streams
at once, room/send_queue.py), a burst of queued frames overflowing the operator's receive ring, and
drops while the H264 track settled in its first second (portal/sync_buffer.py, START_SETTLE_S:
counted and said as INFO). After those fixes (2026-12-08, 2-core host) it passed 16 of 17 runs:
3 idle, 3 under a CPU quota of 1.3, 1.3 and 1.1 cores (cgroup cpu.cfs_quota_us), 4 alternating,
inside 2 fresh-clone `CI=true make test` runs, and failed in a third: one ``[sync-drop]`` (track
'front' 73 ms ahead) 1.9 s after the first observation, with no frame counted as lost. Two things
keep it out of `make test` until they are fixed. First, the lost-frame count compares the two
bridges' 1 Hz diagnostics, taken at different moments, so it can hide a lost frame (that run:
1846 sent, 1859 "received"). Second, two of the three sync-drops after the settling second came
within 2 s of the first observation, while the H264 stream was still starting, so the settling
period may be too short.
"""

from __future__ import annotations

import os
from pathlib import Path
import re
import signal
import subprocess
import threading
import time

from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus
import pytest

from support.ros_world import RosDomain, base_domain
from support.waiting import wait_for_sync

pytestmark = [pytest.mark.livekit, pytest.mark.ros, pytest.mark.slow]  # 70 s: primary environment

ROOT = Path(__file__).resolve().parents[3]
HEALTHY_S = 60.0
ROBOT_TASKS = {'connection', 'transport', 'rtt', 'policy', 'gate', 'safety', 'conversion', 'latency', 'inputs'}
OPERATOR_TASKS = {'connection', 'sync', 'transport', 'rtt', 'gate', 'conversion', 'latency', 'inputs'}
OK = DiagnosticStatus.OK[0] if isinstance(DiagnosticStatus.OK, bytes) else DiagnosticStatus.OK


def level(status: DiagnosticStatus) -> int:
    return status.level[0] if isinstance(status.level, bytes) else int(status.level)


def latest(arrays: list, node: str) -> dict[str, DiagnosticStatus]:
    out = {}
    for array in list(arrays):
        for s in array.status:
            if s.name.startswith(f'{node}: '):
                out[s.name.split(': ', 1)[1]] = s
    return out


def all_ok(arrays: list, node: str, tasks: set[str]) -> bool:
    now = latest(arrays, node)
    return set(now) >= tasks and all(level(s) == OK for s in now.values())


def not_ok(arrays: list, node: str) -> list[tuple[str, int, str]]:
    return [
        (s.name, level(s), s.message) for a in arrays for s in a.status if s.name.startswith(node) and level(s) != OK
    ]


def warning_lines(text: str) -> list[str]:
    marks = ('[WARN]', '[ERROR]', '[FATAL]', 'WARNING', 'Warning', 'Traceback')
    return [ln for ln in text.splitlines() if any(m in ln for m in marks) and '[sync-drop]' not in ln]


def values(arrays: list, node: str, task: str) -> dict[str, str]:
    status = latest(arrays, node)[task]
    return {kv.key: kv.value for kv in status.values}


def test_a_healthy_demo_is_all_ok_for_60_s_and_ctrl_c_stops_it_within_2_s(tmp_path):
    robot_domain = base_domain() + 8
    logs_dir = tmp_path / 'demo-logs'
    env = dict(
        os.environ,
        DEMO_ROBOT_DOMAIN=str(robot_domain),
        DEMO_ROOM=f'demo-health-{os.getpid()}',
        DEMO_LOGS=str(logs_dir),
        DEMO_CONSOLE_PORT='0',  # any free port: a user's own `make demo` may hold 8080
    )
    env.pop('DEMO_DURATION', None)
    demo = subprocess.Popen(
        [str(ROOT / 'scripts' / 'demo.sh')],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,  # its own process group, as in a terminal
    )
    out: list[str] = []
    reader = threading.Thread(target=lambda: out.extend(demo.stdout), daemon=True)
    reader.start()
    robot_side, operator_side = RosDomain(robot_domain), RosDomain(robot_domain + 1)
    try:
        r = robot_side.collect(DiagnosticArray, '/diagnostics', node=robot_side.node('robot_diagnostics_listener'))
        o = operator_side.collect(
            DiagnosticArray, '/diagnostics', node=operator_side.node('operator_diagnostics_listener')
        )
        try:
            wait_for_sync(
                lambda: all_ok(r, 'robot_bridge', ROBOT_TASKS) and all_ok(o, 'operator_bridge', OPERATOR_TASKS),
                timeout=60,
                what='every task of both bridges OK',
            )
        except AssertionError as exc:
            now = {n: {t: (level(s), s.message) for t, s in latest(a, n).items()} for n, a in
                   (('robot_bridge', r), ('operator_bridge', o))}  # fmt: skip
            raise AssertionError(f'{exc}: {now}') from None
        r0, o0 = len(r), len(o)
        time.sleep(HEALTHY_S)
        r_run, o_run = r[r0:], o[o0:]
        assert len(r_run) >= HEALTHY_S * 0.8 and len(o_run) >= HEALTHY_S * 0.8, 'diagnostics stopped coming'
        assert not_ok(r_run, 'robot_bridge') == [] and not_ok(o_run, 'operator_bridge') == []
        assert any('active operator: demo-teleop' in ln for ln in out), ''.join(out[-20:])

        for node, arrays in (('robot_bridge', r), ('operator_bridge', o)):
            for task in ('transport', 'sync', 'safety', 'inputs'):
                status = latest(arrays, node).get(task)
                if status is not None:
                    print(
                        f'{node}: {task}: {status.message} {{{", ".join(f"{kv.key}={kv.value}" for kv in status.values)}}}'
                    )

        sent, got = values(r, 'robot_bridge', 'transport'), values(o, 'operator_bridge', 'transport')
        sync = values(o, 'operator_bridge', 'sync')

        start = time.monotonic()
        os.killpg(demo.pid, signal.SIGINT)
        code = demo.wait(timeout=15)
        took = time.monotonic() - start
        reader.join(5)
        logs = {p.name: p.read_text(errors='replace') for p in sorted(logs_dir.glob('*.log'))}
        node_logs = {k: v for k, v in logs.items() if k != 'livekit-server.log'}
        print(f'\n--- demo stopped in {took:.2f} s, exit code {code}; what the nodes printed:')
        for name, text in node_logs.items():
            print(f'--- {name}\n{text}')
        status = [ln for ln in out if ln.startswith('[demo] ')]  # once a second: the first and last two
        print('--- the terminal (scripts/demo.sh)\n' + ''.join(ln for ln in out if ln not in status[2:-2]))
        assert took <= 2.0, f'Ctrl-C took {took:.2f} s to stop the demo'
        assert code == 0, ''.join(out[-20:])
        # Frames the video stack lost, all tracks: dropped from a full send queue, sent and never
        # received, or received and dropped from the operator's full receive ring.
        lost = int(got.get('dropped.recv-overflow', '0'))
        for key, value in sent.items():
            if key.endswith('.frames_sent'):
                track = key[: -len('.frames_sent')]
                lost += max(int(value) - int(got.get(f'{track}.frames_received', '0')), 0)
                lost += int(sent.get(f'{track}.dropped_publisher_full', '0'))
        operator_log = node_logs['operator_bridge.log']
        started = sum(  # the start: before the first observation and while the tracks settled (INFO lines)
            int(n)
            for n in re.findall(
                r'(\d+) (?:more )?states dropped (?:while the tracks started|in the first)', operator_log
            )
        )
        steady_drops = int(sync['states_dropped']) - started
        print(f'states dropped after the start: {steady_drops}; frames lost by the video stack: {lost}')
        assert steady_drops <= lost, f'states dropped although their frames arrived: {sync}, {sent}, {got}'
        bad = {name: warning_lines(text) for name, text in node_logs.items() if warning_lines(text)}
        bad_out = warning_lines(''.join(out))
        assert not bad and not bad_out, f'warning lines in a healthy demo: {bad} {bad_out}'
    finally:
        if demo.poll() is None:
            os.killpg(demo.pid, signal.SIGKILL)
            demo.wait(5)
        robot_side.close()
        operator_side.close()
