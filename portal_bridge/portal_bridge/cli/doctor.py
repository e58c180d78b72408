"""``doctor`` command: tell the user what is wrong in their environment, one line per check.

    ros2 run portal_bridge doctor
    ros2 run portal_bridge doctor --params-file config/robot_arm.yaml --json
    python -m portal_bridge.cli.doctor --url wss://my-project.livekit.cloud

Each check is one small function in :data:`CHECKS` returning OK, WARN or FAIL and a one-line
message that says what to do. Exit status 0 when nothing FAILs, 1 otherwise. Secrets are never
printed: the credentials check reports which kind is present, and every line is scrubbed of the
secrets and tokens it knows of before it is printed.
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path
import re
import sys
from typing import Any, Callable, Mapping, Optional, Sequence

import yaml

__all__ = ['CHECKS', 'Context', 'Result', 'main', 'run_checks']

from . import doctor_install_checks, doctor_room_checks, doctor_ros_checks  # noqa: F401 - they register their checks
from .doctor_base import DEFAULT_URL, FAIL, OK, REGISTRY, WARN, Context, Result, _first_line, check
from .doctor_room_checks import _display_url, default_contract_path

_JWT = re.compile(r'eyJ[A-Za-z0-9_-]*\.eyJ[A-Za-z0-9_-]*\.[A-Za-z0-9_-]+')


@check('settings', 'Settings')
def check_settings(ctx: Context) -> Result:
    where = f'{_display_url(ctx.url)} (from {ctx.url_source})'
    creds = f'{ctx.credentials_file} (from {ctx.credentials_source})' if ctx.credentials_file else 'environment'
    contract = f'{ctx.contract_file} (from {ctx.contract_source})' if ctx.contract_file else 'none found'
    line = f'livekit_url {where}; credentials {creds}; contract_file {contract}'
    if ctx.params_error:
        return Result(FAIL, f'{ctx.params_error}; using {line}')
    return Result(OK, line)


# The order the checks run and print in; each check registers itself with @check.
ORDER = 'settings ros rmw shm discovery livekit numpy msgs datasets contract server credentials livekit_server'.split()
CHECKS: tuple[tuple[str, str, Callable[[Context], Result]], ...] = tuple((key, *REGISTRY[key]) for key in ORDER)


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
    for key, title, run_check in CHECKS:
        try:
            result = run_check(ctx)
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
