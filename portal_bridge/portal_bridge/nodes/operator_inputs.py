"""operator_bridge's input health: what the robot sends (each camera track, its state) and ~/action.

Part of :class:`~.operator_bridge.OperatorBridge`. Once a second the node looks at what arrived
from the robot (the per-track frame and the state counts of the session's metrics) and at the
publishers of its action topics. A robot feed that never starts or stops is reported by name in
``/diagnostics`` (``inputs``) and in one log line per change, with what the operator can know of
the cause: no robot in the room, or the robot sending nothing on that track (the robot's own
``inputs`` task names its silent topic). The action topics matter only while this operator is in
control: nobody publishing on them then is a WARN (silence alone is not: a policy may think).
"""

from __future__ import annotations

import time
from typing import Optional

from ..ros.diagnostics import ERROR, OK, WARN
from ..ros.input_health import InputHealth, change_lines
from ..ros.input_health import summary as input_summary
from ..ros.input_health import values as input_values

__all__ = ['OperatorInputs']

_INPUT_GRACE_S = 3.0  # from the robot's arrival: subscribing to its tracks takes a moment
_ROBOT_WAIT_S = 10.0  # from the start: how long to wait for a robot before saying there is none
_ACTION_GRACE_S = 3.0  # in control without an action publisher this long before saying so (restarts)
_STATE_FEED = 'states'


class OperatorInputs:
    """Input health of operator_bridge. Mixed into OperatorBridge, whose attributes it uses."""

    def _init_inputs(self, timeout_s: float) -> None:
        self.inputs = InputHealth(timeout_s)
        for name in self.track_order:
            self.inputs.add(name, f"video track '{name}'", remote=True)
        if self.contract.state:
            self.inputs.add(_STATE_FEED, 'state data', remote=True)
        self._feed_counts: dict[str, int] = {}
        self._input_statuses: Optional[list] = None  # None until the first check after the grace
        topics = ['~/action'] + (['~/action_chunk'] if self.chunk_name else [])
        self._action_topics = [self.resolve_topic_name(t) for t in topics]
        self._action_problem: Optional[str] = None
        self._action_missing_since: Optional[float] = None
        self._inputs_since = time.monotonic()
        self._robot_present = False
        self.create_timer(1.0, self.guarded(self._check_inputs))

    def _check_inputs(self) -> None:
        """Once a second: which robot feeds moved, their states, the action publishers; log changes."""
        now = time.monotonic()
        t = self.operator.metrics().transport
        counts = dict(t.frames_received)
        counts[_STATE_FEED] = t.states_received
        for name in self.inputs.names:
            if counts.get(name, 0) != self._feed_counts.get(name, 0):
                self._feed_counts[name] = counts.get(name, 0)
                self.inputs.seen(name, now)
        present = self.operator.robot_identity() is not None
        if present and not self._robot_present:
            self._inputs_since = now  # a robot (re)joined: give it the grace again
        self._robot_present = present
        if now - self._inputs_since < (_INPUT_GRACE_S if present else _ROBOT_WAIT_S):
            return
        self._input_statuses, changed = self.inputs.evaluate(now, {n: int(present) for n in self.inputs.names})
        for healthy, line in change_lines(changed):
            if healthy:  # one call site per severity: rclpy refuses a call site that changes it
                self.get_logger().info(line)
            else:
                self.get_logger().warning(line)
        problem = self._action_input_problem()
        if problem is None:
            self._action_missing_since = None
        elif self._action_missing_since is None:
            self._action_missing_since = now
        if problem is not None and now - self._action_missing_since < _ACTION_GRACE_S:
            problem = self._action_problem  # not yet: a source restarting, or this node stopping
        if problem != self._action_problem:
            if problem:
                self.get_logger().warning(f'input actions: {problem} (see /diagnostics, inputs)')
            else:
                self.get_logger().info('input actions: a publisher is there, or this operator is not in control')
            self._action_problem = problem

    def _action_input_problem(self) -> Optional[str]:
        if self.operator.active_operator() != self.identity:
            return None
        if any(self.count_publishers(topic) for topic in self._action_topics):
            return None
        return f'this operator is in control, but nothing publishes on {" or ".join(self._action_topics)}'

    def _diag_inputs(self):
        statuses = self._input_statuses
        values = input_values(statuses or [])
        values['actions.publishers'] = sum(self.count_publishers(t) for t in self._action_topics)
        if statuses is None:
            return OK, 'checking inputs', values
        if not statuses:
            return (WARN, self._action_problem, values) if self._action_problem else (OK, 'no robot feeds', values)
        any_bad, all_bad, text = input_summary(statuses)
        if self._action_problem:
            text = f'{self._action_problem}; {text}' if any_bad else self._action_problem
        if all_bad and self.operator.robot_identity():
            return ERROR, f'the robot sends nothing: {text}', values
        return (WARN if any_bad or self._action_problem else OK), text, values
