"""Writing our own participant attributes, confirmed by the room rather than by the SDK's reply.

``LocalParticipant.set_attributes`` in the LiveKit SDK (livekit 1.2.1, its Rust core) sends the
update and only then registers the waiter for the server's reply; when the reply arrives before
the waiter exists it is dropped, and the call waits out the SDK's 5 s request timeout (then
returns without an error, since the Python layer does not read it). Measured on loopback: 1-3 %
of calls, at random, although the server applied every one of them within milliseconds
(docs/wire_notes.md has the trace). So a write here counts as done as soon as either the reply
arrives or the room's copy of our own attributes (``local_participant.attributes``, updated by
the server's participant update) shows the values; the SDK call left waiting finishes by itself
in the background.
"""

from __future__ import annotations

import asyncio
from typing import Any, Mapping

__all__ = ['AttributeWriteTimeout', 'write_attributes', 'attributes_match']

_POLL_S = 0.01


class AttributeWriteTimeout(TimeoutError):
    """Neither the reply nor the room's copy confirmed the write in time."""


def attributes_match(local_participant: Any, attrs: Mapping[str, str]) -> bool:
    """Whether the room's copy of our attributes has ``attrs`` (an empty value is a deleted key)."""
    have = local_participant.attributes
    return all(have.get(k, '') == v for k, v in attrs.items())


async def write_attributes(local_participant: Any, attrs: Mapping[str, str], timeout: float) -> None:
    """Set ``attrs`` and return once the room has them; AttributeWriteTimeout after ``timeout`` s.

    An exception from the SDK call (missing grant, disconnected) is raised as it is.
    """
    attrs = dict(attrs)
    write = asyncio.ensure_future(local_participant.set_attributes(attrs))
    write.add_done_callback(_consume)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        if write.done():
            write.result()
            return
        if attributes_match(local_participant, attrs):
            return  # the room has it; the SDK's call may still be waiting for a lost reply
        remaining = deadline - loop.time()
        if remaining <= 0:
            write.cancel()
            raise AttributeWriteTimeout(f'attributes {sorted(attrs)} not confirmed within {timeout:.1f} s')
        await asyncio.wait({write}, timeout=min(_POLL_S, remaining))


def _consume(task: asyncio.Future) -> None:
    """Retrieve the outcome of a write nobody awaits any more (no 'never retrieved' warning)."""
    if not task.cancelled():
        task.exception()
