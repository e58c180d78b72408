"""The whole loop on one machine: LiveKit server, simulated robot, both bridges, a demo policy.

  ros2 launch portal_bridge demo.launch.py
  ros2 launch portal_bridge demo.launch.py start_server:=false livekit_url:=wss://my.livekit.cloud

The robot side (sim_robot, robot_bridge) and the operator side (operator_bridge, demo_teleop, and
the browser console at http://127.0.0.1:8080/) run on different ROS domains, so everything the
operator sees has crossed LiveKit. With
``start_server:=true`` a local ``livekit-server --dev`` is started (found like the tests find it:
$PORTAL_BRIDGE_LIVEKIT_SERVER, PATH, or the source tree's .tools/bin from ``make setup``; without
one the launch stops with one line saying so) and its dev keys are used; otherwise credentials
come from the environment. Every process loads Fast DDS's one-host large-message profile.
"""

import os
import signal

from ament_index_python.packages import get_package_share_directory
from launch import LaunchDescription
from launch.actions import (
    DeclareLaunchArgument,
    EmitEvent,
    ExecuteProcess,
    LogInfo,
    OpaqueFunction,
    RegisterEventHandler,
    Shutdown,
)
from launch.event_handlers import OnProcessExit
from launch.events import matches_action
from launch.events.process import SignalProcess
from launch_ros.actions import Node

from portal_bridge.ros.dds_profile import profile_env
from portal_bridge.ros.launch_helpers import find_livekit_server, missing_rviz, truthy

SHARE = get_package_share_directory('portal_bridge')
CONFIG = os.path.join(SHARE, 'config')


def _nodes(context, *args, **kwargs):
    def arg(name):
        return context.launch_configurations[name]

    actions = []
    rviz = truthy(arg('rviz'))
    if rviz and missing_rviz():
        return [LogInfo(msg=missing_rviz()), Shutdown(reason='rviz2 not installed')]  # before anything starts
    server_action = None
    local = truthy(arg('start_server'))
    if local:
        server = arg('livekit_server') or find_livekit_server()
        if server is None:
            message = (
                'demo.launch.py: no livekit-server found (PORTAL_BRIDGE_LIVEKIT_SERVER, PATH, .tools/bin from '
                '`make setup`); pass livekit_server:=<path>, or start_server:=false livekit_url:=<your server>'
            )
            return [LogInfo(msg=message), Shutdown(reason='no livekit-server')]
        server_action = ExecuteProcess(
            cmd=[server, '--dev', '--bind', '127.0.0.1', '--config-body', 'logging: {level: warn}'],
            name='livekit_server',
            output='log',
            sigterm_timeout='1',
        )
        actions.append(server_action)
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
    nodes = [
        Node(package='portal_bridge', executable='sim_robot', name='sim_robot', additional_env=robot_env,
             parameters=[os.path.join(CONFIG, 'sim_robot.yaml')], output='screen'),
        Node(package='portal_bridge', executable='robot_bridge', name='robot_bridge', additional_env=robot_env,
             parameters=[os.path.join(CONFIG, 'robot_arm.yaml'),
                         {**common, 'allowed_operators': ['demo-teleop', 'console']}],
             output='screen'),
        Node(package='portal_bridge', executable='operator_bridge', name='operator_bridge',
             additional_env=operator_env,
             parameters=[os.path.join(CONFIG, 'operator.yaml'), {**common, 'identity': 'demo-teleop'}],
             output='screen'),
        Node(package='portal_bridge', executable='demo_teleop', name='demo_teleop', additional_env=operator_env,
             output='screen', emulate_tty=True),
        Node(package='portal_bridge', executable='console', name='console', additional_env=operator_env,
             parameters=[{**common, 'port': int(arg('console_port')),
                          'keymap_file': os.path.join(CONFIG, 'console_keymap.yaml')}], output='screen'),
    ]  # fmt: skip
    if rviz:
        nodes.append(Node(package='rviz2', executable='rviz2', name='rviz2', additional_env=operator_env,
                          arguments=['-d', os.path.join(CONFIG, 'operator.rviz')]))  # fmt: skip
    if server_action is not None:
        actions += _server_lifecycle(server_action, bridges=nodes[1:3])
    return actions + nodes


def _server_lifecycle(server, bridges):
    """Stop the bundled server promptly at shutdown, and stop the demo if the server dies.

    On its first signal livekit-server drains: it waits for participants, checking every 5 s, and
    launch would log an ERROR when it escalates after ``sigterm_timeout``. A second signal stops it
    at once, so it gets SIGTERM as soon as both bridges have left. A server that exits by itself
    (its ports taken) would leave the bridges retrying forever: the demo stops, saying why.
    """
    left = set()

    def on_bridge_exit(event, context):
        left.add(id(event.action))
        if context.is_shutdown and len(left) == len(bridges):
            return [
                EmitEvent(event=SignalProcess(signal_number=signal.SIGTERM, process_matcher=matches_action(server)))
            ]
        return None

    def on_server_exit(event, context):
        if context.is_shutdown:
            return None
        message = (
            f'demo.launch.py: livekit-server exited (code {event.returncode}) before the demo was stopped; its '
            'ports (7880 TCP, 7881 TCP, 7882 UDP) may be in use: see its log in the launch log directory'
        )
        return [LogInfo(msg=message), Shutdown(reason='livekit-server exited')]

    return [
        *(RegisterEventHandler(OnProcessExit(target_action=b, on_exit=on_bridge_exit)) for b in bridges),
        RegisterEventHandler(OnProcessExit(target_action=server, on_exit=on_server_exit)),
    ]


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
            DeclareLaunchArgument(
                'console_port',
                default_value='8080',
                description='Port of the browser console (http://127.0.0.1:<port>/)',
            ),
            OpaqueFunction(function=_nodes),
        ]
    )
