"""A thread that publishes heavy ROS messages off the LiveKit event loop.

Building and serialising camera-sized messages takes milliseconds; doing it on the asyncio loop
would delay every packet behind it. Jobs queue here (bounded; when full the oldest job is
dropped and counted, so latency stays bounded when a subscriber is slow) and one thread runs them
in order.
"""

from __future__ import annotations

from collections import deque
import logging
import threading
from typing import Callable

__all__ = ['PublishWorker']

_log = logging.getLogger('portal_bridge.publish_worker')


class PublishWorker:
    def __init__(self, name: str, capacity: int = 16) -> None:
        self._jobs: deque[Callable[[], None]] = deque()
        self._capacity = capacity
        self._cond = threading.Condition()
        self._running = True
        self.dropped = 0
        self.failed = 0
        self.done = 0
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def submit(self, job: Callable[[], None]) -> None:
        with self._cond:
            if not self._running:
                return
            if len(self._jobs) >= self._capacity:
                self._jobs.popleft()
                self.dropped += 1
            self._jobs.append(job)
            self._cond.notify()

    def _run(self) -> None:
        while True:
            with self._cond:
                while self._running and not self._jobs:
                    self._cond.wait()
                if not self._running and not self._jobs:
                    return
                job = self._jobs.popleft()
            try:
                job()
                self.done += 1
            except Exception:  # one failed publish must not stop the others
                self.failed += 1
                if self.failed == 1 or self.failed % 100 == 0:
                    _log.exception('publishing failed (%d failures)', self.failed)

    def stop(self, timeout: float = 2.0) -> None:
        """Finish queued jobs (up to ``timeout``) and stop the thread."""
        with self._cond:
            self._running = False
            self._cond.notify()
        self._thread.join(timeout)
