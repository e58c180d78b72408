"""The robot's command output: the safety state machine, its lock, its clock thread.

:class:`CommandOutput` wraps :class:`~portal_bridge.control.safety.CommandSafety` for a node. Events
come from three threads (actions and operator changes on the LiveKit thread, e-stop and reset
on the safety service thread, clock ticks on this module's own thread); each is applied and its
output published under one lock, so what reaches the controller is always in the order the
state machine decided it. The clock thread is a plain thread that sleeps until the state
machine's next deadline (a watchdog trip, a chunk row, a hold re-send) or ``period_s`` at the
latest, so no executor, image callback or network wait sits in front of a safety timer. It
records how late each of its wake-ups was (``lateness`` ring, microseconds) for diagnostics and
the benchmark.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any, Callable, Optional, Sequence

from ..portal.metrics import SampleRing
from .safety import CommandSafety, Emit, SafetyState

__all__ = ['CommandOutput']

_log = logging.getLogger('portal_bridge.control.command_output')


class CommandOutput:
    """Serialises :class:`CommandSafety` events and publishes their output.

    ``publish(emit)`` turns an :class:`~portal_bridge.control.safety.Emit` into a message and sends it;
    it runs under the lock, so it must be quick (an rclpy publish is). An exception in it is
    logged and counted, never propagated into the clock thread.
    """

    def __init__(
        self,
        safety: CommandSafety,
        publish: Callable[[Emit], None],
        *,
        period_s: float = 0.02,
        on_error: Optional[Callable[[BaseException], None]] = None,
        on_transition: Optional[Callable[[SafetyState, SafetyState, str], None]] = None,
        clock: Callable[[], float] = time.monotonic,
        name: str = 'command-output',
    ) -> None:
        self.safety = safety
        self._publish = publish
        self._on_error = on_error
        self._on_transition = on_transition
        self.period_s = period_s
        self.clock = clock
        self.lock = threading.RLock()
        self.lateness = SampleRing()
        self.published = 0
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread.is_alive() and threading.current_thread() is not self._thread:
            self._thread.join(2.0)

    # -- events (any thread) ------------------------------------------------------------------------
    def apply(self, event: Callable[..., list[Emit]], *args: Any) -> list[Emit]:
        """Run ``event(*args, now)`` on the state machine and publish what it returns."""
        with self.lock:
            before = self.safety.state
            out = event(*args, self.clock())
            self._send(out)
            self._transition(before)
        self._wake.set()  # the next deadline may have moved
        return out

    def operator_changed(self, identity: Optional[str]) -> list[Emit]:
        return self.apply(self.safety.operator_changed, identity)

    def action(self, sender: str, command: Any) -> list[Emit]:
        return self.apply(self.safety.action, sender, command)

    def trajectory(self, sender: str, command: Any, duration_s: float) -> list[Emit]:
        return self.apply(self.safety.trajectory, sender, command, duration_s)

    def stepped(self, sender: str, commands: Sequence[Any], first_offset_s: float, period_s: float) -> list[Emit]:
        return self.apply(self.safety.stepped, sender, commands, first_offset_s, period_s)

    def estop(self, reason: str) -> list[Emit]:
        return self.apply(self.safety.estop, reason)

    def reset(self) -> bool:
        with self.lock:
            before = self.safety.state
            done = self.safety.reset(self.clock())
            self._transition(before)
            return done

    # -- clock thread -----------------------------------------------------------------------------
    def _run(self) -> None:
        target = self.clock()
        while not self._stop.is_set():
            woke_by_timer = not self._wake.is_set()
            now = self.clock()
            if woke_by_timer:
                self.lateness.add(max(int((now - target) * 1e6), 0))
            self._wake.clear()
            try:
                with self.lock:
                    before = self.safety.state
                    self._send(self.safety.tick(self.clock()))
                    self._transition(before)
                    wakeup = self.safety.next_wakeup()
            except Exception as exc:  # never let the safety clock die
                self._error(exc)
                wakeup = float('inf')
            now = self.clock()
            target = min(now + self.period_s, max(wakeup, now))
            self._wake.wait(max(target - now, 0.0))

    def _transition(self, before: SafetyState) -> None:
        after = self.safety.state
        if after is not before and self._on_transition is not None:
            try:
                self._on_transition(before, after, self.safety.reason)
            except Exception as exc:
                self._error(exc)

    def _send(self, out: list[Emit]) -> None:
        for emit in out:
            try:
                self._publish(emit)
                self.published += 1
            except Exception as exc:
                self._error(exc)

    def _error(self, exc: BaseException) -> None:
        if self._on_error is not None:
            try:
                self._on_error(exc)
                return
            except Exception:
                pass
        _log.exception('command output failed: %r', exc)
