"""The ``main()`` of every executable: spin until Ctrl-C or SIGTERM, then clean up and exit 0."""

from __future__ import annotations

import os
import sys
import threading
from typing import Any, Callable, Optional, Sequence

from rclpy.node import Node

from ..ros.native_stderr import drain_native_stderr

__all__ = ['run_node']


def run_node(factory: Callable[[], Node], args: Optional[Sequence[str]] = None) -> int:
    """``main()`` body of the node executables: on Ctrl-C or SIGTERM, clean up and exit 0.

    The node handles SIGINT/SIGTERM itself instead of letting rclpy shut the context down first,
    so leaving the room is still logged and nothing prints a traceback. (``rclpy.init`` is not
    used as a context manager: Humble's returns None.)
    """
    import signal

    import rclpy
    from rclpy.executors import ExternalShutdownException, SingleThreadedExecutor
    from rclpy.signals import SignalHandlerOptions

    stop = threading.Event()

    def on_signal(signum: int, frame: Any) -> None:
        stop.set()

    code = 0
    sys.unraisablehook = _without_sdk_double_release(sys.unraisablehook)
    rclpy.init(args=args, signal_handler_options=SignalHandlerOptions.NO)
    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
    node: Optional[Node] = None
    try:
        node = factory()
        executor = SingleThreadedExecutor()  # slow services have their own thread (ServiceHost)
        executor.add_node(node)
        while not stop.is_set() and rclpy.ok():
            executor.spin_once(timeout_sec=0.1)
    except SystemExit as exc:  # configuration errors, already logged in one line
        code = int(exc.code or 2)
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        if node is not None:
            shutdown = getattr(node, 'shutdown', None)
            if shutdown is not None:
                shutdown()  # bridges leave the room here, while ROS logging still works
            node.destroy_node()
        rclpy.try_shutdown()
    return _leave(code)


def _without_sdk_double_release(hook: Callable[[Any], Any]) -> Callable[[Any], Any]:
    """``hook``, minus one known SDK message: a released FFI handle released again.

    When a room closes, the LiveKit FFI frees its tracks' handles itself; the Python objects'
    finalizers then free them a second time and fail an ``assert`` inside ``__del__``, which
    Python prints as a traceback ("Exception ignored in FfiHandle.__del__"). Nothing is wrong
    and nothing can be done about it from here, so it is not printed; anything else is.
    """

    def filtered(unraisable: Any) -> None:
        obj = unraisable.object
        where = (getattr(obj, '__module__', ''), getattr(obj, '__qualname__', ''))
        if where == ('livekit.rtc._ffi_client', 'FfiHandle.__del__') and isinstance(
            unraisable.exc_value, AssertionError
        ):
            return
        hook(unraisable)

    return filtered


def _leave(code: int) -> int:
    """Return ``code``, or exit at once when the LiveKit FFI is loaded.

    The FFI's native threads can call back into Python while the interpreter finalizes, which
    aborts the process ("panic in a function that cannot unwind"). By now the room is left and
    rclpy is shut down, so nothing is lost by skipping finalization.
    """
    if 'livekit.rtc' not in sys.modules:
        return code
    sys.stdout.flush()
    sys.stderr.flush()
    drain_native_stderr()  # os._exit skips atexit: the filter's pipe may still hold the last lines
    os._exit(code)
