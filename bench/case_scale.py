"""Case 6: scale, operators in the room while one drives at 100 Hz."""

from __future__ import annotations

import time
from typing import Any

from std_msgs.msg import Float64MultiArray

from .harness import JOINTS, RELIABLE, Processes
from .runner import Bench, Emit
from .stats import summary, table


def scale(b: Bench, operators: int) -> dict[str, Any]:
    procs = Processes(b.env)
    room = b.room()
    got: list[float] = []
    sub = b.robot_side.node.create_subscription(
        Float64MultiArray, '/cmd', lambda m: got.append((time.time() - m.data[1]) * 1000.0), RELIABLE
    )
    try:
        contract = b.contract(1, 'h264')
        common = {'livekit_url': b.server.url, 'room': room, 'contract_file': contract}
        procs.bridge('robot_bridge', 'robot_bridge', b.base, **common, state_joints=JOINTS, command_topic='/cmd',
                     **{'cameras.cam0.topic': '/cam0/image_raw'}, action_timeout_ms=5000)  # fmt: skip
        procs.start('publisher', ['-m', 'bench.ros_publisher', '--cameras', '1'], b.base)
        time.sleep(1.0)
        # the driving operator has a process of its own; the others (watching the video) share one
        procs.start('driver', ['-m', 'bench.core_peer', 'operators', '--url', b.server.url, '--room', room,
                               '--count', '1', '--duration', '120'], b.base + 1)  # fmt: skip
        if operators > 1:
            watchers = ['--count', str(operators - 1), '--duration', '120']
            procs.start('watchers', ['-m', 'bench.core_peer', 'watchers', '--url', b.server.url, '--room', room,
                                     *watchers], b.base + 1)  # fmt: skip
        if not b.wait(lambda: len(got) > 50, 90):
            return {'error': 'no actions'}
        time.sleep(1)
        got.clear()
        seconds = b.seconds(8)
        cpu = procs.cpu(seconds)
        return {'total': summary(list(got)), 'rate': len(got) / seconds, 'cpu': cpu}
    finally:
        b.robot_side.node.destroy_subscription(sub)
        procs.stop()


def section(b: Bench, emit: Emit) -> None:
    emit('\n## 6. Scale (operators in the room; one drives at 100 Hz; robot has one 640x480 H264 camera)\n')
    scale_rows = []
    for n in [1, 2] if b.quick else [1, 2, 4, 8]:
        r = scale(b, n)
        if 'error' in r:
            scale_rows.append([str(n), r['error'], '', '', '', ''])
            continue
        scale_rows.append([str(n), r['total']['p50'], r['total']['p95'], r['total']['p99'], r['rate'],
                           r['cpu'].get('robot_bridge'), r['cpu'].get('watchers')])  # fmt: skip
    emit(table(['operators', 'action p50 ms', 'p95 ms', 'p99 ms', 'actions/s', 'robot_bridge CPU %',
                'watchers CPU %'], scale_rows))  # fmt: skip
