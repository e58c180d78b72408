"""``doctor`` command: tell the user what is wrong in their environment, one line per check.

    ros2 run portal_bridge doctor
    ros2 run portal_bridge doctor --params-file config/robot_arm.yaml --json
    python -m portal_bridge.doctor --url wss://my-project.livekit.cloud

Each check is one small function in :data:`CHECKS` returning OK, WARN or FAIL and a one-line
message that says what to do. Exit status 0 when nothing FAILs, 1 otherwise. Secrets are never
printed: the credentials check reports which kind is present, and every line is scrubbed of the
secrets and tokens it knows of before it is printed.
"""

from __future__ import annotations

import argparse
import base64
from dataclasses import dataclass, field
import datetime
import importlib
import importlib.metadata
import importlib.util
import json
import os
from pathlib import Path
import re
import site
import subprocess
import sys
from typing import Any, Callable, Mapping, Optional, Sequence
import urllib.error
import urllib.parse
import urllib.request
import xml.etree.ElementTree as ET

import yaml

from portal_bridge.ros.dds_profile import PROFILE_VARIABLES, fastdds_major
from portal_bridge.ros.launch_helpers import find_livekit_server

__all__ = ['CHECKS', 'Context', 'Result', 'main', 'run_checks']

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
_JWT = re.compile(r'eyJ[A-Za-z0-9_-]*\.eyJ[A-Za-z0-9_-]*\.[A-Za-z0-9_-]+')


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


# --- checks -----------------------------------------------------------------------------------


def check_settings(ctx: Context) -> Result:
    where = f'{_display_url(ctx.url)} (from {ctx.url_source})'
    creds = f'{ctx.credentials_file} (from {ctx.credentials_source})' if ctx.credentials_file else 'environment'
    contract = f'{ctx.contract_file} (from {ctx.contract_source})' if ctx.contract_file else 'none found'
    line = f'livekit_url {where}; credentials {creds}; contract_file {contract}'
    if ctx.params_error:
        return Result(FAIL, f'{ctx.params_error}; using {line}')
    return Result(OK, line)


def check_ros(ctx: Context) -> Result:
    python = '.'.join(map(str, sys.version_info[:3]))
    distro, how = ros_distro(ctx.environ)
    try:
        rclpy = importlib.import_module('rclpy')
    except Exception as exc:  # ImportError, or a shared library that does not load
        guess = distro or ('/'.join(_guess_distro_dirs()) or '<distro>')
        hint = ''
        wanted = DISTRO_PYTHON.get(distro or '')
        if wanted and wanted != f'{sys.version_info[0]}.{sys.version_info[1]}':
            hint = f' (ROS 2 {distro} packages are built for Python {wanted}; this is Python {python})'
        return Result(
            FAIL,
            f'rclpy does not import ({_first_line(exc)}): source /opt/ros/{guess}/setup.bash, then the '
            f'workspace install/setup.bash, in this shell{hint}',
        )
    where = os.path.dirname(os.path.dirname(rclpy.__file__ or ''))
    if ctx.environ.get('ROS_DISTRO'):
        installed, how = ros_distro({})
        if installed and installed != distro:
            return Result(
                WARN,
                f"ROS_DISTRO={distro} but {how} is {installed}'s (rclpy from {where}): two ROS installs sourced? "
                'open a fresh shell and source one',
            )
        return Result(OK, f'ROS 2 {distro}, Python {python}, rclpy from {where}')
    name = distro or 'unknown distro'
    return Result(OK, f'ROS_DISTRO unset ({how}: {name}), Python {python}, rclpy from {where}')


def check_rmw(ctx: Context) -> Result:
    env = ctx.environ
    rmw = env.get('RMW_IMPLEMENTATION', '').strip()
    name = rmw or 'rmw_fastrtps_cpp'
    shown = f'RMW_IMPLEMENTATION={rmw}' if rmw else 'RMW_IMPLEMENTATION unset (rmw_fastrtps_cpp)'
    if rmw and _ament_index_works() and _ament_share(rmw) is None:
        return Result(FAIL, f'{shown} is not installed: unset it or install that RMW (e.g. ros-<distro>-{rmw})')
    if name not in ('rmw_fastrtps_cpp', 'rmw_fastrtps_dynamic_cpp'):
        return Result(OK, f'{shown}: not Fast DDS, so the Fast DDS profile checks do not apply')
    status, text = fastdds_profile_status(env, fastdds_major())
    return Result(status, f'{shown}, {text}')


def fastdds_profile_status(env: Mapping[str, str], major: Optional[int]) -> tuple[str, str]:
    """Which profile variable this Fast DDS reads, whether it is set, and what the profile gives."""
    old, new = PROFILE_VARIABLES[2], PROFILE_VARIABLES[3]
    right = PROFILE_VARIABLES.get(major) if major is not None else None
    label = f'Fast DDS {major}.x' if right else 'Fast DDS (version unknown: rmw_fastrtps_cpp not in the ament index)'
    values = {var: env[var] for var in (old, new) if env.get(var)}
    notes: list[str] = []
    status = OK
    if not values:
        wanted = right or f'{old} (Fast DDS 2.x) or {new} (3.x)'
        return WARN, (
            f'{label}, no profile ({wanted} unset): the default 512 KB shared-memory segment loses or slows '
            f'camera images over 512 KB; export {wanted}=<portal_bridge share>/config/fastdds_large_messages.xml '
            '(the launch files set it per process)'
        )
    if major == 2:
        if old not in values:
            return WARN, (
                f'{label} reads only {old}; {new} is set and silently ignored, so images over 512 KB are lost '
                f'or slow: export {old}={values[new]}'
            )
        used = old
        if new in values and values[new] != values[old]:
            notes.append(f'{new} (a different file) is ignored')
    elif major == 3:
        if new in values:
            used = new
            if old in values and values[old] != values[new]:
                notes.append(f'{old} (a different file) is ignored')
        else:
            used = old
            status = WARN
            notes.append(
                f'{old} is the Fast DDS 2.x name: rmw_fastrtps still honours it with a deprecation warning; '
                f'rename it to {new}'
            )
    else:
        used = new if new in values else old
        if len(values) == 2 and values[old] != values[new]:
            status = WARN
            notes.append('both variables name different files: which one applies depends on the Fast DDS version')
    path = values[used]
    if not os.path.isfile(path):
        return FAIL, f'{label}, {used}={path} does not exist: Fast DDS then logs an error and uses its defaults'
    profile_status, summary = summarize_profile(path)
    return _worst(status, profile_status), '; '.join([f'{label}, {used}={path}: {summary}', *notes])


def _local(tag: Any) -> str:
    return tag.rsplit('}', 1)[-1] if isinstance(tag, str) else ''


def _child(elem: ET.Element, name: str) -> Optional[ET.Element]:
    return next((c for c in elem if _local(c.tag) == name), None)


def _text(elem: ET.Element, name: str) -> str:
    child = _child(elem, name)
    return (child.text or '').strip() if child is not None else ''


def summarize_profile(path: str) -> tuple[str, str]:
    """The shared-memory segment and UDP reach of a Fast DDS XML profile's default participant."""
    try:
        root = ET.parse(path).getroot()
    except (ET.ParseError, OSError) as exc:
        return FAIL, f'not a readable XML profile ({exc})'
    descriptors = {}
    for desc in (e for e in root.iter() if _local(e.tag) == 'transport_descriptor'):
        addresses = [(a.text or '').strip() for a in desc.iter() if _local(a.tag) == 'address']
        addresses += [a.get('name', '') for a in desc.iter() if _local(a.tag) == 'interface']
        descriptors[_text(desc, 'transport_id')] = (_text(desc, 'type'), _text(desc, 'segment_size'), addresses)
    participant = next(
        (e for e in root.iter() if _local(e.tag) == 'participant' and e.get('is_default_profile') == 'true'), None
    )
    if participant is None:
        return WARN, 'no participant profile has is_default_profile="true", so ROS nodes do not use this file'
    used = [(t.text or '').strip() for t in participant.iter() if _local(t.tag) == 'transport_id']
    builtin_elem = next((e for e in participant.iter() if _local(e.tag) == 'useBuiltinTransports'), None)
    builtin = builtin_elem is None or (builtin_elem.text or '').strip().lower() != 'false'
    transports = [descriptors[t] for t in used if t in descriptors]
    shm = [d for d in transports if d[0] == 'SHM']
    udp = [d for d in transports if d[0] in ('UDPv4', 'UDPv6')]
    status, parts = OK, []
    if shm:
        segment = max(int(d[1]) if d[1].isdigit() else FASTDDS_DEFAULT_SEGMENT for d in shm)
        parts.append(f'SHM segment {_mb(segment)}')
        if segment < MIN_PROFILE_SEGMENT:
            status = WARN
            parts[-1] += f' (below {_mb(MIN_PROFILE_SEGMENT)}: camera images may not fit)'
    elif builtin:
        status = WARN
        parts.append('SHM left at the default 512 KB segment: camera images over 512 KB are lost or slow')
    else:
        status = WARN
        parts.append('no shared-memory transport: images between processes go over UDP (slow)')
    loopback = {'127.0.0.1', 'localhost', 'lo', '::1'}
    if not builtin and not udp:
        parts.append('no UDP transport: that process cannot talk to other hosts')
    elif not builtin and all(d[2] and set(d[2]) <= loopback for d in udp):
        parts.append('UDP confined to 127.0.0.1: that process cannot talk to other hosts')
    else:
        parts.append('UDP on every interface (other hosts reachable)')
    return status, ', '.join(parts)


def check_shm(ctx: Context) -> Result:
    if not os.path.isdir(SHM_PATH):
        return Result(
            WARN,
            f'{SHM_PATH} does not exist: Fast DDS cannot use shared memory and sends images over UDP; '
            'mount a tmpfs there (containers: --shm-size=512m or --ipc=host)',
        )
    st = os.statvfs(SHM_PATH)
    total, free = st.f_blocks * st.f_frsize, st.f_bavail * st.f_frsize
    if free < MIN_SHM_FREE:
        return Result(
            WARN,
            f'{SHM_PATH}: {_mb(free)} free of {_mb(total)}, below {_mb(MIN_SHM_FREE)}: Fast DDS segments (32 MB '
            'each with the portal_bridge profiles) may not fit; remove stale /dev/shm/fastrtps_* files of dead '
            'processes, or give the container more (docker run --shm-size=512m)',
        )
    return Result(OK, f'{SHM_PATH}: {_mb(free)} free of {_mb(total)}')


def check_discovery(ctx: Context) -> Result:
    env = ctx.environ
    rng = env.get('ROS_AUTOMATIC_DISCOVERY_RANGE', '').strip()
    only = env.get('ROS_LOCALHOST_ONLY', '').strip()
    distro, how = ros_distro(env)
    shown = ', '.join(
        [f'ROS_AUTOMATIC_DISCOVERY_RANGE={rng}' if rng else '', f'ROS_LOCALHOST_ONLY={only}' if only else '']
    ).strip(', ')
    shown = shown or 'no discovery variable set'
    status, parts = OK, []
    if rng and rng.upper() not in DISCOVERY_RANGES:
        status = WARN
        parts.append(f'ROS_AUTOMATIC_DISCOVERY_RANGE={rng} is not one of {", ".join(DISCOVERY_RANGES)}')
    if distro is None:
        status = WARN
        parts.append(
            f'cannot tell the distro ({how}): Humble reads ROS_LOCALHOST_ONLY, Iron and later '
            f'ROS_AUTOMATIC_DISCOVERY_RANGE; {shown}'
        )
    elif distro in LOCALHOST_ONLY_DISTROS:
        if only == '1':
            parts.append(f'{distro} reads ROS_LOCALHOST_ONLY=1: discovery on this host only')
        elif rng:
            status = WARN
            parts.append(
                f'{distro} reads only ROS_LOCALHOST_ONLY; ROS_AUTOMATIC_DISCOVERY_RANGE={rng} is ignored '
                '(for this host only: export ROS_LOCALHOST_ONLY=1)'
            )
        else:
            parts.append(f'{distro} reads ROS_LOCALHOST_ONLY, unset: discovery on the subnet')
    else:
        effective = (rng or 'SUBNET').upper()
        if distro in BOTH_DISCOVERY_DISTROS and only == '1':
            status = WARN
            parts.append(
                f'{distro} honours the deprecated ROS_LOCALHOST_ONLY=1 over ROS_AUTOMATIC_DISCOVERY_RANGE: '
                'unset it and export ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST'
            )
        elif only and not rng and distro not in BOTH_DISCOVERY_DISTROS:
            status = WARN
            parts.append(
                f'{distro} ignores ROS_LOCALHOST_ONLY={only} and discovers on the subnet: '
                'export ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST instead'
            )
        else:
            ignored = ' (ROS_LOCALHOST_ONLY is ignored)' if only else ''
            parts.append(f'{distro} reads ROS_AUTOMATIC_DISCOVERY_RANGE: {effective}{ignored}')
    domain = env.get('ROS_DOMAIN_ID', '').strip()
    if domain and not (domain.isdigit() and 0 <= int(domain) <= 232):
        parts.insert(0, f'ROS_DOMAIN_ID={domain} is not an integer 0..232: nodes fail to start')
        return Result(FAIL, '; '.join(parts))
    parts.append(f'ROS_DOMAIN_ID={domain}' if domain else 'ROS_DOMAIN_ID unset (0)')
    return Result(status, '; '.join(parts))


def _install_livekit_hint(ctx: Context) -> str:
    distro, _ = ros_distro(ctx.environ)
    numpy_pin = ' "numpy<2"' if distro == 'humble' else ''
    return (
        f'{PIP_LIVEKIT}{numpy_pin} in a venv created with --system-site-packages '
        '(python3 -m venv --system-site-packages ~/portal-venv), so rclpy and cv_bridge still come from ROS'
    )


def check_livekit(ctx: Context) -> Result:
    for module in ('livekit.rtc', 'livekit.api'):
        try:
            importlib.import_module(module)
        except Exception as exc:
            return Result(FAIL, f'{module} does not import ({_first_line(exc)}): {_install_livekit_hint(ctx)}')
    status, parts = OK, []
    for dist, (low, high) in TESTED_RANGES.items():
        version = _dist_version(dist)
        if version is None:
            status = WARN
            parts.append(f'{dist} version unknown')
            continue
        if low <= _release(version) < high:
            parts.append(f'{dist} {version}')
        else:
            status = WARN
            tested = f'>={".".join(map(str, low))},<{".".join(map(str, high))}'
            parts.append(f'{dist} {version} is outside the tested range {tested}')
    line = ', '.join(parts)
    if status != OK:
        line += f'; to get the tested versions: {PIP_LIVEKIT}'
    return Result(status, line)


def _pip_numpy_fix() -> str:
    in_venv = sys.prefix != sys.base_prefix
    where = f'{sys.prefix}/bin/pip' if in_venv else 'pip (in a venv created with --system-site-packages)'
    return f'{where} install "numpy<2"'


def _import_in_subprocess(module: str) -> tuple[int, str]:
    try:
        run = subprocess.run(
            [sys.executable, '-c', f'import {module}'], capture_output=True, text=True, timeout=60, check=False
        )
    except subprocess.TimeoutExpired:
        return -1, f'import {module} hung for 60 s'
    return run.returncode, run.stderr


def _user_site_shadow(numpy_file: str) -> Optional[str]:
    """Another sys.path entry holding numpy, when the numpy in use comes from the user site (~/.local)."""
    user = site.USER_SITE
    if not user:
        return None
    user = os.path.realpath(user)
    home = os.path.realpath(os.path.dirname(os.path.dirname(os.path.abspath(numpy_file))))
    if home != user:
        return None
    for entry in sys.path:
        if entry and os.path.realpath(entry) != user and os.path.isfile(os.path.join(entry, 'numpy', '__init__.py')):
            return entry
    return None


def check_numpy(ctx: Context) -> Result:
    try:
        numpy = importlib.import_module('numpy')
    except Exception as exc:
        return Result(FAIL, f'numpy does not import ({_first_line(exc)}): {_pip_numpy_fix()}')
    version = numpy.__version__
    status = OK
    parts = [f'numpy {version} from {os.path.dirname(os.path.dirname(numpy.__file__ or ""))}']
    shadowed = _user_site_shadow(numpy.__file__ or '')
    if shadowed:
        status = WARN
        parts.append(
            f'it is a pip --user install that shadows the numpy in {shadowed}, the usual cause of cv_bridge/OpenCV '
            'import failures: pip uninstall --user numpy (or export PYTHONNOUSERSITE=1)'
        )
    for module in ('cv_bridge', 'cv2'):
        try:
            found = importlib.util.find_spec(module) is not None
        except (ImportError, ValueError):
            found = True  # present but broken: let the import below say how
        if not found:
            parts.append(f'{module} not installed')
            continue
        code, stderr = _import_in_subprocess(module)
        if any(marker in stderr for marker in NUMPY_ABI_MARKERS):
            status = FAIL
            parts.append(f'{module} was built for NumPy 1.x and cannot run with numpy {version}: {_pip_numpy_fix()}')
        elif code != 0:
            status = FAIL
            last = next((ln for ln in reversed(stderr.strip().splitlines()) if ln.strip()), '')
            how = f'crashed (signal {-code})' if code < 0 else f'fails ({last or f"exit {code}"})'
            parts.append(f'import {module} {how}; if numpy 2 is the cause: {_pip_numpy_fix()}')
        else:
            parts.append(f'{module} imports')
    return Result(status, ', '.join(parts))


def check_msgs(ctx: Context) -> Result:
    try:
        msg = importlib.import_module('portal_bridge_msgs.msg')
    except Exception as exc:
        return Result(
            FAIL,
            f'portal_bridge_msgs does not import ({_first_line(exc)}): build it (colcon build --packages-up-to '
            'portal_bridge) and source the workspace install/setup.bash',
        )
    return Result(OK, f'portal_bridge_msgs from {os.path.dirname(os.path.dirname(msg.__file__ or ""))}')


def default_contract_path() -> str:
    share = _ament_share('portal_bridge')
    if share is not None:
        return os.path.join(share, 'config', 'portal.yaml')
    return os.path.normpath(os.path.join(os.path.dirname(__file__), '..', 'config', 'portal.yaml'))


def check_contract(ctx: Context) -> Result:
    path = ctx.contract_file or default_contract_path()
    try:
        from portal_bridge.portal.wire.contract import ContractError, WireContract
    except Exception as exc:
        return Result(WARN, f'cannot load the contract code ({_first_line(exc)}): see the livekit check')
    try:
        fp = WireContract.from_yaml_file(path).fingerprints()
    except ContractError as exc:
        return Result(FAIL, f'{path}: {_first_line(exc)} (ros2 run portal_bridge contract {path})')
    return Result(OK, f'{path}: state {fp["state"]}, action {fp["action"]} (every peer must show the same)')


def _http_url(url: str) -> str:
    parts = urllib.parse.urlsplit(url)
    scheme = {'ws': 'http', 'wss': 'https', 'http': 'http', 'https': 'https'}.get(parts.scheme.lower())
    if scheme is None or not parts.hostname:
        raise ValueError(f'livekit_url {_display_url(url)} must look like ws://host:port or wss://host')
    netloc = parts.netloc.rsplit('@', 1)[-1]  # never user:password
    return urllib.parse.urlunsplit((scheme, netloc, '/', '', ''))


def _display_url(url: str) -> str:
    """``url`` without user info, query or fragment (a token may ride in any of them)."""
    parts = urllib.parse.urlsplit(url)
    return urllib.parse.urlunsplit((parts.scheme, parts.netloc.rsplit('@', 1)[-1], parts.path, '', ''))


def check_server(ctx: Context) -> Result:
    try:
        http_url = _http_url(ctx.url)
    except ValueError as exc:
        return Result(FAIL, str(exc))
    host = urllib.parse.urlsplit(http_url).hostname or ''
    handlers = [urllib.request.ProxyHandler({})] if host in ('127.0.0.1', 'localhost', '::1') else []
    opener = urllib.request.build_opener(*handlers)
    shown = _display_url(ctx.url)
    try:
        with opener.open(http_url, timeout=HTTP_TIMEOUT_S) as response:
            body = response.read(64).strip()
    except urllib.error.HTTPError as exc:
        return Result(
            WARN, f'{http_url} answers HTTP {exc.code}, not LiveKit\'s "OK": is {shown} the LiveKit port (7880)?'
        )
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, 'reason', exc)
        return Result(
            FAIL,
            f'LiveKit not reachable at {http_url} ({reason}): start it (livekit-server --dev, or '
            f'ros2 launch portal_bridge demo.launch.py) or fix livekit_url ({shown})',
        )
    if body != b'OK':
        return Result(WARN, f'{http_url} answers, but not with LiveKit\'s "OK": is {shown} a LiveKit server?')
    return Result(OK, f'LiveKit answers at {http_url} (livekit_url {shown})')


def _token_claims(token: str) -> dict:
    try:
        payload = token.split('.')[1]
        claims = json.loads(base64.urlsafe_b64decode(payload + '=' * (-len(payload) % 4)))
    except (IndexError, ValueError):
        return {}
    return claims if isinstance(claims, dict) else {}


def _safe_credentials_error(message: str, path: str) -> str:
    """A load_credentials error that cannot quote the file: YAML errors and unknown keys may show a secret."""
    if path and 'not valid YAML' in message:
        return f'credentials_file {path} is not valid YAML'
    if path and 'unknown key' in message:
        return (
            f'credentials_file {path} has a key other than token, api_key, api_secret (or LIVEKIT_TOKEN, '
            'LIVEKIT_API_KEY, LIVEKIT_API_SECRET); not shown, in case it is a secret'
        )
    return message


def check_credentials(ctx: Context) -> Result:
    env = ctx.environ
    ctx.secrets.extend(v for v in (env.get('LIVEKIT_TOKEN'), env.get('LIVEKIT_API_SECRET')) if v)
    try:
        from portal_bridge.ros.credentials import CredentialsError, explain_token, load_credentials
    except Exception as exc:
        present = [v for v in ('LIVEKIT_TOKEN', 'LIVEKIT_API_KEY', 'LIVEKIT_API_SECRET') if env.get(v)]
        return Result(
            WARN,
            f'cannot inspect credentials ({_first_line(exc)}: see the livekit check); '
            f'set in the environment: {", ".join(present) or "none"}',
        )
    path = ctx.credentials_file
    try:
        creds = load_credentials(path, env)
    except CredentialsError as exc:
        key, secret = bool(env.get('LIVEKIT_API_KEY')), bool(env.get('LIVEKIT_API_SECRET'))
        if not path and key != secret:
            have, lack = ('LIVEKIT_API_KEY', 'LIVEKIT_API_SECRET') if key else ('LIVEKIT_API_SECRET', 'LIVEKIT_API_KEY')
            return Result(FAIL, f'{have} is set but {lack} is not: export both (or LIVEKIT_TOKEN)')
        return Result(FAIL, _safe_credentials_error(str(exc), path))
    ctx.secrets.extend(v for v in (creds.token, creds.api_secret) if v)
    status, notes = OK, []
    if path:
        where = f'credentials_file {path}'
        try:
            if os.stat(os.path.expanduser(path)).st_mode & 0o077:
                status = WARN
                notes.append(f'{path} is readable by other users: chmod 600 {path}')
        except OSError:
            pass
    elif creds.token:
        where = 'LIVEKIT_TOKEN'
        if env.get('LIVEKIT_API_KEY') or env.get('LIVEKIT_API_SECRET'):
            notes.append('it takes precedence over LIVEKIT_API_KEY/LIVEKIT_API_SECRET')
    else:
        where = 'LIVEKIT_API_KEY and LIVEKIT_API_SECRET'
    if creds.token:
        problem = explain_token(creds.token, now=ctx.now())
        if problem:
            return Result(FAIL, f'token from {where}: {problem}')
        claims = _token_claims(creds.token)
        video = claims.get('video') or {}
        line = f'token from {where} (identity {claims.get("sub", "?")!r}, room {video.get("room", "?")!r}'
        exp = claims.get('exp')
        if isinstance(exp, (int, float)):
            left = exp - ctx.now().timestamp()
            line += f', expires in {int(left // 3600)} h {int(left % 3600 // 60)} min'
        line += ')'
    else:
        line = f'API key and secret from {where} (the bridge mints its own tokens)'
    return Result(status, '; '.join([line, *notes]))


def check_livekit_server(ctx: Context) -> Result:
    found = find_livekit_server()
    if found is None:
        return Result(
            WARN,
            'no livekit-server for the demo (ros2 launch portal_bridge demo.launch.py): put one on PATH, set '
            'PORTAL_BRIDGE_LIVEKIT_SERVER, or run make setup in the source tree (not needed with a remote server)',
        )
    return Result(OK, f'livekit-server at {found}')


CHECKS: tuple[tuple[str, str, Callable[[Context], Result]], ...] = (
    ('settings', 'Settings', check_settings),
    ('ros', 'ROS 2 and Python', check_ros),
    ('rmw', 'RMW and Fast DDS profile', check_rmw),
    ('shm', 'Shared memory', check_shm),
    ('discovery', 'Discovery', check_discovery),
    ('livekit', 'LiveKit SDK', check_livekit),
    ('numpy', 'numpy and cv_bridge/OpenCV', check_numpy),
    ('msgs', 'portal_bridge_msgs', check_msgs),
    ('contract', 'Wire contract', check_contract),
    ('server', 'LiveKit server', check_server),
    ('credentials', 'Credentials', check_credentials),
    ('livekit_server', 'livekit-server (demo)', check_livekit_server),
)


def scrub(text: str, secrets: Sequence[str]) -> str:
    """``text`` with every JWT and every known secret blanked.

    Values shorter than 12 characters are left alone: a dev-mode secret such as ``secret`` would blank
    ordinary words (a production LiveKit secret has at least 32 characters).
    """
    text = _JWT.sub('<token>', text)
    for secret in sorted({s for s in secrets if s and len(s) >= 12}, key=len, reverse=True):
        text = text.replace(secret, '<redacted>')
    return text


def run_checks(ctx: Context) -> list[dict[str, str]]:
    rows = []
    for key, title, check in CHECKS:
        try:
            result = check(ctx)
        except Exception as exc:  # a broken check reports itself, the others still run
            result = Result(FAIL, f'the check itself failed: {type(exc).__name__}: {_first_line(exc)}')
        rows.append({'check': key, 'title': title, 'status': result.status, 'message': result.message})
    for row in rows:  # after all checks: the credentials check adds what it loaded
        row['message'] = scrub(row['message'], ctx.secrets)
    return rows


def read_params_file(path: str) -> dict[str, str]:
    """livekit_url, credentials_file and contract_file from a ROS parameters file (first node that sets each)."""
    try:
        data = yaml.safe_load(Path(path).expanduser().read_text(encoding='utf-8'))
    except OSError as exc:
        raise ValueError(f'cannot read params file {path}: {exc.strerror}') from None
    except yaml.YAMLError as exc:
        raise ValueError(f'params file {path} is not valid YAML ({_first_line(exc)})') from None
    sections: list[dict] = []

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            for key, value in node.items():
                if key == 'ros__parameters' and isinstance(value, dict):
                    sections.append(value)
                else:
                    walk(value)

    walk(data)
    if not sections:
        raise ValueError(f'params file {path} has no ros__parameters section')
    found: dict[str, str] = {}
    for params in sections:
        for key in ('livekit_url', 'credentials_file', 'contract_file'):
            if key not in found and params.get(key) not in (None, ''):
                found[key] = str(params[key])
    return found


def context_from_args(args: argparse.Namespace, environ: Optional[Mapping[str, str]] = None) -> Context:
    env = os.environ if environ is None else environ
    ctx = Context(environ=env, params_file=args.params_file or '')
    params: dict[str, str] = {}
    if args.params_file:
        try:
            params = read_params_file(args.params_file)
        except ValueError as exc:
            ctx.params_error = str(exc)
    sources = [
        (args.url, '--url'),
        (params.get('livekit_url'), f'params file {args.params_file}'),
        (env.get('LIVEKIT_URL'), 'LIVEKIT_URL'),
        (DEFAULT_URL, 'default'),
    ]
    ctx.url, ctx.url_source = next((v, s) for v, s in sources if v)
    if args.credentials_file:
        ctx.credentials_file, ctx.credentials_source = args.credentials_file, '--credentials-file'
    elif params.get('credentials_file'):
        ctx.credentials_file, ctx.credentials_source = params['credentials_file'], f'params file {args.params_file}'
    if params.get('contract_file'):
        ctx.contract_file, ctx.contract_source = params['contract_file'], f'params file {args.params_file}'
    else:
        ctx.contract_file, ctx.contract_source = default_contract_path(), 'default'
    return ctx


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(
        prog='doctor',
        description='Check the environment portal_bridge runs in: ROS 2, Fast DDS profile, shared memory, '
        'discovery, the LiveKit SDK, numpy vs cv_bridge, the messages, the server and the credentials '
        '(never printed). Exit status 1 when a check FAILs.',
    )
    parser.add_argument(
        '--url', default=None, help=f'LiveKit server URL (default: params file, else LIVEKIT_URL, else {DEFAULT_URL})'
    )
    parser.add_argument('--credentials-file', default=None, help='credentials file the bridge would read')
    parser.add_argument(
        '--params-file', default=None, help='robot/operator params file: livekit_url, credentials_file, contract_file'
    )
    parser.add_argument('--json', action='store_true', help='machine-readable output')
    args = parser.parse_args(argv)
    ctx = context_from_args(args)
    rows = run_checks(ctx)
    failed = any(r['status'] == FAIL for r in rows)
    if args.json:
        print(json.dumps({'ok': not failed, 'checks': rows}, indent=2))
    else:
        width = max(len(r['title']) for r in rows)
        for r in rows:
            print(f'[{r["status"]:^4}] {r["title"]:<{width}}  {r["message"]}')
        counts = {s: sum(r['status'] == s for r in rows) for s in (OK, WARN, FAIL)}
        print(f'{counts[OK]} OK, {counts[WARN]} WARN, {counts[FAIL]} FAIL')
    return 1 if failed else 0


if __name__ == '__main__':
    sys.exit(main())
