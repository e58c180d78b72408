"""``/diagnostics`` for the bridges, in diagnostic_updater's conventions.

One ``diagnostic_msgs/DiagnosticArray`` per period on the absolute ``/diagnostics`` topic, one
status per task named ``<node>: <task>``, levels OK/WARN/ERROR. (diagnostic_updater itself is not
available everywhere the bridge runs, so this is a small equivalent.)
"""

from __future__ import annotations

from typing import Any, Callable, Mapping

from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from rclpy.node import Node

__all__ = ['OK', 'WARN', 'ERROR', 'STALE', 'Task', 'DiagnosticsPublisher', 'fmt']

# Levels as ints (DiagnosticStatus.level is a byte field: OK=0, WARN=1, ERROR=2, STALE=3).
OK, WARN, ERROR, STALE = 0, 1, 2, 3

# A task returns (level, message, values).
Task = Callable[[], 'tuple[int, str, Mapping[str, Any]]']


def fmt(value: Any) -> str:
    if value is None:
        return ''
    if isinstance(value, float):
        return f'{value:.3f}'
    if isinstance(value, (list, tuple, set, frozenset)):
        return ','.join(str(v) for v in value)
    return str(value)


class DiagnosticsPublisher:
    def __init__(self, node: Node, hardware_id: str, period_s: float = 1.0) -> None:
        self._node = node
        self._hardware_id = hardware_id
        self._tasks: list[tuple[str, Task]] = []
        self._pub = node.create_publisher(DiagnosticArray, '/diagnostics', 10)
        self.timer = node.create_timer(period_s, self.publish)

    def add(self, name: str, task: Task) -> None:
        self._tasks.append((name, task))

    def statuses(self) -> list[DiagnosticStatus]:
        out = []
        prefix = self._node.get_name()
        for name, task in self._tasks:
            try:
                level, message, values = task()
            except Exception as exc:  # a broken task must not silence the others
                level, message, values = ERROR, f'diagnostic task failed: {exc}', {}
            out.append(
                DiagnosticStatus(
                    level=bytes([level]),
                    name=f'{prefix}: {name}',
                    message=message,
                    hardware_id=self._hardware_id,
                    values=[KeyValue(key=str(k), value=fmt(v)) for k, v in values.items()],
                )
            )
        return out

    def publish(self) -> None:
        msg = DiagnosticArray(status=self.statuses())
        msg.header.stamp = self._node.get_clock().now().to_msg()
        self._pub.publish(msg)
