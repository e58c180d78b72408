r"""Browser operator console: serves the page that joins a Portal room as an operator.

  ros2 launch portal_bridge console.launch.py livekit_url:=ws://127.0.0.1:7880 room:=portal
  ros2 launch portal_bridge console.launch.py contract_file:=<share>/config/mobile_base_portal.yaml \\
      keymap_file:=<share>/config/mobile_base_keymap.yaml
  ros2 launch portal_bridge console.launch.py address:=0.0.0.0 secret_file:=$HOME/.config/portal/console.secret

Then open the URL it logs. Credentials (to mint the page's tokens) come from credentials_file or
LIVEKIT_API_KEY / LIVEKIT_API_SECRET; the page never sees them. See docs/console.md.
"""

import os

from ament_index_python.packages import get_package_share_directory
from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, OpaqueFunction
from launch_ros.actions import Node

SHARE = get_package_share_directory('portal_bridge')

# (argument = parameter, default, description, conversion); empty strings keep the node's default
ARGUMENTS = (
    ('livekit_url', 'ws://127.0.0.1:7880', 'LiveKit server URL, as the browser reaches it', str),
    ('room', 'portal', 'LiveKit room of the Portal session', str),
    ('identity', 'console', "The page's identity in the room", str),
    ('robot_identity', '', "The robot's identity (empty: the first robot in the room)", str),
    ('contract_file', '', "Wire contract, the robot's portal.yaml (empty: the package default)", str),
    ('keymap_file', os.path.join(SHARE, 'config', 'console_keymap.yaml'), 'Keyboard/gamepad mapping', str),
    ('credentials_file', '', 'LiveKit api_key/api_secret file (empty: the environment)', str),
    ('address', '127.0.0.1', 'Bind address; others need secret_file or logins_file', str),
    ('port', '8080', 'TCP port', int),
    ('token_ttl_s', '600', 'Lifetime of the tokens given to the page (s)', int),
    ('secret_file', '', 'Shared secret other machines must give', str),
    ('logins_file', '', 'identity: password list (YAML)', str),
)


def _node(context, *args, **kwargs):
    params = {}
    for name, _, _, cast in ARGUMENTS:
        value = context.launch_configurations[name]
        if value:
            params[name] = cast(value)
    return [Node(package='portal_bridge', executable='console', name='console', parameters=[params], output='screen')]


def generate_launch_description():
    return LaunchDescription(
        [DeclareLaunchArgument(n, default_value=d, description=t) for n, d, t, _ in ARGUMENTS]
        + [OpaqueFunction(function=_node)]
    )
