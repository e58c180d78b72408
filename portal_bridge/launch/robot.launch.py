"""Robot host: robot_bridge with a parameter file, common settings as launch arguments.

  ros2 launch portal_bridge robot.launch.py livekit_url:=wss://my.livekit.cloud room:=lab
  ros2 launch portal_bridge robot.launch.py params_file:=/path/to/my_robot.yaml dds_profile:=localhost

Arguments left empty keep the value from ``params_file``. Credentials come from the environment
(LIVEKIT_API_KEY/LIVEKIT_API_SECRET or LIVEKIT_TOKEN) or ``credentials_file``, never arguments.
``dds_profile`` gives the bridge process Fast DDS's large-message profile (the camera driver needs
it too; see the README).
"""

import os

from ament_index_python.packages import get_package_share_directory
from launch import LaunchDescription
from launch.actions import OpaqueFunction

from portal_bridge.ros.launch_helpers import bridge_arguments, bridge_node

SHARE = get_package_share_directory('portal_bridge')

EXTRA = (
    ('front_camera_topic', '', 'Image topic of the front camera'),
    ('wrist_camera_topic', '', 'Image topic of the wrist camera'),
    ('command_type', '', 'float64_multi_array, joint_trajectory, joint_state or twist'),
    ('command_topic', '', 'Topic of the joint commands'),
    ('emergency_stop_topic', '', 'std_msgs/Bool topic whose True latches the emergency stop'),
)
OVERRIDES = {
    'front_camera_topic': ('cameras.front.topic', str),
    'wrist_camera_topic': ('cameras.wrist.topic', str),
    'command_type': ('command_type', str),
    'command_topic': ('command_topic', str),
    'emergency_stop_topic': ('emergency_stop_topic', str),
}


def _bridge(context, *args, **kwargs):
    return [bridge_node(context, 'robot_bridge', OVERRIDES)]


def generate_launch_description():
    params = os.path.join(SHARE, 'config', 'robot_arm.yaml')
    return LaunchDescription(
        [*bridge_arguments(params, 'robot_bridge parameter file', EXTRA), OpaqueFunction(function=_bridge)]
    )
