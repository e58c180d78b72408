"""Python ``logging`` (the Portal core, the LiveKit SDK) into the node's ROS logger.

The core logs with the standard library so it stays ROS-free; inside a node those lines should
look like every other ROS log line and reach /rosout. The LiveKit SDK forwards its native logs
through the ``livekit`` logger; only its warnings and errors are kept.
"""

from __future__ import annotations

import logging
import threading
from typing import Callable

from rclpy.node import Node

from ..portal.room.tokens import redact_tokens

__all__ = ['route_python_logging', 'route_session_logging']


class _RosLogHandler(logging.Handler):
    def __init__(self, node: Node) -> None:
        super().__init__()
        self._logger = node.get_logger()

    def emit(self, record: logging.LogRecord) -> None:
        try:
            # Server errors quote the token they refused; a log line is no place for a credential.
            message = redact_tokens(self.format(record))
            # The SDK logs each failed attempt of an automatic reconnect as an error; the bridge reports
            # the connection state itself, at the right level, so SDK lines stop at WARN.
            sdk = record.name.startswith('livekit')
            if record.levelno >= logging.ERROR and not sdk:
                self._logger.error(message)
            elif record.levelno >= logging.WARNING:
                self._logger.warning(message)
            elif record.levelno >= logging.INFO:
                self._logger.info(message)
            else:
                self._logger.debug(message)
        except Exception:  # logging must never raise into the caller
            self.handleError(record)


_LOGGERS = (('portal_bridge', logging.INFO), ('livekit', logging.WARNING))
_original: dict[str, tuple[list[logging.Handler], int, bool]] = {}
_active: list[_RosLogHandler] = []
_lock = threading.Lock()


def _apply(handler: _RosLogHandler | None) -> None:
    for name, level in _LOGGERS:
        log = logging.getLogger(name)
        if handler is None:
            log.handlers, log.level, log.propagate = _original[name]
        else:
            log.handlers, log.propagate = [handler], False
            log.setLevel(level)


def route_python_logging(node: Node) -> Callable[[], None]:
    """Send the loggers to ``node``; returns a function that undoes it.

    Several nodes in one process (tests, composed launches) each route; the newest wins and
    undoing falls back to the previous node, and finally to the original configuration.
    """
    handler = _RosLogHandler(node)
    with _lock:
        if not _active:
            for name, _ in _LOGGERS:
                log = logging.getLogger(name)
                _original[name] = (list(log.handlers), log.level, log.propagate)
        _active.append(handler)
        _apply(handler)

    def restore() -> None:
        with _lock:
            if handler in _active:
                _active.remove(handler)
                _apply(_active[-1] if _active else None)

    return restore


def route_session_logging(node: Node, session_log: logging.Logger) -> logging.Logger:
    """A logger of the node's own for its Portal session, so its lines carry the node's name.

    The role loggers (``portal_bridge.portal.robot`` ...) are shared by every session of that role in
    the process; with two bridges in one process (tests, composition) the newest node would otherwise
    print the other's session lines as its own.
    """
    suffix = node.get_fully_qualified_name().strip('/').replace('/', '.')
    log = logging.getLogger(f'{session_log.name}.{suffix}')
    log.handlers, log.propagate = [_RosLogHandler(node)], False
    log.setLevel(logging.INFO)
    return log
