"""Python ``logging`` (the Portal core, the LiveKit SDK) into the node's ROS logger.

The core logs with the standard library so it stays ROS-free; inside a node those lines should
look like every other ROS log line and reach /rosout. The LiveKit SDK forwards its native logs
through the ``livekit`` logger; only its warnings and errors are kept.
"""

from __future__ import annotations

import logging

from rclpy.node import Node

__all__ = ['route_python_logging']


class _RosLogHandler(logging.Handler):
    def __init__(self, node: Node) -> None:
        super().__init__()
        self._logger = node.get_logger()

    def emit(self, record: logging.LogRecord) -> None:
        try:
            message = self.format(record)
            if record.levelno >= logging.ERROR:
                self._logger.error(message)
            elif record.levelno >= logging.WARNING:
                self._logger.warning(message)
            elif record.levelno >= logging.INFO:
                self._logger.info(message)
            else:
                self._logger.debug(message)
        except Exception:  # logging must never raise into the caller
            self.handleError(record)


def route_python_logging(node: Node) -> None:
    handler = _RosLogHandler(node)
    for name, level in (('portal_bridge', logging.INFO), ('livekit', logging.WARNING)):
        log = logging.getLogger(name)
        log.handlers = [handler]
        log.setLevel(level)
        log.propagate = False
