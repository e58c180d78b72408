"""Incoming LiveKit byte streams, read with a size limit and an admission check.

A refused or oversized stream is still read to its end, discarding the bytes: the SDK would
otherwise queue the rest of it in memory until its trailer arrives.
"""

from __future__ import annotations

import inspect
from typing import Any, Callable, Optional

from livekit import rtc

from .events import SessionParts

__all__ = ['stream_reader', 'DEFAULT_STREAM_LIMIT']

DEFAULT_STREAM_LIMIT = 64 * 1024 * 1024


def stream_reader(
    topic: str,
    handler: Callable[[bytes, str], Any],
    *,
    limit: int,
    accept: Callable[[str, str], bool],
    parts: SessionParts,
) -> Callable[[rtc.ByteStreamReader, str], None]:
    """A byte-stream handler for ``topic`` that hands whole payloads to ``handler(data, sender)``."""
    metrics, tasks, log, log_once = parts.metrics, parts.tasks, parts.log, parts.log_once

    async def read(reader: rtc.ByteStreamReader, sender: str) -> None:
        keep = accept(topic, sender)
        buf: Optional[bytearray] = bytearray() if keep else None
        try:
            async for chunk in reader:
                if buf is None:
                    continue
                buf += chunk
                if len(buf) > limit:
                    buf = None
                    metrics.drop('oversized-stream')
                    log_once(
                        f'oversize-{topic}',
                        '[bad-payload] %s stream from %r exceeds %d bytes; dropped',
                        topic,
                        sender,
                        limit,
                    )
        except Exception as exc:
            metrics.drop('stream-error')
            log.debug('%s stream from %r failed: %s', topic, sender, exc)
            return
        if buf is None:
            return
        try:
            result = handler(bytes(buf), sender)
            if inspect.isawaitable(result):
                await result
        except Exception:
            metrics.drop('internal-error')
            log.exception('error handling a %s stream from %r', topic, sender)

    def on_stream(reader: rtc.ByteStreamReader, sender: str) -> None:
        tasks.spawn(read(reader, sender), f'stream-{topic}')

    return on_stream
