"""Native library lines on stderr that never apply, dropped by their exact text; everything else passes.

The H.264 encoder inside the LiveKit SDK (OpenH264) prints, from native code straight to file
descriptor 2, once per encoder: ``[OpenH264] ... Warning:Actual input framerate 0.000000 is
different from framerate in setting 30.000000 ...``. Its first frame-rate statistic is measured
against a start time of 0 while the frames carry clock timestamps, so it always reads about 0; the
frame rate is fine (the ``transport`` diagnostics show it). Nothing in Python sees that line, so
the only place to take it out is the descriptor: :func:`filter_native_stderr` routes fd 2 through
a pipe and a thread forwards every line except the listed ones.

What keeps this safe for a node whose own log lines share fd 2: the forwarding thread does only
``read``/``write``; if it ever fails, fd 2 is pointed back at the real stderr at once; at exit the
pipe is closed and drained (bounded), so the last lines of a shutdown still reach the terminal.
A process that leaves with ``os._exit`` (the nodes do, once the LiveKit FFI is loaded) skips
``atexit`` and must call :func:`drain_native_stderr` itself first, or its last lines (a FATAL
configuration error, say) can still sit in the pipe when the process ends.
"""

from __future__ import annotations

import atexit
import os
import threading
from typing import Optional, Sequence

__all__ = ['NATIVE_NOISE', 'filter_native_stderr', 'drain_native_stderr']

# (what the line contains, and a second fragment it must also contain): exact texts, nothing broader
NATIVE_NOISE = ((b'[OpenH264]', b'Warning:Actual input framerate'),)

_lock = threading.Lock()
_state: Optional[dict] = None


def _noise(line: bytes, patterns: Sequence[tuple[bytes, ...]]) -> bool:
    return any(all(part in line for part in pattern) for pattern in patterns)


def filter_native_stderr(patterns: Sequence[tuple[bytes, ...]] = NATIVE_NOISE) -> bool:
    """Drop ``patterns`` lines from fd 2 for the rest of the process (once; False if already on)."""
    global _state
    with _lock:
        if _state is not None:
            return False
        real = os.dup(2)
        read_end, write_end = os.pipe()
        os.dup2(write_end, 2)
        os.close(write_end)
        done = threading.Event()
        _state = {'real': real, 'done': done}

    def pump() -> None:
        pending = b''
        try:
            while True:
                chunk = os.read(read_end, 65536)
                if not chunk:
                    break
                pending += chunk
                *lines, pending = pending.split(b'\n')
                out = b''.join(line + b'\n' for line in lines if not _noise(line, patterns))
                if out:
                    os.write(real, out)
        finally:
            os.dup2(real, 2)  # never leave stderr on a pipe nobody reads
            if pending and not _noise(pending, patterns):
                os.write(real, pending)
            os.close(read_end)
            done.set()

    threading.Thread(target=pump, daemon=True, name='native-stderr-filter').start()
    atexit.register(drain_native_stderr)
    return True


def drain_native_stderr(timeout: float = 1.0) -> None:
    """Point fd 2 back at the real stderr (closing the pipe) and wait for the thread to drain it.

    Called at exit (``atexit``, or by hand before ``os._exit``); a no-op when the filter is off.
    """
    with _lock:
        state = _state
    if state is None:
        return
    os.dup2(state['real'], 2)  # the pipe's last write end closes: the thread reads to the end
    state['done'].wait(timeout)
