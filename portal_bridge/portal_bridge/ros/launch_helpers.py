"""What the launch files share: bridge arguments, parameter overrides, the DDS profile, the server.

robot.launch.py and operator.launch.py declare the same connection arguments and turn the
non-empty ones into parameter overrides on top of a parameter file; every process they start
gets the Fast DDS profile chosen by ``dds_profile`` through the variable its Fast DDS version
reads (:mod:`portal_bridge.dds_profile`), so the user's shell is left alone. demo.launch.py finds
a ``livekit-server`` the way the tests do. The ``launch`` imports are local to the functions that
need them, so the rest of this module imports without ``launch`` installed.
"""

from __future__ import annotations

import os
from pathlib import Path
import shutil
from typing import Any, Callable, Optional

from .dds_profile import PROFILES, profile_env

__all__ = [
    'BRIDGE_ARGUMENTS',
    'bridge_arguments',
    'bridge_node',
    'find_livekit_server',
    'missing_rviz',
    'overrides_from',
    'truthy',
]


def truthy(value: str) -> bool:
    return value.strip().lower() in ('1', 'true', 'yes', 'on')


# (launch argument, default, description) common to both bridges.
BRIDGE_ARGUMENTS = (
    ('namespace', '', 'Namespace of the bridge'),
    ('livekit_url', '', 'LiveKit server URL (empty: from params_file)'),
    ('identity', '', 'Participant identity (empty: from params_file)'),
    ('room', '', 'LiveKit room, the Portal session (empty: from params_file)'),
    ('contract_file', '', 'Wire contract, portal.yaml (empty: from params_file)'),
    ('credentials_file', '', 'File with LiveKit credentials (empty: from params_file or the environment)'),
    ('log_level', 'info', 'Logging level'),
    (
        'dds_profile',
        'large_messages',
        f'Fast DDS profile for camera-sized messages: {", ".join(PROFILES)} or none (keep the environment)',
    ),
)
# Launch argument -> (parameter, conversion), applied only when the argument is not empty.
CONNECTION_OVERRIDES: dict[str, tuple[str, Callable[[str], Any]]] = {
    'livekit_url': ('livekit_url', str),
    'identity': ('identity', str),
    'room': ('room', str),
    'contract_file': ('contract_file', str),
    'credentials_file': ('credentials_file', str),
}


def bridge_arguments(params_file: str, description: str, extra: tuple = ()) -> list:
    """``DeclareLaunchArgument`` for the parameter file, the common arguments and ``extra``."""
    from launch.actions import DeclareLaunchArgument

    rows = (('params_file', params_file, description), *BRIDGE_ARGUMENTS, *extra)
    return [DeclareLaunchArgument(name, default_value=default, description=text) for name, default, text in rows]


def overrides_from(arg: Callable[[str], str], table: dict[str, tuple[str, Callable[[str], Any]]]) -> dict:
    """Parameter overrides from the launch arguments of ``table`` that are not empty."""
    out = {}
    for name, (param, cast) in table.items():
        value = arg(name)
        if value:
            out[param] = cast(value)
    return out


def bridge_node(
    context: Any, executable: str, extra_overrides: Optional[dict] = None, own_identity: bool = False
) -> Any:
    """The bridge ``Node`` action with the parameter file, overrides, log level and DDS profile.

    ``own_identity``: the node keeps the identity of its parameter file (a recorder next to an
    operator_bridge must not join the room under the operator's identity).
    """
    from launch.substitutions import LaunchConfiguration
    from launch_ros.actions import Node

    def arg(name: str) -> str:
        return LaunchConfiguration(name).perform(context)

    table = {k: v for k, v in CONNECTION_OVERRIDES.items() if not (own_identity and k == 'identity')}
    overrides = overrides_from(arg, {**table, **(extra_overrides or {})})
    return Node(
        package='portal_bridge',
        executable=executable,
        name=executable,
        namespace=arg('namespace'),
        parameters=[arg('params_file'), overrides],
        arguments=['--ros-args', '--log-level', arg('log_level')],
        additional_env=profile_env(arg('dds_profile')),
        output='screen',
        emulate_tty=True,
    )


def find_livekit_server(start: Optional[Path] = None) -> Optional[str]:
    """A ``livekit-server`` executable: $PORTAL_BRIDGE_LIVEKIT_SERVER, PATH, or a source tree's .tools/bin.

    The last one is what ``make setup`` builds; it is looked for above the current directory and
    above this file (a ``--symlink-install`` workspace points back into the source tree).
    """
    env = os.environ.get('PORTAL_BRIDGE_LIVEKIT_SERVER')
    if env:  # a wrong variable is reported, not silently replaced by another server
        return env if os.access(env, os.X_OK) else None
    found = shutil.which('livekit-server')
    if found:
        return found
    for base in (start or Path.cwd(), Path(__file__).resolve()):
        for d in (base, *base.parents):
            candidate = d / '.tools' / 'bin' / 'livekit-server'
            if os.access(candidate, os.X_OK):
                return str(candidate)
    return None


def missing_rviz() -> Optional[str]:
    """Why rviz2 cannot start (one line), or None when it is installed."""
    try:
        from ament_index_python.packages import PackageNotFoundError, get_package_prefix
    except ImportError:
        return 'rviz:=true needs rviz2, and ament_index_python is not importable'
    try:
        get_package_prefix('rviz2')
    except (PackageNotFoundError, ValueError):
        return 'rviz:=true but rviz2 is not installed (apt install ros-$ROS_DISTRO-rviz2), or use rviz:=false'
    return None
