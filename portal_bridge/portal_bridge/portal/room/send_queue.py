"""Queue-backed publishers: synchronous, thread-safe sends drained by one asyncio task each.

Sends never block the caller (a ROS callback, say) and never wait on the network: they encode,
enqueue and return. One drainer task per queue publishes in order. Full queues drop and count:
data packets and chunks drop the new packet (order matters for them, as in Portal), frame video
drops the oldest queued frame (for video, the newest frame is the one worth sending).

Frame video is drained by a :class:`PipelinedDrainer`: each frame is its own byte stream, and
opening, writing and closing one are three round trips through the SDK's FFI, each waiting for
this process's asyncio loop. Sent one after another, a 10 KB frame took 10-12 ms on an idle
2-core host and 40-90 ms while other processes started, longer than a 30 fps frame period, so the
queue overflowed although the data channel was nearly idle. A few frames are in flight at once;
their streams are still closed in queue order, so the receiver completes them in order.
"""

from __future__ import annotations

import asyncio
from collections import deque
import logging
import threading
from typing import Any, Awaitable, Callable, Generic, Mapping, Optional, TypeVar

from livekit import rtc

from ..errors import EmptySchema, NotConnected
from ..metrics import MetricsRecorder
from ..wire.dtypes import check_value_types
from .events import LogOnce

__all__ = [
    'SendQueue',
    'Drainer',
    'PipelinedDrainer',
    'Outbox',
    'DATA_QUEUE_CAPACITY',
    'FRAME_QUEUE_CAPACITY',
    'FRAME_STREAMS_IN_FLIGHT',
]

_log = logging.getLogger('portal_bridge.portal.publish')
T = TypeVar('T')

DATA_QUEUE_CAPACITY = 1024  # about 10 s of 100 Hz state
# Frame video: a short leaky queue. One 640x480 JPEG occupies the data channel for ~25 ms, so a
# deep queue (livekit-portal keeps 60, ~2 s at 30 fps) turns any hiccup into seconds of latency.
FRAME_QUEUE_CAPACITY = 4
# Frame-video streams open at once per track (opened and written concurrently, closed in order).
FRAME_STREAMS_IN_FLIGHT = 3


class SendQueue(Generic[T]):
    """A bounded FIFO that any thread may fill and one asyncio task drains."""

    def __init__(self, loop: asyncio.AbstractEventLoop, capacity: int, drop_oldest: bool) -> None:
        self._loop = loop
        self._capacity = capacity
        self._drop_oldest = drop_oldest
        self._items: deque[T] = deque()
        self._lock = threading.Lock()
        self._event = asyncio.Event()
        self._waiting = False
        self._closed = False

    def __len__(self) -> int:
        return len(self._items)

    def put(self, item: T) -> tuple[bool, Optional[T]]:
        """Enqueue; return (accepted, evicted). Rejected items were not enqueued at all."""
        evicted = None
        with self._lock:
            if self._closed:
                return False, None
            if len(self._items) >= self._capacity:
                if not self._drop_oldest:
                    return False, None
                evicted = self._items.popleft()
            self._items.append(item)
            wake = self._waiting
        if wake:
            self._loop.call_soon_threadsafe(self._event.set)
        return True, evicted

    def close(self) -> None:
        with self._lock:
            self._closed = True
            self._items.clear()

    async def get(self) -> T:
        while True:
            with self._lock:
                if self._items:
                    self._waiting = False
                    return self._items.popleft()
                self._event.clear()
                self._waiting = True
            await self._event.wait()


class Drainer(Generic[T]):
    """Runs ``send(item)`` for every queued item, in order, logging failures ([publish-failed])."""

    def __init__(self, name: str, queue: SendQueue[T], send: Callable[[T], Awaitable[None]]) -> None:
        self.name = name
        self.queue = queue
        self._send = send
        self.failures = 0
        self._task: Optional[asyncio.Task] = None

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run(), name=f'drain-{self.name}')

    async def _run(self) -> None:
        while True:
            item = await self.queue.get()
            try:
                await self._send(item)
                _log.debug('%s: sent %d bytes', self.name, len(item) if hasattr(item, '__len__') else -1)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # a failed publish must not stop later ones
                self._failed(exc)

    def _failed(self, exc: Exception) -> None:
        self.failures += 1
        if self.failures == 1 or self.failures % 100 == 0:
            _log.warning('[publish-failed] %s: %s (%d failures)', self.name, exc, self.failures)

    async def stop(self) -> None:
        self.queue.close()
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except (asyncio.CancelledError, Exception):
                pass
            self._task = None


class PipelinedDrainer(Drainer[T]):
    """Up to ``depth`` sends in flight at once; each one's last step runs in queue order.

    ``send(item, turn)`` does its independent work (open a stream, write it), then awaits
    ``turn()``, which returns once every earlier item has finished, then does the ordered step
    (close the stream). A failed send still passes the turn on, after the sends before it.
    Items stay in the queue until a slot is free, so a drop-oldest queue keeps dropping the oldest.
    """

    def __init__(
        self,
        name: str,
        queue: SendQueue[T],
        send: Callable[[T, Callable[[], Awaitable[None]]], Awaitable[None]],
        depth: int,
    ) -> None:
        if depth < 1:
            raise ValueError(f'depth must be at least 1, got {depth}')
        super().__init__(name, queue, send)  # type: ignore[arg-type]
        self.depth = depth
        self._in_flight: set[asyncio.Task] = set()

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        slots = asyncio.Semaphore(self.depth)
        previous: Optional[asyncio.Future] = None
        while True:
            await slots.acquire()
            try:
                item = await self.queue.get()
            except BaseException:
                slots.release()
                raise
            done = loop.create_future()
            task = loop.create_task(self._send_one(item, previous, done, slots), name=f'{self.name}-send')
            self._in_flight.add(task)
            task.add_done_callback(self._in_flight.discard)
            previous = done

    async def _send_one(
        self, item: T, previous: Optional[asyncio.Future], done: asyncio.Future, slots: asyncio.Semaphore
    ) -> None:
        async def turn() -> None:
            if previous is not None:
                await asyncio.shield(previous)

        try:
            await self._send(item, turn)  # type: ignore[call-arg]
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # a failed publish must not stop later ones
            self._failed(exc)
        finally:
            slots.release()
            if previous is None or previous.done():
                _resolve(done)
            else:  # failed before its turn: pass the turn on only once the earlier sends are done
                previous.add_done_callback(lambda _f: _resolve(done))

    async def stop(self) -> None:
        await super().stop()
        for task in list(self._in_flight):
            task.cancel()
        if self._in_flight:
            await asyncio.gather(*self._in_flight, return_exceptions=True)
        self._in_flight.clear()


def _resolve(future: asyncio.Future) -> None:
    if not future.done():
        future.set_result(None)


async def send_stream(lp: rtc.LocalParticipant, topic: str, name: str, payload: bytes) -> None:
    """Send one payload as one byte stream (the SDK splits it into 15 000-byte chunks)."""
    await send_stream_in_turn(lp, topic, name, payload, None)


async def send_stream_in_turn(
    lp: rtc.LocalParticipant,
    topic: str,
    name: str,
    payload: bytes,
    turn: Optional[Callable[[], Awaitable[None]]],
) -> None:
    """Open and write one byte stream, then wait for ``turn()`` (if given) before closing it.

    The receiver hands a stream over when its trailer (the close) arrives: closing in turn keeps
    streams written concurrently complete in the order they were queued.
    """
    writer = await lp.stream_bytes(name=name, topic=topic, total_size=len(payload))
    await writer.write(payload)
    if turn is not None:
        await turn()
    await writer.aclose()


class Outbox:
    """A role's send side: packets encoded under one lock and queued, one drainer per queue."""

    def __init__(self, role: str, metrics: MetricsRecorder, log_once: LogOnce) -> None:
        self.role = role
        self._metrics = metrics
        self._log_once = log_once
        self._lock = threading.Lock()  # carry-forward encoders keep state between packets
        self._drainers: list[Drainer] = []

    def queue_packet(
        self,
        what: str,
        codec: Any,
        queue: Optional[SendQueue],
        fields: Mapping[str, Any],
        values: Mapping[str, Any],
        check_types: bool,
        *encode_args: int,
    ) -> Optional[bytes]:
        """Encode a state or action packet (carry-forward) and queue it; None if the queue is full."""
        if codec is None:
            raise EmptySchema(f'the wire contract declares no {what} fields')
        if queue is None:
            raise NotConnected(f'{self.role} is not connected')
        if check_types:
            check_value_types(fields, values)
        with self._lock:
            packet, saturated = codec.encode(values, *encode_args)
        if saturated:
            self._log_once(f'sat-{what}-{saturated}', '[saturated] %s fields %s clipped to their dtype range',
                           what, saturated, level=logging.INFO)  # fmt: skip
        accepted, _ = queue.put(packet)
        if not accepted:
            self._metrics.drop('publish-full')
            self._log_once(f'{what}-full', '[publish-full] %s queue full; packet dropped', what)
            return None
        return packet

    def start_drainer(self, name: str, queue: SendQueue, send: Callable[[Any], Awaitable[None]]) -> None:
        """Drain ``queue`` with ``send(item)``, one item at a time."""
        self._start(Drainer(name, queue, send))

    def start_pipelined_drainer(
        self, name: str, queue: SendQueue, send: Callable[..., Awaitable[None]], depth: int
    ) -> None:
        """Drain ``queue`` with ``send(item, turn)``, up to ``depth`` items in flight (PipelinedDrainer)."""
        self._start(PipelinedDrainer(name, queue, send, depth))

    def _start(self, drainer: Drainer) -> None:
        drainer.start()
        self._drainers.append(drainer)

    async def stop_drainers(self) -> None:
        for drainer in self._drainers:
            await drainer.stop()
        self._drainers.clear()
