"""Unit tests of portal_bridge.joints: JointState to state values by joint name, and actions to commands.

StateMapping reads fields by joint name and interface and reports what a message lacks;
CommandBuilder builds each command type, remapping joints and fields; nan_fields and
apply_limits are the checks applied before a command is sent.
"""

import math

from geometry_msgs.msg import Twist
import pytest
from sensor_msgs.msg import JointState
from std_msgs.msg import Float64MultiArray
from trajectory_msgs.msg import JointTrajectory

from portal_bridge.ros.joints import (
    COMMAND_TYPES,
    CommandBuilder,
    MappingError,
    StateMapping,
    apply_limits,
    nan_fields,
)


def joint_state(names, position=(), velocity=(), effort=()) -> JointState:
    return JointState(
        name=list(names),
        position=[float(v) for v in position],
        velocity=[float(v) for v in velocity],
        effort=[float(v) for v in effort],
    )


def twist_values(msg: Twist) -> list[float]:
    return [msg.linear.x, msg.linear.y, msg.linear.z, msg.angular.x, msg.angular.y, msg.angular.z]


def duration_ns(d) -> int:
    return d.sec * 1_000_000_000 + d.nanosec


# -- StateMapping ----------------------------------------------------------------------------------


def test_state_fields_are_read_by_joint_name_not_position():
    mapping = StateMapping(['a', 'b', 'c'], ['j1', 'j2', 'j3'])
    values, missing = mapping.extract(joint_state(['j3', 'j1', 'j2'], [3.5, 1.5, 2.5]))
    assert values == {'a': 1.5, 'b': 2.5, 'c': 3.5}
    assert missing == []
    assert all(type(v) is float for v in values.values())


def test_state_fields_may_name_a_joint_other_than_their_own():
    mapping = StateMapping(['gripper', 'shoulder'], ['finger_joint', 'arm_joint_1'])
    values, missing = mapping.extract(joint_state(['arm_joint_1', 'x', 'finger_joint'], [0.3, 9.0, 0.04]))
    assert values == {'gripper': 0.04, 'shoulder': 0.3}
    assert missing == []


def test_extra_joints_in_the_message_are_ignored():
    mapping = StateMapping(['a'], ['j1'])
    values, missing = mapping.extract(joint_state(['j0', 'j1', 'j2'], [7.0, 8.0, 9.0]))
    assert values == {'a': 8.0}
    assert missing == []


def test_velocity_and_effort_interfaces():
    mapping = StateMapping(
        ['pos', 'vel', 'eff', 'pos2', 'vel2'],
        ['j1', 'j1/velocity', 'j1/effort', 'j2/position', 'j2/velocity'],
    )
    msg = joint_state(['j2', 'j1'], position=[20.0, 10.0], velocity=[21.0, 11.0], effort=[22.0, 12.0])
    values, missing = mapping.extract(msg)
    assert values == {'pos': 10.0, 'vel': 11.0, 'eff': 12.0, 'pos2': 20.0, 'vel2': 21.0}
    assert missing == []


def test_missing_joint_is_reported_and_its_value_omitted():
    mapping = StateMapping(['a', 'b', 'c'], ['j1', 'j2', 'j3/velocity'])
    values, missing = mapping.extract(joint_state(['j1'], [1.0], velocity=[5.0]))
    assert values == {'a': 1.0}
    assert missing == ['b', 'c']


def test_joint_named_but_with_a_shorter_array_is_missing():
    mapping = StateMapping(['a', 'b', 'c', 'va'], ['j1', 'j2', 'j3', 'j1/velocity'])
    # Three names, two positions, no velocities (a position-only broadcaster).
    values, missing = mapping.extract(joint_state(['j1', 'j2', 'j3'], [1.0, 2.0]))
    assert values == {'a': 1.0, 'b': 2.0}
    assert missing == ['c', 'va']


def test_empty_message_reports_every_field_missing():
    mapping = StateMapping(['a', 'b'], ['j1', 'j2/effort'])
    assert mapping.extract(JointState()) == ({}, ['a', 'b'])


@pytest.mark.parametrize('spec', ['', '/velocity', '/', 'j1/', 'arm/j1/'])
def test_bad_state_joint_spec(spec):
    with pytest.raises(MappingError):
        StateMapping(['a'], [spec])


@pytest.mark.parametrize(
    ('spec', 'joint', 'interface'),
    [
        ('arm/shoulder', 'arm/shoulder', 'position'),
        ('arm/shoulder/velocity', 'arm/shoulder', 'velocity'),
        ('j1/accel', 'j1/accel', 'position'),  # not an interface: part of a namespaced joint name
        ('j1/velocity/x', 'j1/velocity/x', 'position'),
    ],
)
def test_joint_names_may_contain_slashes(spec, joint, interface):
    mapping = StateMapping(['a'], [spec])
    src = mapping.sources[0]
    assert (src.joint, src.interface) == (joint, interface)
    msg = JointState(name=[joint], position=[1.5], velocity=[2.5])
    assert mapping.extract(msg)[0] == {'a': 1.5 if interface == 'position' else 2.5}


@pytest.mark.parametrize(('fields', 'sources'), [(['a', 'b'], ['j1']), (['a'], ['j1', 'j2']), (['a'], [])])
def test_state_joints_length_mismatch(fields, sources):
    with pytest.raises(MappingError, match=f'{len(sources)} entries.*{len(fields)} state fields'):
        StateMapping(fields, sources)


def test_mapping_error_is_a_value_error():
    assert issubclass(MappingError, ValueError)


# -- CommandBuilder: joint commands ----------------------------------------------------------------


def test_unknown_command_type():
    with pytest.raises(MappingError, match='command_type'):
        CommandBuilder('joint_velocity', ['a'])


def test_float64_multi_array_in_contract_order():
    msg = CommandBuilder('float64_multi_array', ['a', 'b', 'c']).build([1, 2.5, -3])
    assert isinstance(msg, Float64MultiArray)
    assert list(msg.data) == [1.0, 2.5, -3.0]


def test_float64_multi_array_command_joints_reorder():
    builder = CommandBuilder('float64_multi_array', ['a', 'b', 'c'], command_joints=['c', 'a'])
    assert builder.joints == ('c', 'a')
    assert list(builder.build([1.0, 2.0, 3.0]).data) == [3.0, 1.0]


def test_command_fields_map_joints_to_action_fields():
    builder = CommandBuilder(
        'joint_state',
        ['gripper', 'shoulder', 'elbow'],
        command_joints=['arm_elbow_joint', 'arm_shoulder_joint', 'finger_joint'],
        command_fields=['elbow', 'shoulder', 'gripper'],
    )
    msg = builder.build([0.04, 1.0, 2.0])
    assert isinstance(msg, JointState)
    assert list(msg.name) == ['arm_elbow_joint', 'arm_shoulder_joint', 'finger_joint']
    assert list(msg.position) == [2.0, 1.0, 0.04]


def test_command_fields_may_drive_one_action_field_twice():
    builder = CommandBuilder('joint_state', ['grip'], command_joints=['left', 'right'], command_fields=['grip', 'grip'])
    msg = builder.build([0.5])
    assert list(msg.name) == ['left', 'right']
    assert list(msg.position) == [0.5, 0.5]


def test_joint_state_default_names_are_action_fields():
    msg = CommandBuilder('joint_state', ['j1', 'j2']).build([0.1, 0.2])
    assert list(msg.name) == ['j1', 'j2']
    assert list(msg.position) == [0.1, 0.2]
    assert list(msg.velocity) == [] and list(msg.effort) == []


@pytest.mark.parametrize(('point_time_s', 'expected_ns'), [(0.0, 0), (0.1, 100_000_000), (1 / 30, 33_333_333)])
def test_joint_trajectory_single_point(point_time_s, expected_ns):
    builder = CommandBuilder(
        'joint_trajectory',
        ['a', 'b'],
        command_joints=['jb', 'ja'],
        command_fields=['b', 'a'],
        point_time_s=point_time_s,
    )
    msg = builder.build([1.0, 2.0])
    assert isinstance(msg, JointTrajectory)
    assert list(msg.joint_names) == ['jb', 'ja']
    assert len(msg.points) == 1
    assert list(msg.points[0].positions) == [2.0, 1.0]
    assert duration_ns(msg.points[0].time_from_start) == expected_ns


@pytest.mark.parametrize('command_type', ['float64_multi_array', 'joint_trajectory', 'joint_state'])
def test_unknown_command_field(command_type):
    with pytest.raises(MappingError, match="'nope'"):
        CommandBuilder(command_type, ['a', 'b'], command_joints=['j1', 'j2'], command_fields=['a', 'nope'])


@pytest.mark.parametrize('command_type', ['float64_multi_array', 'joint_trajectory', 'joint_state'])
def test_command_joints_without_fields_must_be_action_fields(command_type):
    with pytest.raises(MappingError, match="'j1'"):
        CommandBuilder(command_type, ['a', 'b'], command_joints=['j1', 'j2'])


@pytest.mark.parametrize(
    ('joints', 'fields'),
    [(['j1', 'j2'], ['a']), (['j1'], ['a', 'b']), ((), ['a'])],
)
def test_command_fields_count_must_match_joints(joints, fields):
    with pytest.raises(MappingError, match='command_fields has'):
        CommandBuilder('float64_multi_array', ['a', 'b'], command_joints=joints, command_fields=fields)


# -- CommandBuilder: Twist -------------------------------------------------------------------------


def test_twist_slots_detected_by_action_field_name():
    builder = CommandBuilder('twist', ['gripper', 'angular_z', 'linear_x'])
    msg = builder.build([9.0, -0.2, 0.5])
    assert isinstance(msg, Twist)
    assert twist_values(msg) == [0.5, 0.0, 0.0, 0.0, 0.0, -0.2]


def test_twist_all_six_slots_by_name():
    fields = ['angular_z', 'angular_y', 'angular_x', 'linear_z', 'linear_y', 'linear_x']
    msg = CommandBuilder('twist', fields).build([6, 5, 4, 3, 2, 1])
    assert twist_values(msg) == [1.0, 2.0, 3.0, 4.0, 5.0, 6.0]


def test_twist_fields_with_empty_slots():
    builder = CommandBuilder('twist', ['wz', 'vx'], twist_fields=['vx', '', '', '', '', 'wz'])
    assert twist_values(builder.build([0.3, 1.5])) == [1.5, 0.0, 0.0, 0.0, 0.0, 0.3]


def test_twist_fields_override_name_detection():
    builder = CommandBuilder('twist', ['linear_x', 'speed'], twist_fields=['speed', '', '', '', '', ''])
    assert twist_values(builder.build([7.0, 2.0])) == [2.0, 0.0, 0.0, 0.0, 0.0, 0.0]


@pytest.mark.parametrize('twist_fields', [['vx'] * 5, ['vx'] * 7, ['vx', '', '', '', '']])
def test_twist_fields_need_six_entries(twist_fields):
    with pytest.raises(MappingError, match='6 entries'):
        CommandBuilder('twist', ['vx'], twist_fields=twist_fields)


def test_twist_fields_unknown_field():
    with pytest.raises(MappingError, match="twist_fields: 'vy'"):
        CommandBuilder('twist', ['vx'], twist_fields=['vx', 'vy', '', '', '', ''])


@pytest.mark.parametrize(
    ('action_fields', 'twist_fields'),
    [(['vx', 'wz'], ()), (['vx'], ['', '', '', '', '', ''])],
)
def test_twist_with_no_driving_field(action_fields, twist_fields):
    with pytest.raises(MappingError, match='no action field drives the Twist'):
        CommandBuilder('twist', action_fields, twist_fields=twist_fields)


# -- trajectories, zeros ---------------------------------------------------------------------------


@pytest.mark.parametrize('fps', [4.0, 30.0, 15])
def test_build_trajectory_times_are_row_over_fps(fps):
    builder = CommandBuilder('joint_trajectory', ['a', 'b'], command_joints=['jb', 'ja'], command_fields=['b', 'a'])
    rows = [[1.0, 10.0], [2.0, 20.0], [3.0, 30.0], [4.0, 40.0]]
    msg = builder.build_trajectory(rows, fps)
    assert isinstance(msg, JointTrajectory)
    assert list(msg.joint_names) == ['jb', 'ja']
    assert [list(p.positions) for p in msg.points] == [[10.0, 1.0], [20.0, 2.0], [30.0, 3.0], [40.0, 4.0]]
    assert [duration_ns(p.time_from_start) for p in msg.points] == [round(r / fps * 1e9) for r in range(4)]


def test_build_trajectory_long_chunk_crosses_whole_seconds():
    builder = CommandBuilder('joint_trajectory', ['a'])
    msg = builder.build_trajectory([[float(r)] for r in range(25)], 10.0)
    last = msg.points[-1].time_from_start
    assert (last.sec, last.nanosec) == (2, 400_000_000)


def test_build_trajectory_of_no_rows():
    msg = CommandBuilder('joint_trajectory', ['a']).build_trajectory([], 30.0)
    assert list(msg.joint_names) == ['a']
    assert list(msg.points) == []


@pytest.mark.parametrize('command_type', COMMAND_TYPES)
def test_zeros(command_type):
    fields = ['linear_x', 'angular_z', 'c']
    builder = CommandBuilder(command_type, fields, command_joints=['c', 'linear_x'] if command_type != 'twist' else ())
    msg = builder.zeros()
    if command_type == 'twist':
        assert twist_values(msg) == [0.0] * 6
    elif command_type == 'float64_multi_array':
        assert list(msg.data) == [0.0, 0.0]
    elif command_type == 'joint_state':
        assert list(msg.name) == ['c', 'linear_x']
        assert list(msg.position) == [0.0, 0.0]
    else:
        assert list(msg.joint_names) == ['c', 'linear_x']
        assert list(msg.points[0].positions) == [0.0, 0.0]


# -- nan_fields, apply_limits ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ('values', 'expected'),
    [
        ([1.0, math.nan, math.nan], ['b', 'c']),
        ([math.nan, 0.0, 0.0], ['a']),
        ([1.0, 2.0, 3.0], []),
        ([math.inf, -math.inf, 0.0], []),
    ],
)
def test_nan_fields(values, expected):
    assert nan_fields(['a', 'b', 'c'], values) == expected


def test_apply_limits_clamps_and_reports_indices():
    values = [-2.0, 0.5, 3.0, -1.0, 1.0]
    out, outside = apply_limits(values, [-1.0] * 5, [1.0] * 5)
    assert out == [-1.0, 0.5, 1.0, -1.0, 1.0]  # the limits themselves are inside
    assert outside == [0, 2]
    assert values == [-2.0, 0.5, 3.0, -1.0, 1.0]  # the input is not modified


def test_apply_limits_per_field():
    out, outside = apply_limits([5.0, 5.0, 5.0], [0.0, 6.0, -10.0], [4.0, 8.0, 10.0])
    assert out == [4.0, 6.0, 5.0]
    assert outside == [0, 1]


@pytest.mark.parametrize(('lower', 'upper'), [(None, None), (None, [0.0, 0.0]), ([0.0, 0.0], None)])
def test_apply_limits_without_limits_passes_through(lower, upper):
    out, outside = apply_limits([-5.0, 5.0], lower, upper)
    assert out == [-5.0, 5.0]
    assert outside == []


def test_trajectory_start_offset_shifts_every_point():
    b = CommandBuilder('joint_trajectory', ['a', 'b'])
    traj = b.build_trajectory([[0.0, 0.0], [1.0, 1.0], [2.0, 2.0]], 10.0, start_s=0.05)
    times = [p.time_from_start.sec + p.time_from_start.nanosec / 1e9 for p in traj.points]
    assert times == pytest.approx([0.05, 0.15, 0.25])


def test_empty_trajectory_names_the_joints_and_has_no_points():
    traj = CommandBuilder('joint_trajectory', ['a', 'b'], command_joints=['b', 'a']).empty_trajectory()
    assert list(traj.joint_names) == ['b', 'a'] and traj.points == []


@pytest.mark.parametrize('command_type', ['float64_multi_array', 'joint_state', 'joint_trajectory'])
def test_build_positions_uses_measured_positions_in_command_order(command_type):
    b = CommandBuilder(command_type, ['a', 'b'], command_joints=['jb', 'ja'], command_fields=['b', 'a'])
    msg = b.build_positions({'ja': 0.1, 'jb': -0.2, 'other': 9.0})
    if command_type == 'float64_multi_array':
        assert list(msg.data) == [-0.2, 0.1]
    elif command_type == 'joint_state':
        assert (list(msg.name), list(msg.position)) == (['jb', 'ja'], [-0.2, 0.1])
    else:
        assert list(msg.points[0].positions) == [-0.2, 0.1] and list(msg.joint_names) == ['jb', 'ja']
    assert b.build_positions({'ja': 0.1}) is None  # one joint unmeasured: no stop target


def test_build_positions_has_no_meaning_for_twist():
    assert CommandBuilder('twist', ['linear_x']).build_positions({'linear_x': 1.0}) is None


def test_command_kinds_refuse_hold_for_twist_and_resend_only_single_position_commands():
    from portal_bridge.commands import COMMANDS

    assert set(COMMANDS) == set(COMMAND_TYPES)
    assert 'hold' not in COMMANDS['twist'].timeout_policies
    assert [k for k, v in COMMANDS.items() if v.hold_resends] == ['float64_multi_array', 'joint_state']
