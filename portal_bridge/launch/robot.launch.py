"""Robot host: robot_bridge with a parameter file, common settings as launch arguments.

  ros2 launch portal_bridge robot.launch.py livekit_url:=wss://my.livekit.cloud room:=lab
  ros2 launch portal_bridge robot.launch.py params_file:=/path/to/my_robot.yaml

Arguments left empty keep the value from ``params_file``. Credentials come from the environment
(LIVEKIT_API_KEY/LIVEKIT_API_SECRET or LIVEKIT_TOKEN) or ``credentials_file``, never arguments.
"""

import os

from ament_index_python.packages import get_package_share_directory
from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, OpaqueFunction
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import Node

SHARE = get_package_share_directory('portal_bridge')

# Launch argument -> parameter, applied only when the argument is not empty.
OVERRIDES = {
    'livekit_url': ('livekit_url', str),
    'identity': ('identity', str),
    'room': ('room', str),
    'contract_file': ('contract_file', str),
    'credentials_file': ('credentials_file', str),
    'front_camera_topic': ('cameras.front.topic', str),
    'wrist_camera_topic': ('cameras.wrist.topic', str),
    'command_type': ('command_type', str),
    'command_topic': ('command_topic', str),
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
            executable='robot_bridge',
            name='robot_bridge',
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
                default_value=os.path.join(SHARE, 'config', 'robot_arm.yaml'),
                description='robot_bridge parameter file',
            ),
            DeclareLaunchArgument('namespace', default_value='', description='Namespace of the bridge'),
            DeclareLaunchArgument('livekit_url', default_value='', description='LiveKit server URL'),
            DeclareLaunchArgument('identity', default_value='', description='Participant identity of the robot'),
            DeclareLaunchArgument('room', default_value='', description='LiveKit room (the Portal session)'),
            DeclareLaunchArgument('contract_file', default_value='', description='Wire contract (portal.yaml)'),
            DeclareLaunchArgument('credentials_file', default_value='', description='File with LiveKit credentials'),
            DeclareLaunchArgument(
                'front_camera_topic', default_value='', description='Image topic of the front camera'
            ),
            DeclareLaunchArgument(
                'wrist_camera_topic', default_value='', description='Image topic of the wrist camera'
            ),
            DeclareLaunchArgument(
                'command_type',
                default_value='',
                description='float64_multi_array, joint_trajectory, joint_state or twist',
            ),
            DeclareLaunchArgument('command_topic', default_value='', description='Topic of the joint commands'),
            DeclareLaunchArgument('log_level', default_value='info', description='Logging level'),
            OpaqueFunction(function=_bridge),
        ]
    )
