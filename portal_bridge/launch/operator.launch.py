"""Operator host: operator_bridge, optionally rviz showing its images and joint states.

  ros2 launch portal_bridge operator.launch.py livekit_url:=wss://my.livekit.cloud room:=lab identity:=teleop
  ros2 launch portal_bridge operator.launch.py auto_claim:=true rviz:=true

Arguments left empty keep the value from ``params_file``.
"""

import os

from ament_index_python.packages import get_package_share_directory
from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, OpaqueFunction
from launch.conditions import IfCondition
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import Node

SHARE = get_package_share_directory('portal_bridge')

OVERRIDES = {
    'livekit_url': ('livekit_url', str),
    'identity': ('identity', str),
    'room': ('room', str),
    'contract_file': ('contract_file', str),
    'credentials_file': ('credentials_file', str),
    'auto_claim': ('auto_claim', lambda v: v.lower() in ('1', 'true', 'yes')),
    'action_subscription': ('action_subscription', lambda v: v.lower() in ('1', 'true', 'yes')),
}


def _bridge(context, *args, **kwargs):
    overrides = {}
    for arg, (param, cast) in OVERRIDES.items():
        value = LaunchConfiguration(arg).perform(context)
        if value:
            overrides[param] = cast(value)
    return [
        Node(
            package='portal_bridge',
            executable='operator_bridge',
            name='operator_bridge',
            namespace=LaunchConfiguration('namespace'),
            parameters=[LaunchConfiguration('params_file').perform(context), overrides],
            arguments=['--ros-args', '--log-level', LaunchConfiguration('log_level').perform(context)],
            output='screen',
            emulate_tty=True,
        )
    ]


def generate_launch_description():
    return LaunchDescription(
        [
            DeclareLaunchArgument(
                'params_file',
                default_value=os.path.join(SHARE, 'config', 'operator.yaml'),
                description='operator_bridge parameter file',
            ),
            DeclareLaunchArgument('namespace', default_value='', description='Namespace of the bridge'),
            DeclareLaunchArgument('livekit_url', default_value='', description='LiveKit server URL'),
            DeclareLaunchArgument('identity', default_value='', description='Participant identity of this operator'),
            DeclareLaunchArgument('room', default_value='', description='LiveKit room (the Portal session)'),
            DeclareLaunchArgument('contract_file', default_value='', description='Wire contract (portal.yaml)'),
            DeclareLaunchArgument('credentials_file', default_value='', description='File with LiveKit credentials'),
            DeclareLaunchArgument('auto_claim', default_value='', description='true: take control when connected'),
            DeclareLaunchArgument(
                'action_subscription', default_value='', description='true: publish ~/executed_actions (recorders)'
            ),
            DeclareLaunchArgument('log_level', default_value='info', description='Logging level'),
            DeclareLaunchArgument('rviz', default_value='false', description='Start rviz2 with the operator view'),
            OpaqueFunction(function=_bridge),
            Node(
                package='rviz2',
                executable='rviz2',
                name='rviz2',
                arguments=['-d', os.path.join(SHARE, 'config', 'operator.rviz')],
                condition=IfCondition(LaunchConfiguration('rviz')),
            ),
        ]
    )
