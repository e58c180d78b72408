"""Operator host: operator_bridge, optionally rviz showing its images and joint states.

  ros2 launch portal_bridge operator.launch.py livekit_url:=wss://my.livekit.cloud room:=lab identity:=teleop
  ros2 launch portal_bridge operator.launch.py auto_claim:=true rviz:=true
  ros2 launch portal_bridge operator.launch.py record:=true dataset_root:=$HOME/datasets/pick

Arguments left empty keep the value from ``params_file``.
"""

import os

from ament_index_python.packages import get_package_share_directory
from launch import LaunchDescription
from launch.actions import LogInfo, OpaqueFunction, Shutdown
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import Node

from portal_bridge.ros.launch_helpers import bridge_arguments, bridge_node, missing_rviz, truthy

SHARE = get_package_share_directory('portal_bridge')

EXTRA = (
    ('auto_claim', '', 'true: take control when connected'),
    ('action_subscription', '', 'true: publish ~/executed_actions (recorders)'),
    ('rviz', 'false', 'Start rviz2 with config/operator.rviz'),
    ('record', 'false', 'true: also start the recorder (LeRobotDataset episodes, docs/recording.md)'),
    ('dataset_root', '', 'Recorder dataset directory (empty: from params_file, else ~/portal_datasets/<room>)'),
)
OVERRIDES = {'auto_claim': ('auto_claim', truthy), 'action_subscription': ('action_subscription', truthy)}
RECORDER_OVERRIDES = {'dataset_root': ('dataset_root', str)}


def _nodes(context, *args, **kwargs):
    nodes = [bridge_node(context, 'operator_bridge', OVERRIDES)]
    if truthy(LaunchConfiguration('record').perform(context)):
        nodes.append(bridge_node(context, 'recorder', RECORDER_OVERRIDES, own_identity=True))
    if not truthy(LaunchConfiguration('rviz').perform(context)):
        return nodes
    if missing_rviz():
        return [LogInfo(msg=missing_rviz()), Shutdown(reason='rviz2 not installed')]  # before anything starts
    rviz = Node(
        package='rviz2',
        executable='rviz2',
        name='rviz2',
        arguments=['-d', os.path.join(SHARE, 'config', 'operator.rviz')],
    )
    return [*nodes, rviz]


def generate_launch_description():
    params = os.path.join(SHARE, 'config', 'operator.yaml')
    return LaunchDescription(
        [*bridge_arguments(params, 'operator_bridge parameter file', EXTRA), OpaqueFunction(function=_nodes)]
    )
