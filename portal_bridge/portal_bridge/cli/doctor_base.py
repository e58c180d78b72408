"""What every doctor check shares: the result type, the context it looks at, common helpers."""

from __future__ import annotations

from dataclasses import dataclass, field
import datetime
import importlib
import importlib.metadata
import importlib.util
import os
from pathlib import Path
import re
from typing import Callable, Mapping, Optional

__all__ = [
    'REGISTRY',
    'check',
    'Result',
    'Context',
    'ros_distro',
    'DEFAULT_URL',
    'HTTP_TIMEOUT_S',
    'SHM_PATH',
    'MIN_SHM_FREE',
    'FASTDDS_DEFAULT_SEGMENT',
    'MIN_PROFILE_SEGMENT',
    'TESTED_RANGES',
    'PIP_LIVEKIT',
    'RCLPY_MAJOR_DISTRO',
    'DISTRO_PYTHON',
    'LOCALHOST_ONLY_DISTROS',
    'BOTH_DISCOVERY_DISTROS',
    'DISCOVERY_RANGES',
    'NUMPY_ABI_MARKERS',
    'OK',
    'WARN',
    'FAIL',
]

OK, WARN, FAIL = 'OK', 'WARN', 'FAIL'
_RANK = {OK: 0, WARN: 1, FAIL: 2}

DEFAULT_URL = 'ws://127.0.0.1:7880'
HTTP_TIMEOUT_S = 3.0
SHM_PATH = '/dev/shm'
MIN_SHM_FREE = 64 * 1024 * 1024
FASTDDS_DEFAULT_SEGMENT = 512 * 1024
# A 1280x720 rgb8 image is 2.7 MB; below this a segment cannot hold one with room to spare.
MIN_PROFILE_SEGMENT = 4 * 1024 * 1024
# What requirements/livekit.txt pins: the range the suite runs against.
TESTED_RANGES = {'livekit': ((1, 2, 1), (1, 3)), 'livekit-api': ((1, 2, 2), (1, 3))}
PIP_LIVEKIT = 'pip install "livekit>=1.2.1,<1.3" "livekit-api>=1.2.2,<1.3"'
# rclpy's major version per distro, to tell the distro when ROS_DISTRO is unset (pip-installed ROS).
RCLPY_MAJOR_DISTRO = {3: 'humble', 4: 'iron', 7: 'jazzy', 9: 'kilted'}
DISTRO_PYTHON = {'humble': '3.10', 'iron': '3.10', 'jazzy': '3.12', 'kilted': '3.12'}
LOCALHOST_ONLY_DISTROS = ('foxy', 'galactic', 'humble')  # read ROS_LOCALHOST_ONLY only
BOTH_DISCOVERY_DISTROS = ('iron', 'jazzy')  # read the range; honour ROS_LOCALHOST_ONLY=1 (deprecated)
DISCOVERY_RANGES = ('OFF', 'LOCALHOST', 'SUBNET', 'SYSTEM_DEFAULT')
NUMPY_ABI_MARKERS = ('compiled using NumPy 1.x', '_ARRAY_API not found', 'numpy.core.multiarray failed to import')


@dataclass(frozen=True)
class Result:
    status: str
    message: str


@dataclass
class Context:
    """What the checks look at: the environment and the settings the bridge would use."""

    environ: Mapping[str, str] = field(default_factory=lambda: os.environ)
    url: str = DEFAULT_URL
    url_source: str = 'default'
    credentials_file: str = ''
    credentials_source: str = 'environment'
    contract_file: str = ''
    contract_source: str = 'default'
    params_file: str = ''
    params_error: Optional[str] = None
    now: Callable[[], datetime.datetime] = field(default=lambda: datetime.datetime.now(datetime.timezone.utc))
    secrets: list[str] = field(default_factory=list)  # scrubbed from every line printed


def _worst(*statuses: str) -> str:
    return max(statuses, key=_RANK.__getitem__, default=OK)


def _mb(n: float) -> str:
    return f'{n / (1024 * 1024):.0f} MB' if n >= 1024 * 1024 else f'{n / 1024:.0f} KB'


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


def _ament_share(package: str) -> Optional[str]:
    try:
        from ament_index_python.packages import PackageNotFoundError, get_package_share_directory
    except ImportError:
        return None
    try:
        return get_package_share_directory(package)
    except (PackageNotFoundError, ValueError):
        return None


def _ament_index_works() -> bool:
    try:
        from ament_index_python.packages import get_packages_with_prefixes
    except ImportError:
        return False
    return bool(get_packages_with_prefixes())


def _package_version(package: str) -> Optional[str]:
    """A ROS package's version from its package.xml in the ament index, else its Python distribution."""
    share = _ament_share(package)
    if share is not None:
        try:
            match = re.search(r'<version>([^<]+)</version>', Path(share, 'package.xml').read_text(encoding='utf-8'))
        except OSError:
            match = None
        if match:
            return match.group(1).strip()
    return _dist_version(package)


def _dist_version(dist: str) -> Optional[str]:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return None


def _release(version: str) -> tuple[int, ...]:
    match = re.match(r'(\d+(?:\.\d+)*)', version)
    return tuple(int(p) for p in match.group(1).split('.')) if match else ()


def ros_distro(environ: Mapping[str, str]) -> tuple[Optional[str], str]:
    """(distro, how it was told): ROS_DISTRO, else rclpy's version; (None, why) when neither is known."""
    distro = environ.get('ROS_DISTRO', '').strip().lower()
    if distro:
        return distro, 'ROS_DISTRO'
    version = _package_version('rclpy')
    if version is None:
        return None, 'ROS_DISTRO unset and rclpy not found'
    major = _release(version)[:1]
    name = RCLPY_MAJOR_DISTRO.get(major[0]) if major else None
    return name, f'rclpy {version}'


def _guess_distro_dirs() -> list[str]:
    try:
        return sorted(p.name for p in Path('/opt/ros').iterdir() if (p / 'setup.bash').is_file())
    except OSError:
        return []


# Every check by key: (title, function). Filled by @check where each check is defined.
REGISTRY: dict[str, tuple[str, Callable[[Context], Result]]] = {}


def check(key: str, title: str) -> Callable[[Callable[[Context], Result]], Callable[[Context], Result]]:
    """Register a check under ``key`` (its name in --json output) with the title it prints."""

    def register(fn: Callable[[Context], Result]) -> Callable[[Context], Result]:
        REGISTRY[key] = (title, fn)
        return fn

    return register
