"""Slow services on their own executor thread, under the owning node's names.

Handoff and RPC services wait on the LiveKit thread (a round trip to the robot, up to the RPC
timeout). Served from the node's own executor they would stall every camera and joint callback
meanwhile, and rclpy's MultiThreadedExecutor busy-spins holding the GIL when callbacks contend,
which starves the LiveKit loop. So a helper node (``<node>_services``) with a single-threaded
executor in its own thread serves them, at ``<node's fully qualified name>/<service>``: callers
see ``/robot_bridge/set_active_operator`` as if the main node served it.
"""

from __future__ import annotations

import threading
from typing import Any, Callable

from rclpy.executors import SingleThreadedExecutor
from rclpy.node import Node

__all__ = ['ServiceHost']


class ServiceHost:
    def __init__(self, owner: Node) -> None:
        self._prefix = owner.get_fully_qualified_name()
        self.node = Node(
            f'{owner.get_name()}_services',
            namespace=owner.get_namespace(),
            context=owner.context,
            start_parameter_services=False,
            # Launch passes `-r __node:=<name>` to the process; without this the helper would be
            # renamed to the owner's name too.
            use_global_arguments=False,
        )
        self._executor = SingleThreadedExecutor(context=owner.context)
        self._executor.add_node(self.node)
        self._thread = threading.Thread(target=self._spin, name=f'{owner.get_name()}-services', daemon=True)
        self._thread.start()

    def _spin(self) -> None:
        try:
            self._executor.spin()
        except Exception:  # the context shut down (Ctrl-C): nothing left to serve
            pass

    def create_service(self, srv_type: Any, name: str, callback: Callable) -> Any:
        """Serve ``~/name`` of the owner (or an absolute ``name``) from the helper thread."""
        full = f'{self._prefix}/{name[2:]}' if name.startswith('~/') else name
        return self.node.create_service(srv_type, full, callback)

    def stop(self) -> None:
        self._executor.shutdown(timeout_sec=1.0)
        self._thread.join(2.0)
        try:
            self.node.destroy_node()
        except Exception:
            pass
