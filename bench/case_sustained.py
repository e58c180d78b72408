"""Case 5: sustained load, 3 x 1280x720 H264 at 30 fps with 100 Hz joint states."""

from __future__ import annotations

import time
from typing import Any

from portal_bridge_msgs.msg import Observation

from .harness import RELIABLE, Processes
from .runner import Bench, Emit
from .stats import fmt, table


def sustained(b: Bench, seconds_full: float = 60.0) -> dict[str, Any]:
    procs = Processes(b.env)
    room = b.room()
    got: list[int] = []
    sub = b.operator_side.node.create_subscription(
        Observation, '/operator_bridge/observation', lambda m: got.append(m.timestamp_us), RELIABLE
    )
    try:
        b.bridges(procs, b.contract(3, 'h264'), room, cameras=3)
        procs.start('publisher', ['-m', 'bench.ros_publisher', '--cameras', '3', '--width', '1280', '--height',
                                  '720', '--state-hz', '100'], b.base)  # fmt: skip
        if not b.wait(lambda: len(got) > 30, 90):
            return {'error': 'no observations'}
        time.sleep(3)
        r = b.robot_side.diagnostics
        sent0 = int(r.get('robot_bridge: transport', {}).get('states_sent', 0))
        skipped0 = int(r.get('robot_bridge: transport', {}).get('states_skipped', 0))
        got.clear()
        rss0 = procs.rss_mib()
        seconds = b.seconds(seconds_full)
        cpu = procs.cpu(seconds)
        time.sleep(1.5)  # let the last diagnostics arrive
        rss1 = procs.rss_mib()
        r = b.robot_side.diagnostics
        sent = int(r.get('robot_bridge: transport', {}).get('states_sent', 0)) - sent0
        skipped = int(r.get('robot_bridge: transport', {}).get('states_skipped', 0)) - skipped0
        return {
            'seconds': seconds,
            'observations': len(got),
            'states_forwarded': sent,
            'states_published': sent + skipped,
            'cpu': cpu,
            'rss_growth': {k: rss1.get(k, 0) - v for k, v in rss0.items()},
        }
    finally:
        b.operator_side.node.destroy_subscription(sub)
        procs.stop()


def section(b: Bench, emit: Emit) -> None:
    emit('\n## 5. Sustained load (3 x 1280x720 H264 at 30 fps + 100 Hz joint states)\n')
    s = sustained(b, 60.0)
    if 'error' in s:
        emit(f'error: {s["error"]}')
    else:
        emit(table(['seconds', 'states published', 'states forwarded', 'observations',
                    'observations / forwarded', 'CPU % publisher', 'CPU % robot_bridge', 'CPU % operator_bridge',
                    'RSS growth MiB robot / operator'],
                   [[s['seconds'], s['states_published'], s['states_forwarded'], s['observations'],
                     s['observations'] / max(s['states_forwarded'], 1),
                     s['cpu'].get('publisher'), s['cpu'].get('robot_bridge'), s['cpu'].get('operator_bridge'),
                     f"{fmt(s['rss_growth'].get('robot_bridge'))} / "
                     f"{fmt(s['rss_growth'].get('operator_bridge'))}"]]))  # fmt: skip
