"""Doctor checks of the session: the wire contract, the server, the credentials, livekit-server."""

from __future__ import annotations

import base64
import json
import os
import urllib.error
import urllib.parse
import urllib.request

from portal_bridge.ros.launch_helpers import find_livekit_server

from .doctor_base import (
    FAIL,
    HTTP_TIMEOUT_S,
    OK,
    WARN,
    Context,
    Result,
    _ament_share,
    _first_line,
    check,
)

__all__ = [
    'default_contract_path',
    'check_contract',
    'check_server',
    'check_credentials',
    'check_livekit_server',
]


def default_contract_path() -> str:
    share = _ament_share('portal_bridge')
    if share is not None:
        return os.path.join(share, 'config', 'portal.yaml')
    return os.path.normpath(os.path.join(os.path.dirname(__file__), '..', 'config', 'portal.yaml'))


@check('contract', 'Wire contract')
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


@check('server', 'LiveKit server')
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


@check('credentials', 'Credentials')
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


@check('livekit_server', 'livekit-server (demo)')
def check_livekit_server(ctx: Context) -> Result:
    found = find_livekit_server()
    if found is None:
        return Result(
            WARN,
            'no livekit-server for the demo (ros2 launch portal_bridge demo.launch.py): put one on PATH, set '
            'PORTAL_BRIDGE_LIVEKIT_SERVER, or run make setup in the source tree (not needed with a remote server)',
        )
    return Result(OK, f'livekit-server at {found}')
