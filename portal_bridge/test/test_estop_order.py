"""The e-stop's order of steps: gate closed, output latched, and only then the pointer released.

Releasing the pointer first lets the loop thread tell the output "the operator left" before the
e-stop latches it; with on_timeout zero or hold the output then publishes its reaction to a
release (a zero, a held command) ahead of the e-stop's one safe command. Seen as two zero Twists
after an e-stop under load. This checks the order of the three steps directly.
"""

from __future__ import annotations

import threading
from types import SimpleNamespace

import pytest

from portal_bridge.nodes.robot_services import RobotServices


def test_emergency_stop_latches_the_output_before_the_pointer_is_released():
    steps: list[str] = []
    node = SimpleNamespace(
        robot=SimpleNamespace(
            locked_out=None,
            lock_out=lambda reason, release=True: steps.append(f'gate closed (release={release})'),
            release_pointer=lambda: steps.append('pointer released') or _set(threading.Event()),
        ),
        output=SimpleNamespace(estop=lambda reason: steps.append('output latched') or ['safe']),
        get_fully_qualified_name=lambda: '/robot_bridge',
        count=lambda *a, **k: None,
        estop_pub=SimpleNamespace(publish=lambda msg: steps.append('latched True published')),
    )
    assert RobotServices.emergency_stop(node, 'test') is True
    assert steps == ['gate closed (release=False)', 'output latched', 'pointer released', 'latched True published']


def _set(event: threading.Event) -> threading.Event:
    event.set()
    return event


def test_a_second_emergency_stop_keeps_the_first_reason_and_sends_nothing_more():
    reasons: list[str] = []
    robot = SimpleNamespace(locked_out=None, release_pointer=lambda: _set(threading.Event()))
    robot.lock_out = lambda reason, release=True: (reasons.append(reason), setattr(robot, 'locked_out', reason))
    latched = []
    node = SimpleNamespace(
        robot=robot,
        output=SimpleNamespace(estop=lambda reason: None if latched else latched.append(reason) or ['safe']),
        get_fully_qualified_name=lambda: '/robot_bridge',
        count=lambda *a, **k: None,
        estop_pub=SimpleNamespace(publish=lambda msg: None),
    )
    assert RobotServices.emergency_stop(node, 'the spotter') is True
    assert RobotServices.emergency_stop(node, 'the pilot') is False
    assert len(reasons) == 1 and 'the spotter' in robot.locked_out and latched == ['emergency stop from the spotter']


def test_emergency_stop_returns_once_the_loop_has_cleared_the_pointer():
    """The service says "active operator cleared": it must be true when the caller reads it."""
    steps: list[str] = []

    def release_later() -> threading.Event:
        done = threading.Event()

        def loop_side():
            steps.append('pointer cleared on the loop')
            done.set()

        threading.Timer(0.2, loop_side).start()
        return done

    node = SimpleNamespace(
        robot=SimpleNamespace(
            locked_out=None, lock_out=lambda reason, release=True: None, release_pointer=release_later
        ),
        output=SimpleNamespace(estop=lambda reason: steps.append('output latched') or ['safe']),
        get_fully_qualified_name=lambda: '/robot_bridge',
        count=lambda *a, **k: None,
        estop_pub=SimpleNamespace(publish=lambda msg: steps.append('latched True published')),
        get_logger=lambda: SimpleNamespace(warning=lambda msg: steps.append('warned')),
    )
    assert RobotServices.emergency_stop(node, 'test', wait_for_release=True) is True
    # the safe command and the latched state went out first, without waiting for the loop
    assert steps == ['output latched', 'latched True published', 'pointer cleared on the loop']


def test_emergency_stop_from_the_topic_does_not_wait_for_the_loop():
    """The topic path (and any caller not reporting the pointer) returns without waiting for the loop."""
    never = threading.Event()  # a loop that never runs
    node = SimpleNamespace(
        robot=SimpleNamespace(
            locked_out=None, lock_out=lambda reason, release=True: None, release_pointer=lambda: never
        ),
        output=SimpleNamespace(estop=lambda reason: ['safe']),
        get_fully_qualified_name=lambda: '/robot_bridge',
        count=lambda *a, **k: None,
        estop_pub=SimpleNamespace(publish=lambda msg: None),
        get_logger=lambda: SimpleNamespace(warning=lambda msg: pytest.fail('the topic path waited for the loop')),
    )
    done = threading.Event()
    threading.Thread(target=lambda: RobotServices.emergency_stop(node, 'topic') and done.set(), daemon=True).start()
    assert done.wait(0.5), 'the e-stop from the topic blocked on the Portal loop'
