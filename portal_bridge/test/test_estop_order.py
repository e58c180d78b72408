"""The e-stop's order of steps: gate closed, output latched, and only then the pointer released.

Releasing the pointer first lets the loop thread tell the output "the operator left" before the
e-stop latches it; with on_timeout zero or hold the output then publishes its reaction to a
release (a zero, a held command) ahead of the e-stop's one safe command. Seen as two zero Twists
after an e-stop under load. This checks the order of the three steps directly.
"""

from __future__ import annotations

from types import SimpleNamespace

from portal_bridge.nodes.robot_services import RobotServices


def test_emergency_stop_latches_the_output_before_the_pointer_is_released():
    steps: list[str] = []
    node = SimpleNamespace(
        robot=SimpleNamespace(
            lock_out=lambda reason, release=True: steps.append(f'gate closed (release={release})'),
            release_pointer=lambda: steps.append('pointer released'),
        ),
        output=SimpleNamespace(estop=lambda reason: steps.append('output latched') or ['safe']),
        get_fully_qualified_name=lambda: '/robot_bridge',
        count=lambda *a, **k: None,
        estop_pub=SimpleNamespace(publish=lambda msg: steps.append('latched True published')),
    )
    assert RobotServices.emergency_stop(node, 'test') is True
    assert steps == ['gate closed (release=False)', 'output latched', 'pointer released', 'latched True published']
