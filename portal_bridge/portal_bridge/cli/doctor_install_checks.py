"""Doctor checks of the Python install: the LiveKit SDK, numpy against cv_bridge, the messages."""

from __future__ import annotations

import importlib
import importlib.metadata
import importlib.util
import os
import site
import subprocess
import sys
from typing import Optional

from .doctor_base import (
    FAIL,
    NUMPY_ABI_MARKERS,
    OK,
    PIP_LIVEKIT,
    TESTED_RANGES,
    WARN,
    Context,
    Result,
    _dist_version,
    _first_line,
    _release,
    check,
    ros_distro,
)

__all__ = [
    'check_livekit',
    'check_numpy',
    'check_msgs',
    'check_datasets',
]


def _install_livekit_hint(ctx: Context) -> str:
    distro, _ = ros_distro(ctx.environ)
    numpy_pin = ' "numpy<2"' if distro == 'humble' else ''
    return (
        f'{PIP_LIVEKIT}{numpy_pin} in a venv created with --system-site-packages '
        '(python3 -m venv --system-site-packages ~/portal-venv), so rclpy and cv_bridge still come from ROS'
    )


@check('livekit', 'LiveKit SDK')
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


@check('numpy', 'numpy and cv_bridge/OpenCV')
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


@check('msgs', 'portal_bridge_msgs')
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


@check('console', 'browser console page (console node)')
def check_console(ctx: Context) -> Result:
    """Only the console node needs the built page, so a missing one is a warning."""
    from ..console.server import missing_bundle_files
    from ..nodes.console import default_web_root

    root = default_web_root()
    missing = missing_bundle_files(root)
    if missing:
        return Result(
            WARN,
            f'not built ({", ".join(missing)} missing in {root}); the console node answers 503 until it is: '
            'cd portal_bridge/web/console && npm ci && npm run build, then rebuild the package',
        )
    return Result(OK, f'built in {root}')


@check('datasets', 'dataset libraries (recorder, bag_to_lerobot)')
def check_datasets(ctx: Context) -> Result:
    """Only the recorder and the dataset commands need them, so a missing one is a warning."""
    found, missing = [], []
    for module, dist in (('pyarrow', 'pyarrow'), ('av', 'av'), ('rosbags', 'rosbags'), ('matplotlib', 'matplotlib')):
        try:
            importlib.import_module(module)
        except Exception as exc:
            missing.append(f'{module} ({_first_line(exc)})')
            continue
        found.append(f'{dist} {_dist_version(dist) or "?"}')
    if missing:
        return Result(
            WARN,
            f'not importable: {", ".join(missing)}; the recorder, bag_to_lerobot and shadow_report need them: '
            'pip install -r requirements/datasets.txt (Humble: add "numpy<2")',
        )
    return Result(OK, ', '.join(found))
