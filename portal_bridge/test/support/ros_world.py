"""Two ROS graphs on two ROS domains joined only by LiveKit, for end-to-end bridge tests.

Each domain has its own ``rclpy.Context`` and a multi-threaded executor spinning in a thread.
The robot bridge lives on one domain and the operator bridges on the next, so any data that
reaches the operator side has crossed the LiveKit server.
"""

from __future__ import annotations

import os
from pathlib import Path
import threading
from typing import Any, Optional

import rclpy
from rclpy.executors import SingleThreadedExecutor
from rclpy.node import Node
from rclpy.parameter import Parameter
from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy

from portal_bridge.nodes.operator_bridge import OperatorBridge
from portal_bridge.nodes.robot_bridge import RobotBridge

from .waiting import wait_for_sync

# What tests collect to count: deep enough that the collector is never where a message is lost. A
# bridge may publish a burst (an SCTP retransmission releases seconds of queued actions at once) while
# this side's executor is busy, and a reader queue of 50 then dropped commands the robot had sent.
RELIABLE = QoSProfile(depth=1000, reliability=ReliabilityPolicy.RELIABLE)
LATCHED = QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE, durability=DurabilityPolicy.TRANSIENT_LOCAL)


def base_domain() -> int:
    return int(os.environ.get('ROS_DOMAIN_ID', '42'))


def to_parameters(params: dict[str, Any]) -> list[Parameter]:
    out = []
    for name, value in params.items():
        if isinstance(value, (list, tuple)):
            kind = Parameter.Type.DOUBLE_ARRAY if value and isinstance(value[0], float) else Parameter.Type.STRING_ARRAY
            out.append(Parameter(name, kind, list(value)))
        else:
            out.append(Parameter(name, value=value))
    return out


class RosDomain:
    """One ROS graph: a private context on ``domain_id`` and an executor thread."""

    def __init__(self, domain_id: int) -> None:
        self.domain_id = domain_id
        self.context = rclpy.Context()
        rclpy.init(context=self.context, domain_id=domain_id)
        self.executor = SingleThreadedExecutor(context=self.context)
        self.nodes: list[Node] = []
        self.errors: list[BaseException] = []
        self._own: list[tuple[SingleThreadedExecutor, threading.Thread]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(
            target=self._spin, args=(self.executor,), daemon=True, name=f'ros-domain-{domain_id}'
        )
        self._thread.start()

    def _spin(self, executor: SingleThreadedExecutor) -> None:
        while self.context.ok() and not self._stop.is_set():
            try:
                executor.spin_once(timeout_sec=0.05)
            except Exception as exc:  # a callback raised: the test must fail, not hang
                if self.context.ok():
                    self.errors.append(exc)

    def add(self, node: Node) -> Node:
        self.nodes.append(node)
        self.executor.add_node(node)
        return node

    def node(self, name: str, own_thread: bool = False) -> Node:
        """A plain node; ``own_thread`` spins it on an executor thread of its own.

        Use that for what would be a separate process in a deployment (``ros2 bag record``, a
        policy answering observations): on the shared thread its callbacks queue behind every
        bridge of the domain, which no real setup does.
        """
        node = Node(name, context=self.context)
        if not own_thread:
            return self.add(node)
        self.nodes.append(node)
        executor = SingleThreadedExecutor(context=self.context)
        executor.add_node(node)
        thread = threading.Thread(target=self._spin, args=(executor,), daemon=True, name=f'ros-{name}')
        self._own.append((executor, thread))
        thread.start()
        return node

    def collect(self, msg_type, topic: str, qos: QoSProfile = RELIABLE, node: Optional[Node] = None) -> list:
        """Subscribe and return the list that fills with received messages."""
        got: list = []
        (node or self.node(f'collector_{len(self.nodes)}')).create_subscription(msg_type, topic, got.append, qos)
        return got

    def close(self) -> None:
        """Stop spinning first, then destroy: a node destroyed under a waiting executor raises InvalidHandle."""
        self._stop.set()
        for thread in [self._thread] + [t for _, t in self._own]:
            thread.join(5)
        for executor in [self.executor] + [e for e, _ in self._own]:
            for node in executor.get_nodes():
                executor.remove_node(node)
        for node in reversed(self.nodes):
            try:
                node.destroy_node()
            except Exception:
                pass
        rclpy.shutdown(context=self.context)
        for executor in [self.executor] + [e for e, _ in self._own]:
            executor.shutdown()


class BridgeWorld:
    """A LiveKit room, a robot-side domain and an operator-side domain."""

    def __init__(self, server, room: str, tmp_path: Path) -> None:
        self.server = server
        self.room = room
        self.tmp = tmp_path
        self.robot_side = RosDomain(base_domain())
        self.operator_side = RosDomain(base_domain() + 1)
        self.credentials = tmp_path / 'livekit.env'
        self.credentials.write_text(f'LIVEKIT_API_KEY={server.api_key}\nLIVEKIT_API_SECRET={server.api_secret}\n')
        self.credentials.chmod(0o600)

    def contract(self, text: str, name: str = 'portal.yaml') -> str:
        path = self.tmp / name
        path.write_text(text)
        return str(path)

    def _common(self, contract: str, identity: str, params: dict[str, Any]) -> list[Parameter]:
        base = {
            'livekit_url': self.server.url,
            'room': self.room,
            'identity': identity,
            'contract_file': contract,
            'credentials_file': str(self.credentials),
        }
        base.update(params)
        return to_parameters(base)

    def robot_bridge(self, contract: str, identity: str = 'robot', wait: bool = True, **params: Any) -> RobotBridge:
        node = RobotBridge(
            context=self.robot_side.context, parameter_overrides=self._common(contract, identity, params)
        )
        self.robot_side.add(node)
        if wait:
            assert node.wait_connected(20), 'robot_bridge did not connect'
        return node

    def operator_bridge(
        self, contract: str, identity: str = 'operator', namespace: str = '', wait: bool = True, **params: Any
    ) -> OperatorBridge:
        node = OperatorBridge(
            context=self.operator_side.context,
            namespace=namespace,
            parameter_overrides=self._common(contract, identity, params),
        )
        self.operator_side.add(node)
        if wait:
            assert node.wait_connected(20), 'operator_bridge did not connect'
            wait_for_sync(lambda: node.operator.robot_identity() is not None, 10, what='operator sees the robot')
        return node

    def recorder(self, contract: str, identity: str = 'recorder', wait: bool = True, **params: Any):
        from portal_bridge.nodes.recorder import Recorder

        node = Recorder(
            context=self.operator_side.context, parameter_overrides=self._common(contract, identity, params)
        )
        self.operator_side.add(node)
        if wait:
            assert node.wait_connected(20), 'recorder did not connect'
            wait_for_sync(lambda: node.operator.robot_identity() is not None, 10, what='recorder sees the robot')
        return node

    def close(self) -> None:
        for domain in (self.operator_side, self.robot_side):
            for node in domain.nodes:
                if hasattr(node, 'shutdown'):
                    node.shutdown()
        self.operator_side.close()
        self.robot_side.close()
        errors = self.robot_side.errors + self.operator_side.errors
        assert not errors, f'ROS callbacks raised: {errors!r}'
