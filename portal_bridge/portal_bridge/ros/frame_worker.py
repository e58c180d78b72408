"""One worker thread per camera: image conversion and encoding off the ROS executor.

A camera callback only hands its message over; the worker converts (Image to RGB, JPEG/PNG
encoding for frame-video tracks) in its own thread, where numpy, Pillow and the SDK release
the GIL for the heavy parts. The queue holds a few frames, so a burst (frames released together
after a DDS or scheduling stall) is processed frame by frame, and drops the oldest frame when
the worker stays behind (counted by the caller's ``on_drop``): a camera that outruns its
encoder should lose old frames, not build latency without bound. Joint states, actions and the
safety clock never wait behind a frame.
"""

from __future__ import annotations

from collections import deque
import threading
from typing import Any, Callable, Optional

__all__ = ['FrameWorker']


class FrameWorker:
    def __init__(
        self,
        name: str,
        handler: Callable[[Any], None],
        *,
        depth: int = 6,
        on_drop: Optional[Callable[[], None]] = None,
        on_error: Optional[Callable[[BaseException], None]] = None,
    ) -> None:
        self._handler = handler
        self._on_drop = on_drop
        self._on_error = on_error
        self._queue: deque[Any] = deque()
        self._depth = depth
        self._cond = threading.Condition()
        self._stopped = False
        self.dropped = 0
        self._thread = threading.Thread(target=self._run, name=f'frames-{name}', daemon=True)
        self._thread.start()

    def submit(self, item: Any) -> None:
        """Queue ``item`` (any thread); drops the oldest queued item when full."""
        dropped = False
        with self._cond:
            if self._stopped:
                return
            if len(self._queue) >= self._depth:
                self._queue.popleft()
                self.dropped += 1
                dropped = True
            self._queue.append(item)
            self._cond.notify()
        if dropped and self._on_drop is not None:
            self._on_drop()

    def stop(self, timeout: float = 2.0) -> None:
        with self._cond:
            self._stopped = True
            self._queue.clear()
            self._cond.notify()
        if threading.current_thread() is not self._thread:
            self._thread.join(timeout)

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._queue and not self._stopped:
                    self._cond.wait()
                if self._stopped:
                    return
                item = self._queue.popleft()
            try:
                self._handler(item)
            except Exception as exc:  # a bad frame never ends the camera
                if self._on_error is not None:
                    self._on_error(exc)
