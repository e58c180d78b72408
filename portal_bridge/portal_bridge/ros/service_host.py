"""Services on their own executor thread, under the owning node's names.

Two kinds of service must not wait behind each other or behind the node's own callbacks:

* slow ones (handoff, RPC) wait on the LiveKit thread, up to a bounded timeout. Served from the
  node's executor they would stall every camera and joint callback meanwhile (and rclpy's
  MultiThreadedExecutor busy-spins holding the GIL when callbacks contend, which starves the
  LiveKit loop);
* safety ones (emergency stop, reset, the e-stop topic) must answer at once whatever the network
  or the cameras are doing.

So each kind gets a helper node (``<node>_services``, ``<node>_safety``) with a single-threaded
executor in its own thread, serving at ``<node's fully qualified name>/<service>``: callers see
``/robot_bridge/emergency_stop`` as if the main node served it. Every callback is guarded (an
exception is logged with its traceback and answered as a failure where the response has a
``success`` field) and the spin loop survives anything but the context's shutdown, so one bad
request never silences the thread that serves an emergency stop.
"""

from __future__ import annotations

import threading
import traceback
from typing import Any, Callable

from rclpy.executors import ExternalShutdownException, SingleThreadedExecutor
from rclpy.node import Node

__all__ = ['ServiceHost']


class ServiceHost:
    def __init__(self, owner: Node, suffix: str = 'services') -> None:
        self._prefix = owner.get_fully_qualified_name()
        self._owner = owner
        self.errors = 0
        self.node = Node(
            f'{owner.get_name()}_{suffix}',
            namespace=owner.get_namespace(),
            context=owner.context,
            start_parameter_services=False,
            # Launch passes `-r __node:=<name>` to the process; without this the helper would be
            # renamed to the owner's name too.
            use_global_arguments=False,
        )
        self._executor = SingleThreadedExecutor(context=owner.context)
        self._executor.add_node(self.node)
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._spin, name=f'{owner.get_name()}-{suffix}', daemon=True)
        self._thread.start()

    @property
    def alive(self) -> bool:
        return self._thread.is_alive()

    def _spin(self) -> None:
        context = self.node.context
        while not self._stopping.is_set() and context.ok():
            try:
                self._executor.spin_once(timeout_sec=0.1)
            except (ExternalShutdownException, KeyboardInterrupt):
                return
            except Exception as exc:  # a callback outside guard() or the executor itself: keep serving
                if self._stopping.is_set() or not context.ok():
                    return
                self._failed('executor', exc)

    def _failed(self, what: str, exc: BaseException) -> None:
        self.errors += 1
        try:
            self._owner.get_logger().error(f'{what} failed: {exc!r}\n{traceback.format_exc()}')
        except Exception:
            pass

    def guard(self, name: str, callback: Callable) -> Callable:
        """``callback`` that logs its exception and answers with a failure instead of raising."""

        def run(request: Any, response: Any) -> Any:
            try:
                return callback(request, response)
            except Exception as exc:
                self._failed(f"service '{name}'", exc)
                if hasattr(response, 'success'):
                    response.success = False
                if hasattr(response, 'message'):
                    response.message = f'internal error: {exc!r}'
                return response

        return run

    def _full(self, name: str) -> str:
        return f'{self._prefix}/{name[2:]}' if name.startswith('~/') else name

    def create_service(self, srv_type: Any, name: str, callback: Callable) -> Any:
        """Serve ``~/name`` of the owner (or an absolute ``name``) from the helper thread."""
        return self.node.create_service(srv_type, self._full(name), self.guard(name, callback))

    def create_subscription(self, msg_type: Any, topic: str, callback: Callable, qos: Any) -> Any:
        """Subscribe from the helper thread; ``callback`` is guarded like a service."""

        def run(msg: Any) -> None:
            try:
                callback(msg)
            except Exception as exc:
                self._failed(f"subscription '{topic}'", exc)

        return self.node.create_subscription(msg_type, self._full(topic), run, qos)

    def stop(self) -> None:
        self._stopping.set()
        try:
            self._executor.shutdown(timeout_sec=1.0)
        except Exception:
            pass
        self._thread.join(2.0)
        try:
            self.node.destroy_node()
        except Exception:
            pass
