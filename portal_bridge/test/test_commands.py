"""The command-type registry (portal_bridge.commands): every type builds what it follows back (no ROS graph)."""

import pytest

from portal_bridge.commands import COMMAND_INTERFACES, COMMANDS, command_type
from portal_bridge.commands.twist import SLOTS
from portal_bridge.control.safety import TIMEOUT_POLICIES


@pytest.mark.parametrize('name', list(COMMANDS))
def test_every_type_follows_back_what_it_builds(name):
    kind = COMMANDS[name]
    joints = list(SLOTS) if not kind.joint_based else ['a', 'b', 'c']
    values = [0.5, -1.25, 2.0, 0.0, 0.0, 3.0][: len(joints)]
    msg = kind.build(joints, values)
    assert isinstance(msg, kind.message)
    names, got = kind.follow(msg, joints)
    assert dict(zip(names, got)) == dict(zip(joints, values))


@pytest.mark.parametrize('name', list(COMMANDS))
def test_every_type_declares_its_safety_traits(name):
    kind = COMMANDS[name]
    assert kind.name == name and kind.default_topic.startswith('/')
    assert set(kind.timeout_policies) <= set(TIMEOUT_POLICIES) and 'stop' in kind.timeout_policies
    assert kind.default_interface in COMMAND_INTERFACES
    if kind.default_interface == 'velocity':
        assert 'hold' not in kind.timeout_policies and not kind.hold_resends


def test_trajectory_type_has_a_whole_chunk_form_and_a_stop_here():
    kind = command_type('joint_trajectory')
    traj = kind.trajectory(['a'], [[1.0], [2.0]], 10.0, 0.05)
    assert [p.positions[0] for p in traj.points] == [1.0, 2.0]
    assert kind.stop_here(['a']).points == [] and kind.follow(kind.stop_here(['a']), ['a']) == ([], [])


def test_an_unknown_type_names_the_known_ones():
    with pytest.raises(KeyError, match='float64_multi_array, joint_trajectory, joint_state, twist'):
        command_type('joint_velocity')
