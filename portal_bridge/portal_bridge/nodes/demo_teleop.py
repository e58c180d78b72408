"""demo_teleop: a stand-in policy for the demo, on the operator host.

Answers every observation from operator_bridge with an action (a slow sine wave per joint,
stamped with the observation's stamp so the robot measures end-to-end latency), and takes control
through the bridge's ``claim_control`` only once it is streaming: an operator that claims before
it sends trips the robot's action watchdog. Prints, once a second, what is flowing: observations
per second, state-to-observation latency, the active operator, the round-trip time and the frame
number read back from the simulated camera.
"""

from __future__ import annotations

from collections import deque
import math
import time
from typing import Any, Optional, Sequence

from diagnostic_msgs.msg import DiagnosticArray
import numpy as np
from rclpy.node import Node
from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import JointState
from std_msgs.msg import String
from std_srvs.srv import Trigger

from portal_bridge_msgs.msg import Observation

from ..portal import now_us
from ..ros.params import declare
from .sim_robot import read_barcode

__all__ = ['DemoTeleop', 'main']

_LATCHED = QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE, durability=DurabilityPolicy.TRANSIENT_LOCAL)


def _p(values: list[float], q: float) -> float:
    if not values:
        return float('nan')
    s = sorted(values)
    return s[min(int(q * (len(s) - 1) + 0.5), len(s) - 1)]


class DemoTeleop(Node):
    def __init__(self, **kwargs: Any) -> None:
        super().__init__('demo_teleop', **kwargs)

        def p(name: str, default: Any, description: str) -> Any:
            return declare(self, name, default, description)

        bridge = p('bridge', '/operator_bridge', 'Namespace of the operator_bridge to drive.').rstrip('/')
        self.amplitude = p('amplitude', 0.5, 'Amplitude of the joint motion.')
        # Grippers are limited to [0, 1] in config/robot_arm.yaml: they open and close within it
        # instead of being sent -0.5 and clamped by the robot on every action.
        self.unit_joints = set(
            declare(self, 'unit_range_joints', [], 'Joints that move within [0, 1] (default: gripper).', item_type=str)
            or ['gripper']
        )
        self.period = p('period_s', 4.0, 'Period of the joint motion.')
        self.report_period = p('report_period_s', 1.0, 'How often to print a status line.')
        self.claim = p('claim', True, 'Take control (claim_control) once actions are streaming, and again if lost.')
        self.claim_client = self.create_client(Trigger, f'{bridge}/claim_control')
        self._claim_pending = False
        self._last_claim = -1e9
        self.action_pub = self.create_publisher(JointState, f'{bridge}/action', 10)
        self.create_subscription(Observation, f'{bridge}/observation', self._on_observation, 10)
        self.create_subscription(String, f'{bridge}/active_operator', self._on_active, _LATCHED)
        self.create_subscription(DiagnosticArray, '/diagnostics', self._on_diagnostics, 10)
        self.create_timer(self.report_period, self._report)
        self.active = ''
        self.rtt_ms: Optional[float] = None
        self.latencies: deque[float] = deque(maxlen=300)
        self.received: deque[float] = deque(maxlen=300)
        self.frame_number: Optional[int] = None
        self.last_state: dict[str, float] = {}
        self.total = 0
        self._start = time.monotonic()

    def _on_active(self, msg: String) -> None:
        self.active = msg.data

    def _on_diagnostics(self, msg: DiagnosticArray) -> None:
        for status in msg.status:
            if status.name.endswith(': rtt'):
                values = {kv.key: kv.value for kv in status.values}
                if values.get('rtt_us_last'):
                    self.rtt_ms = int(values['rtt_us_last']) / 1000.0

    def _on_observation(self, obs: Observation) -> None:
        now = time.monotonic()
        self.total += 1
        self.received.append(now)
        self.latencies.append((now_us() - obs.timestamp_us) / 1000.0)
        self.last_state = dict(zip(obs.state.name, obs.state.position))
        if obs.images:
            img = obs.images[0]
            self.frame_number = read_barcode(np.frombuffer(img.data, np.uint8).reshape(img.height, img.width, 3))
        t = now - self._start
        names = list(obs.state.name)
        phase = [math.sin(2 * math.pi * t / self.period + i * 0.7) for i in range(len(names))]
        positions = [0.5 + 0.5 * s if n in self.unit_joints else self.amplitude * s for n, s in zip(names, phase)]
        # Stamped with the observation it answers: the robot turns this into end-to-end latency.
        self.action_pub.publish(JointState(header=obs.header, name=names, position=positions))
        self._claim_when_streaming(now)

    def _claim_when_streaming(self, now: float) -> None:
        """Claim control after a second of streaming, and again when nobody is in control."""
        streaming = sum(1 for t in self.received if now - t <= 1.0) >= 10
        if not self.claim or self.active or self._claim_pending or not streaming or now - self._last_claim < 2.0:
            return
        if not self.claim_client.service_is_ready():
            return
        self._claim_pending, self._last_claim = True, now
        future = self.claim_client.call_async(Trigger.Request())

        def done(fut) -> None:
            self._claim_pending = False
            result = fut.result()
            if result is None or not result.success:
                self.get_logger().info(f'claim_control: {getattr(result, "message", "no answer")}; trying again')

        future.add_done_callback(done)

    def _report(self) -> None:
        now = time.monotonic()
        rate = sum(1 for t in self.received if now - t <= 1.0)
        recent = [lat for t, lat in zip(self.received, self.latencies) if now - t <= 5.0]
        joints = ' '.join(f'{k}={v:+.2f}' for k, v in list(self.last_state.items())[:3])
        rtt = f'{self.rtt_ms:.1f} ms' if self.rtt_ms is not None else '-'
        frame = f'#{self.frame_number}' if self.frame_number is not None else '-'
        print(
            f'[demo] observations/s {rate:3d} | state->observation p50 {_p(recent, 0.5):6.1f} ms '
            f'p95 {_p(recent, 0.95):6.1f} ms | active operator: {self.active or "(none)"} | rtt {rtt} | '
            f'camera frame {frame} | {joints}',
            flush=True,
        )


def main(args: Optional[Sequence[str]] = None) -> int:
    from .node_main import run_node

    return run_node(DemoTeleop, args)


if __name__ == '__main__':
    import sys

    sys.exit(main())
