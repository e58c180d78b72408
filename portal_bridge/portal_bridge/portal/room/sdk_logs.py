"""LiveKit SDK log lines that do not apply to a Portal session, demoted to DEBUG where they are emitted.

The SDK forwards its native log lines through the ``livekit`` logger. Some are printed by every
healthy session and say nothing a user can act on; a user who sees them learns to ignore the
warnings that matter. Each is matched by the exact text the SDK emits, kept at DEBUG (visible
with debug logging) and counted; everything else passes unchanged:

- ``Attempted to drop unknown FFI handle``: at shutdown the SDK disposes a Python-side handle
  whose native object was already released with its room. Nothing is leaked or lost.
- ``signal connection failed on v1 path``, ``rtc_engine - failed to connect`` and ``error while
  connecting to a room``: the SDK's account of a failed join, four or five lines per attempt.
  The session's own line says it once per attempt, with the room, the URL, the same reason and
  when it retries (``cannot join room ...`` in the nodes); an unreachable server no longer
  prints five warnings a second per node.
"""

from __future__ import annotations

from collections import Counter
import logging
import threading

__all__ = ['DEMOTED', 'demote_sdk_noise', 'demoted_counts']

DEMOTED = (
    'Attempted to drop unknown FFI handle',
    'signal connection failed on v1 path',
    'livekit::rtc_engine - failed to connect',
    'error while connecting to a room',
)

_counts: Counter[str] = Counter()
_lock = threading.Lock()
_installed = False


class _Demote(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno > logging.DEBUG:
            message = record.getMessage()
            for text in DEMOTED:
                if text in message:
                    record.levelno, record.levelname = logging.DEBUG, 'DEBUG'
                    with _lock:
                        _counts[text] += 1
                    break
        return True


def demote_sdk_noise() -> None:
    """Install the filter on the ``livekit`` logger (once per process; idempotent)."""
    global _installed
    with _lock:
        if not _installed:
            logging.getLogger('livekit').addFilter(_Demote())
            _installed = True


def demoted_counts() -> dict[str, int]:
    with _lock:
        return dict(_counts)
