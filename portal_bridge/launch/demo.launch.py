"""The whole loop on one machine: LiveKit server, simulated robot, both bridges, a demo policy.

  ros2 launch portal_bridge demo.launch.py
  ros2 launch portal_bridge demo.launch.py start_server:=false livekit_url:=wss://my.livekit.cloud

The robot side (sim_robot, robot_bridge) and the operator side (operator_bridge, demo_teleop)
run on different ROS domains, so everything the operator sees has crossed LiveKit. With
``start_server:=true`` a local ``livekit-server --dev`` is started (found like the tests find it:
$PORTAL_BRIDGE_LIVEKIT_SERVER, PATH, or the source tree's .tools/bin from ``make setup``; without
one the launch stops with one line saying so) and its dev keys are used; otherwise credentials
come from the environment. Every process loads Fast DDS's one-host large-message profile.
"""

import os

from ament_index_python.packages import get_package_share_directory
from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, ExecuteProcess, LogInfo, OpaqueFunction, Shutdown
from launch.conditions import IfCondition
from launch_ros.actions import Node

from portal_bridge.dds_profile import profile_env
from portal_bridge.launch_helpers import find_livekit_server, truthy

SHARE = get_package_share_directory('portal_bridge')
CONFIG = os.path.join(SHARE, 'config')


def _nodes(context, *args, **kwargs):
    def arg(name):
        return context.launch_configurations[name]

    actions = []
    local = truthy(arg('start_server'))
    if local:
        server = arg('livekit_server') or find_livekit_server()
        if server is None:
            message = (
                'demo.launch.py: no livekit-server found (PORTAL_BRIDGE_LIVEKIT_SERVER, PATH, .tools/bin from '
                '`make setup`); pass livekit_server:=<path>, or start_server:=false livekit_url:=<your server>'
            )
            return [LogInfo(msg=message), Shutdown(reason='no livekit-server')]
        actions.append(
            ExecuteProcess(
                cmd=[server, '--dev', '--bind', '127.0.0.1', '--config-body', 'logging: {level: warn}'],
                name='livekit_server',
                output='log',
                sigterm_timeout='1',
            )
        )
    keys = {'LIVEKIT_API_KEY': 'devkey', 'LIVEKIT_API_SECRET': 'secret'} if local else {}
    # Two ROS domains of our own (like make demo), so demos of several users on one machine or
    # network do not mix, unless given.
    robot_domain = arg('robot_domain') or str(30 + (os.getpid() % 80) * 2)
    operator_domain = arg('operator_domain') or str(int(robot_domain) + 1)
    actions.append(LogInfo(msg=f'demo: robot side on ROS_DOMAIN_ID={robot_domain}, operator side on {operator_domain}'))
    dds = profile_env('localhost')
    robot_env = {'ROS_DOMAIN_ID': robot_domain, **keys, **dds}
    operator_env = {'ROS_DOMAIN_ID': operator_domain, **keys, **dds}
    common = {'livekit_url': arg('livekit_url'), 'room': arg('room')}
    return actions + [
        Node(package='portal_bridge', executable='sim_robot', name='sim_robot', additional_env=robot_env,
             parameters=[os.path.join(CONFIG, 'sim_robot.yaml')], output='screen'),
        Node(package='portal_bridge', executable='robot_bridge', name='robot_bridge', additional_env=robot_env,
             parameters=[os.path.join(CONFIG, 'robot_arm.yaml'), {**common, 'allowed_operators': ['demo-teleop']}],
             output='screen'),
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
                'livekit_server', default_value='', description='livekit-server executable (empty: look for one)'
            ),
            DeclareLaunchArgument('livekit_url', default_value='ws://127.0.0.1:7880', description='LiveKit URL'),
            DeclareLaunchArgument('room', default_value='portal-demo', description='LiveKit room'),
            DeclareLaunchArgument(
                'robot_domain', default_value='', description='ROS_DOMAIN_ID of the robot side (empty: pick one)'
            ),
            DeclareLaunchArgument(
                'operator_domain', default_value='', description='ROS_DOMAIN_ID of the operator side (empty: next one)'
            ),
            DeclareLaunchArgument('rviz', default_value='false', description='Start rviz2 on the operator side'),
            OpaqueFunction(function=_nodes),
        ]
    )
