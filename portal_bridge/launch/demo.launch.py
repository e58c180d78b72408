"""The whole loop on one machine: LiveKit server, simulated robot, both bridges, a demo policy.

  ros2 launch portal_bridge demo.launch.py
  ros2 launch portal_bridge demo.launch.py start_server:=false livekit_url:=wss://my.livekit.cloud

The robot side (sim_robot, robot_bridge) and the operator side (operator_bridge, demo_teleop)
run on different ROS domains, so everything the operator sees has crossed LiveKit. With
``start_server:=true`` a local ``livekit-server --dev`` is started and its dev keys are used;
otherwise credentials come from the environment.
"""

import os

from ament_index_python.packages import get_package_share_directory
from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, ExecuteProcess, OpaqueFunction
from launch.conditions import IfCondition
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import Node

SHARE = get_package_share_directory('portal_bridge')
CONFIG = os.path.join(SHARE, 'config')


def _nodes(context, *args, **kwargs):
    def arg(name):
        return LaunchConfiguration(name).perform(context)

    local = arg('start_server').lower() in ('1', 'true', 'yes')
    keys = {'LIVEKIT_API_KEY': 'devkey', 'LIVEKIT_API_SECRET': 'secret'} if local else {}
    robot_env = {'ROS_DOMAIN_ID': arg('robot_domain'), **keys}
    operator_env = {'ROS_DOMAIN_ID': arg('operator_domain'), **keys}
    common = {'livekit_url': arg('livekit_url'), 'room': arg('room')}
    return [
        Node(package='portal_bridge', executable='sim_robot', name='sim_robot', additional_env=robot_env,
             parameters=[os.path.join(CONFIG, 'sim_robot.yaml')], output='screen'),
        Node(package='portal_bridge', executable='robot_bridge', name='robot_bridge', additional_env=robot_env,
             parameters=[os.path.join(CONFIG, 'robot_arm.yaml'), common], output='screen'),
        Node(package='portal_bridge', executable='operator_bridge', name='operator_bridge',
             additional_env=operator_env,
             parameters=[os.path.join(CONFIG, 'operator.yaml'), {**common, 'identity': 'demo-teleop',
                                                                   'auto_claim': True}],
             output='screen'),
        Node(package='portal_bridge', executable='demo_teleop', name='demo_teleop', additional_env=operator_env,
             output='screen', emulate_tty=True),
        Node(package='rviz2', executable='rviz2', name='rviz2', additional_env=operator_env,
             arguments=['-d', os.path.join(CONFIG, 'operator.rviz')], condition=IfCondition(arg('rviz'))),
    ]  # fmt: skip


def generate_launch_description():
    return LaunchDescription(
        [
            DeclareLaunchArgument('start_server', default_value='true', description='Start a local livekit-server'),
            DeclareLaunchArgument(
                'livekit_server', default_value='livekit-server', description='livekit-server executable'
            ),
            DeclareLaunchArgument('livekit_url', default_value='ws://127.0.0.1:7880', description='LiveKit URL'),
            DeclareLaunchArgument('room', default_value='portal-demo', description='LiveKit room'),
            DeclareLaunchArgument('robot_domain', default_value='21', description='ROS_DOMAIN_ID of the robot side'),
            DeclareLaunchArgument(
                'operator_domain', default_value='22', description='ROS_DOMAIN_ID of the operator side'
            ),
            DeclareLaunchArgument('rviz', default_value='false', description='Start rviz2 on the operator side'),
            ExecuteProcess(
                cmd=[
                    LaunchConfiguration('livekit_server'),
                    '--dev',
                    '--bind',
                    '127.0.0.1',
                    '--config-body',
                    'logging: {level: warn}',
                ],  # fmt: skip
                name='livekit_server',
                output='log',
                condition=IfCondition(LaunchConfiguration('start_server')),
            ),
            OpaqueFunction(function=_nodes),
        ]
    )
