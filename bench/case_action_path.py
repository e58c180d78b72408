"""Case 4: the action path, operator `~/action` publish to the robot's command topic at 100 Hz."""

from __future__ import annotations

import time
from typing import Any

from sensor_msgs.msg import JointState
from std_msgs.msg import Float64MultiArray

from .harness import RELIABLE, Processes
from .runner import Bench, Emit
from .stats import fmt, summary, table


def action_path(b: Bench, hz: float = 100.0) -> dict[str, Any]:
    procs = Processes(b.env)
    room = b.room()
    got: list[float] = []
    sub = b.robot_side.node.create_subscription(
        Float64MultiArray, '/cmd', lambda m: got.append((time.time() - m.data[1]) * 1000.0), RELIABLE
    )
    pub = b.operator_side.node.create_publisher(JointState, '/operator_bridge/action', 10)
    try:
        b.bridges(procs, b.contract(0, 'h264'), room, action_timeout_ms=5000)

        def send(n: int) -> None:
            pub.publish(JointState(name=['j0', 'j1'], position=[float(n), time.time()]))

        n = 0
        end = time.monotonic() + 60
        while not got and time.monotonic() < end:  # until the operator has claimed control
            send(n)
            n += 1
            time.sleep(0.05)
        got.clear()
        seconds = b.seconds(10)
        end = time.monotonic() + seconds
        next_t = time.monotonic()
        while time.monotonic() < end:
            send(n)
            n += 1
            next_t += 1 / hz
            time.sleep(max(0.0, next_t - time.monotonic()))
        time.sleep(0.5)
        probes = b.latency_probes(operator_bridge='operator:action_bridge', robot_bridge='robot:command_bridge')
        return {'total': summary(got), 'rate': len(got) / seconds, **probes}
    finally:
        b.robot_side.node.destroy_subscription(sub)
        b.operator_side.node.destroy_publisher(pub)
        procs.stop()


def section(b: Bench, emit: Emit) -> None:
    emit('\n## 4. Action path (operator `~/action` publish -> robot command topic received, 100 Hz)\n')
    a = action_path(b)
    emit(table(['p50 ms', 'p95 ms', 'p99 ms', 'actions/s', 'operator_bridge p50 / p95', 'robot_bridge p50 / p95'],
               [[a['total']['p50'], a['total']['p95'], a['total']['p99'], a['rate'],
                 f"{fmt(a['operator_bridge'])} / {fmt(a['operator_bridge_p95'])}",
                 f"{fmt(a['robot_bridge'])} / {fmt(a['robot_bridge_p95'])}"]]))  # fmt: skip
