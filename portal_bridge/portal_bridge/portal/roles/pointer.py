"""The robot's active-operator attribute, kept equal to the gate's pointer by one writer task.

The gate is local-first: every pointer change (handoff, release, e-stop) takes effect in the gate
at once and the room's ``lk.portal.active_operator`` attribute follows. One writer task reconciles
the attribute with the pointer, retrying with a bounded wait per write until the room has the
current value, so a slow or lost acknowledgement (the SDK drops a few percent of them) never holds
the gate open and never blocks a caller for long. Only this writer writes the attribute, so two
writes in flight can never leave the room with an older value than the gate's.
"""

from __future__ import annotations

import asyncio
from typing import Callable, Optional

from ..protocol import ACTIVE_OPERATOR_ATTR
from ..room.attributes import write_attributes
from ..room.events import SessionParts

__all__ = ['PointerWriter', 'POINTER_WRITE_TIMEOUT_S', 'POINTER_CONFIRM_S']

POINTER_WRITE_TIMEOUT_S = 2.0  # one attribute write; then it is retried
POINTER_CONFIRM_S = 3.0  # how long a handoff request waits for the room to agree


class PointerWriter:
    """Writes the pointer to the room until the room agrees; tells callers when it does."""

    def __init__(
        self,
        pointer: Callable[[], Optional[str]],
        parts: SessionParts,
    ) -> None:
        self._pointer = pointer
        self._parts = parts
        self._confirmed: Optional[str] = None  # the pointer value the room last acknowledged
        self._task: Optional[asyncio.Task] = None
        self._synced = asyncio.Event()

    def _want(self) -> str:
        return self._pointer() or ''

    def confirmed(self) -> bool:
        """Whether the room's attribute carries the gate's current pointer."""
        return self._confirmed == self._want()

    def seen(self, value: str) -> None:
        """The attribute value the room holds right after joining."""
        self._confirmed = value

    def forget(self) -> None:
        """The room may have lost the attribute (a reconnect): write it again."""
        self._confirmed = None

    def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None and task is not asyncio.current_task():
            task.cancel()
        self._confirmed = None

    def kick(self) -> None:
        """Start the writer if the room does not have the current pointer yet."""
        if self._parts.room() is None or self.confirmed():
            return
        if self._task is None or self._task.done():
            self._task = self._parts.tasks.spawn(self._write(), 'pointer-writer')

    async def _write(self) -> None:
        delay = 0.1
        while True:
            room = self._parts.room()
            want = self._want()
            if room is None or self._confirmed == want:
                self._synced.set()
                return
            self._synced.clear()
            try:
                await write_attributes(room.local_participant, {ACTIVE_OPERATOR_ATTR: want}, POINTER_WRITE_TIMEOUT_S)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                self._parts.metrics.drop('pointer-write-retry')
                self._parts.log_once(
                    'pointer-write-retry',
                    "[%s] writing active operator '%s' to the room failed (%s); the gate already uses it, "
                    'retrying until the room agrees',
                    self._parts.label,
                    want,
                    exc,
                )
                await asyncio.sleep(delay)
                delay = min(delay * 2, 2.0)
                continue
            if room is self._parts.room():
                self._confirmed = want

    async def confirm(self, timeout: float) -> bool:
        """Wait until the room has the current pointer; False after ``timeout`` s (writing goes on)."""
        self.kick()
        if self.confirmed():
            return True
        try:
            await asyncio.wait_for(self._synced_for(self._want()), timeout)
        except asyncio.TimeoutError:
            return False
        return True

    async def _synced_for(self, want: str) -> None:
        while self._confirmed != want:
            if self._want() != want:
                return  # superseded by a newer change: the caller's value is no longer wanted
            self._synced.clear()
            self.kick()
            await self._synced.wait()
