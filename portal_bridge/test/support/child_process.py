"""Child processes that cannot outlive the test run that started them.

A test run stopped from outside (a CI timeout, ^C twice, SIGKILL) never reaches its fixture
finalizers; without this, ``livekit-server`` and bridge processes it started keep running and
hold ports and CPU for every later run. Linux's parent-death signal ends them with the test
process instead.
"""

from __future__ import annotations

import ctypes
import signal
import subprocess
import sys
from typing import Any

_PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:
    """Runs in the child between fork and exec: SIGKILL it when the parent thread exits."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)


def spawn(args: list[str], **kwargs: Any) -> subprocess.Popen:
    """``subprocess.Popen`` for helpers, servers and nodes tied to the lifetime of this process.

    The signal fires when the *thread* that spawned the child exits, so call this from a thread
    that lives as long as the child (the test's main thread).
    """
    if sys.platform.startswith('linux'):
        kwargs.setdefault('preexec_fn', _die_with_parent)
    return subprocess.Popen(args, **kwargs)  # noqa: S603 - arguments come from the test itself
