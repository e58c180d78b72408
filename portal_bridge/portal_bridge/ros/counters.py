"""The nodes' counters of rejected input and notable events: one table, one naming style.

Every name is kebab-case, like the core's drop reasons and Portal's tagged log lines. A counter's
kind decides how ``/diagnostics`` reads it: **rejected** input (the node dropped something it was
given: WARN in the ``conversion`` task), **adjusted** input (changed to fit and used: counted,
OK), or an **event** of the control plane (counted, OK). Names that come from exceptions (an
image conversion's reason, a core error class) are rejected input unless listed here.
"""

from __future__ import annotations

from dataclasses import dataclass
import re

__all__ = ['Counter', 'COUNTERS', 'kind_of', 'reason_of', 'REJECTED', 'ADJUSTED', 'EVENT']

REJECTED, ADJUSTED, EVENT = 'rejected', 'adjusted', 'event'


@dataclass(frozen=True)
class Counter:
    name: str
    kind: str
    meaning: str


COUNTERS: dict[str, Counter] = {
    c.name: c
    for c in (
        # robot_bridge: inputs
        Counter('zero-stamp', ADJUSTED, 'a message with a zero header.stamp; the receive time was used'),
        Counter('odd-size-cropped', ADJUSTED, 'a camera image of odd size cropped to even for WebRTC'),
        Counter('missing-joints', REJECTED, 'joint_states lacks joints of state fields (their last values kept)'),
        Counter('frames-behind', REJECTED, 'camera conversion fell behind; the oldest frame was dropped'),
        Counter('incompatible-qos', REJECTED, 'a publisher offers QoS the subscription cannot match'),
        Counter('internal-error', REJECTED, 'a callback raised; logged with its traceback once'),
        # robot_bridge: actions and commands
        Counter('nan-action', REJECTED, 'an action or chunk with NaN; never sent to the controller'),
        Counter('limit-clamped', ADJUSTED, 'action values outside the limits clamped (limit_policy clamp)'),
        Counter('limit-rejected', REJECTED, 'an action outside the limits rejected (limit_policy reject)'),
        Counter('chunk-stale', REJECTED, 'a chunk that arrived after its last row was due'),
        Counter('chunk-rows-skipped', EVENT, 'chunk rows already past on arrival, skipped (chunk_alignment)'),
        Counter('command-output-error', REJECTED, 'publishing a command failed'),
        Counter('not-active-operator', EVENT, 'input from someone who is not the active operator'),
        Counter('estop-latched', EVENT, 'input ignored while the emergency stop is latched'),
        Counter('emergency-stop', EVENT, 'an emergency stop latched'),
        Counter('local-handoff-refused', EVENT, 'a local set_active_operator refused (e-stop, allowed_operators)'),
        Counter('estop-rpc-refused', EVENT, 'portal_bridge.emergency_stop from someone not allowed to stop the robot'),
        # both nodes
        Counter('not-connected', EVENT, 'something to send while not connected to the room'),
        Counter('connect-failed', EVENT, 'joining the room failed (the node keeps retrying)'),
        # operator_bridge: ROS actions in
        Counter('unknown-joints', REJECTED, '~/action names joints that are not action fields'),
        Counter('missing-positions', REJECTED, 'fewer positions than names in ~/action or ~/action_chunk'),
        Counter('wrong-length', REJECTED, '~/action_chunk rows do not match the chunk fields'),
        Counter('horizon-mismatch', REJECTED, "~/action_chunk points do not match the chunk's horizon"),
        Counter('chunk-missing-joints', REJECTED, '~/action_chunk lacks joints of the chunk'),
        # recorder
        Counter('frame-refused', REJECTED, 'an observation the dataset cannot take (a camera missing or resized)'),
        Counter('save-failed', REJECTED, 'an episode could not be saved (the error is in the log and ~/recording)'),
    )
}


def kind_of(name: str) -> str:
    """The kind of counter ``name`` (unlisted names are rejected input)."""
    counter = COUNTERS.get(name)
    return REJECTED if counter is None else counter.kind


def reason_of(exc: BaseException) -> str:
    """A counter name for an exception: its ``reason`` if it has one, else its class in kebab-case."""
    reason = getattr(exc, 'reason', None)
    if isinstance(reason, str) and reason:
        return reason
    return re.sub(r'(?<!^)(?=[A-Z])', '-', type(exc).__name__).lower()
