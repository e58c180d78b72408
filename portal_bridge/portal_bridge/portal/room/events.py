"""Callbacks and background tasks of a session: many listeners per event, no silent failures.

A session's events (an operator joined, an observation is ready, ...) can have several listeners;
adding one never replaces another. A listener that raises is logged with its name and the others
still run; a coroutine listener is scheduled as a task. Every background task is spawned through a
:class:`TaskSet`, whose done-callback logs a task that failed, so an exception in a task is never
lost with it.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
import inspect
import logging
from typing import TYPE_CHECKING, Any, Awaitable, Callable, Hashable, Optional

if TYPE_CHECKING:
    from livekit import rtc

    from ..metrics import MetricsRecorder

__all__ = ['Listeners', 'TaskSet', 'LogOnce', 'SessionParts']

_LOG_ONCE_KEYS = 1024


class TaskSet:
    """The session's background tasks: spawned with a name, failures logged, cancelled together."""

    def __init__(self, log: logging.Logger) -> None:
        self.log = log
        self._tasks: set[asyncio.Task] = set()

    def spawn(self, coro: Awaitable, name: str) -> asyncio.Task:
        """Run ``coro`` as a task on the running loop; an exception it ends with is logged."""
        task = asyncio.ensure_future(coro)
        task.set_name(name)
        self._tasks.add(task)
        task.add_done_callback(self._done)
        return task

    def _done(self, task: asyncio.Task) -> None:
        self._tasks.discard(task)
        if task.cancelled():
            return
        exc = task.exception()
        if exc is not None:
            self.log.error('[task-failed] background task %r failed: %r', task.get_name(), exc, exc_info=exc)

    async def cancel_all(self) -> None:
        """Cancel every task and wait for them to end."""
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        for task in tasks:
            try:
                await task
            except (asyncio.CancelledError, Exception):
                pass
        self._tasks.clear()


class Listeners:
    """The listeners of one event (optionally keyed, e.g. by track or chunk name)."""

    def __init__(self, name: str, tasks: TaskSet) -> None:
        self.name = name
        self._tasks = tasks
        self._by_key: dict[Hashable, list[Callable[..., Any]]] = {}

    def add(self, cb: Callable[..., Any], key: Hashable = None) -> Callable[[], None]:
        """Add a listener; returns a function that removes it again."""
        self._by_key.setdefault(key, []).append(cb)

        def remove() -> None:
            listeners = self._by_key.get(key, [])
            if cb in listeners:
                listeners.remove(cb)

        return remove

    def has(self, key: Hashable = None) -> bool:
        return bool(self._by_key.get(key))

    def emit(self, *args: Any, key: Hashable = None) -> None:
        """Call every listener of ``key`` with ``args``; one that raises is logged, never propagated."""
        for cb in list(self._by_key.get(key, ())):
            try:
                result = cb(*args)
                if inspect.iscoroutine(result):
                    self._tasks.spawn(result, f'{self.name}-listener')
            except Exception:
                self._tasks.log.exception(
                    '[callback-panic] %s listener %s raised', self.name, getattr(cb, '__name__', cb)
                )


class LogOnce:
    """Log a message the first time its key is seen (bounded: a flood of keys cannot grow it)."""

    def __init__(self, log: logging.Logger) -> None:
        self.log = log
        self._seen: set[str] = set()

    def __call__(self, key: str, msg: str, *args: Any, level: int = logging.WARNING) -> None:
        if key in self._seen:
            return
        if len(self._seen) < _LOG_ONCE_KEYS:
            self._seen.add(key)
        self.log.log(level, msg, *args)


@dataclass(frozen=True)
class SessionParts:
    """What a session's components share: its room (None between rooms), metrics, tasks and logs."""

    room: Callable[[], Optional[rtc.Room]]
    metrics: MetricsRecorder
    tasks: TaskSet
    log: logging.Logger
    log_once: LogOnce
    label: str
