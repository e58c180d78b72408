"""Doctor checks of the ROS side: distro and Python, RMW, the Fast DDS profile, shared memory, discovery."""

from __future__ import annotations

import importlib
import importlib.metadata
import importlib.util
import os
import sys
from typing import Any, Mapping, Optional
import xml.etree.ElementTree as ET

from portal_bridge.ros.dds_profile import PROFILE_VARIABLES, fastdds_major

from .doctor_base import (
    BOTH_DISCOVERY_DISTROS,
    DISCOVERY_RANGES,
    DISTRO_PYTHON,
    FAIL,
    FASTDDS_DEFAULT_SEGMENT,
    LOCALHOST_ONLY_DISTROS,
    MIN_PROFILE_SEGMENT,
    MIN_SHM_FREE,
    OK,
    SHM_PATH,
    WARN,
    Context,
    Result,
    _ament_index_works,
    _ament_share,
    _first_line,
    _guess_distro_dirs,
    _mb,
    _worst,
    check,
    ros_distro,
)

__all__ = [
    'check_ros',
    'check_rmw',
    'fastdds_profile_status',
    'summarize_profile',
    'check_shm',
    'check_discovery',
]


@check('ros', 'ROS 2 and Python')
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


@check('rmw', 'RMW and Fast DDS profile')
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


@check('shm', 'Shared memory')
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


@check('discovery', 'Discovery')
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
