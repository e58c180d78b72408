"""Which Fast DDS profile a bridge process loads, through which environment variable.

Fast DDS 2.x (Humble: 2.6, Jazzy: 2.14) reads its XML profile only from
``FASTRTPS_DEFAULT_PROFILES_FILE``; Fast DDS 3.x (Kilted and later) reads
``FASTDDS_DEFAULT_PROFILES_FILE`` and warns about the old name. Setting the wrong one is silently
ignored, and camera images then hit the 512 KB shared-memory default. The version is told by
``rmw_fastrtps_cpp``'s package version (6.x Humble, 8.x Jazzy: Fast DDS 2; 9.x and later: 3),
which every ROS install and the PyPI wheels carry in the ament index.

The launch files apply a profile per process (``dds_profile:=large_messages|localhost|none``),
so nothing leaks into the user's shell.
"""

from __future__ import annotations

import os
import re
from typing import Optional

__all__ = ['PROFILES', 'fastdds_major', 'profile_path', 'profile_env', 'PROFILE_VARIABLES']

PROFILES = {
    'large_messages': 'fastdds_large_messages.xml',  # 32 MB SHM + UDP on every interface (multi-host)
    'localhost': 'fastdds_localhost.xml',  # 32 MB SHM + UDP on 127.0.0.1 only (one host)
}
PROFILE_VARIABLES = {2: 'FASTRTPS_DEFAULT_PROFILES_FILE', 3: 'FASTDDS_DEFAULT_PROFILES_FILE'}


def fastdds_major() -> Optional[int]:
    """2 or 3 from rmw_fastrtps_cpp's version in the ament index; None when it is not installed."""
    try:
        from ament_index_python.packages import PackageNotFoundError, get_package_share_directory
    except ImportError:
        return None
    try:
        share = get_package_share_directory('rmw_fastrtps_cpp')
    except (PackageNotFoundError, ValueError):
        return None
    try:
        with open(os.path.join(share, 'package.xml'), encoding='utf-8') as f:
            match = re.search(r'<version>(\d+)\.', f.read())
    except OSError:
        return None
    if match is None:
        return None
    return 3 if int(match.group(1)) >= 9 else 2


def profile_path(name: str, share: Optional[str] = None) -> Optional[str]:
    """The installed file of profile ``name`` (None for 'none' or '')."""
    if name in ('', 'none'):
        return None
    if name not in PROFILES:
        raise ValueError(f"dds_profile '{name}' must be one of {', '.join([*PROFILES, 'none'])}")
    if share is None:
        from ament_index_python.packages import get_package_share_directory

        share = get_package_share_directory('portal_bridge')
    return os.path.join(share, 'config', PROFILES[name])


def profile_env(name: str, share: Optional[str] = None, major: Optional[int] = None) -> dict[str, str]:
    """Environment for one process to load profile ``name``: the variable its Fast DDS reads.

    Unknown versions get both names (a 3.x then warns once, a 2.x reads its own).
    """
    path = profile_path(name, share)
    if path is None:
        return {}
    major = fastdds_major() if major is None else major
    if major in PROFILE_VARIABLES:
        return {PROFILE_VARIABLES[major]: path}
    return {var: path for var in PROFILE_VARIABLES.values()}
