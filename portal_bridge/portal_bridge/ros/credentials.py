"""LiveKit credentials for the nodes: from a file or the environment, never from parameters.

ROS parameters are readable by every node on the graph, so secrets stay out of them. Sources,
first match wins:

1. the file named by the ``credentials_file`` parameter: YAML (``api_key``/``api_secret`` or
   ``token``) or ``KEY=VALUE`` lines using the environment variable names below;
2. ``LIVEKIT_TOKEN``;
3. ``LIVEKIT_API_KEY`` and ``LIVEKIT_API_SECRET`` (a token with Portal's grants is minted).

:func:`explain_token` turns an unusable token into one clear line before connecting.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass
import datetime
import json
import os
from pathlib import Path
from typing import Mapping, Optional

import yaml

from ..portal.room.tokens import redact_tokens

__all__ = ['Credentials', 'CredentialsError', 'load_credentials', 'explain_token', 'redact']


class CredentialsError(ValueError):
    pass


@dataclass(frozen=True)
class Credentials:
    token: Optional[str] = None
    api_key: Optional[str] = None
    api_secret: Optional[str] = None

    @property
    def source_kind(self) -> str:
        return 'token' if self.token else 'api key'

    def __repr__(self) -> str:  # never print secrets
        return f'Credentials({self.source_kind})'


_ALIASES = {
    'token': 'token', 'livekit_token': 'token',
    'api_key': 'api_key', 'livekit_api_key': 'api_key',
    'api_secret': 'api_secret', 'livekit_api_secret': 'api_secret',
}  # fmt: skip


def _from_mapping(values: Mapping[str, object], where: str) -> Credentials:
    found: dict[str, str] = {}
    for key, value in values.items():
        name = _ALIASES.get(str(key).lower())
        if name is None:
            # The key is not quoted: a file holding a bare secret would put the secret in the log.
            raise CredentialsError(f'{where}: unknown key in the file (use token, or api_key and api_secret)')
        found[name] = str(value).strip()
    if found.get('token'):
        return Credentials(token=found['token'])
    if found.get('api_key') and found.get('api_secret'):
        return Credentials(api_key=found['api_key'], api_secret=found['api_secret'])
    raise CredentialsError(f'{where}: needs token, or both api_key and api_secret')


def load_credentials(path: str = '', environ: Optional[Mapping[str, str]] = None) -> Credentials:
    env = os.environ if environ is None else environ
    if path:
        p = Path(path).expanduser()
        try:
            text = p.read_text()
        except OSError as exc:
            raise CredentialsError(f'cannot read credentials_file {p}: {exc.strerror}') from None
        stripped = [ln.strip() for ln in text.splitlines() if ln.strip() and not ln.strip().startswith('#')]
        if stripped and all('=' in ln and ':' not in ln.split('=', 1)[0] for ln in stripped):
            pairs = dict(ln.removeprefix('export ').split('=', 1) for ln in stripped)
            return _from_mapping({k.strip(): v.strip().strip('\'"') for k, v in pairs.items()}, str(p))
        try:
            data = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            # Only the position: YAML's message quotes the offending line, which may hold a secret.
            mark = getattr(exc, 'problem_mark', None)
            at = f' (line {mark.line + 1}, column {mark.column + 1})' if mark is not None else ''
            raise CredentialsError(f'credentials_file {p} is not valid YAML{at}') from None
        if not isinstance(data, dict):
            raise CredentialsError(f'credentials_file {p} must be a mapping')
        return _from_mapping(data, str(p))
    if env.get('LIVEKIT_TOKEN'):
        return Credentials(token=env['LIVEKIT_TOKEN'])
    if env.get('LIVEKIT_API_KEY') and env.get('LIVEKIT_API_SECRET'):
        return Credentials(api_key=env['LIVEKIT_API_KEY'], api_secret=env['LIVEKIT_API_SECRET'])
    raise CredentialsError(
        'no LiveKit credentials: set LIVEKIT_API_KEY and LIVEKIT_API_SECRET (or LIVEKIT_TOKEN), '
        'or point the credentials_file parameter at a file holding them'
    )


def _claims(token: str) -> dict:
    try:
        payload = token.split('.')[1]
        payload += '=' * (-len(payload) % 4)
        return json.loads(base64.urlsafe_b64decode(payload))
    except (IndexError, ValueError) as exc:
        raise CredentialsError(f'the LiveKit token is not a JWT ({exc})') from None


def explain_token(token: str, now: Optional[datetime.datetime] = None) -> Optional[str]:
    """Why ``token`` cannot work for a Portal peer, in one line; None when it looks usable."""
    try:
        claims = _claims(token)
    except CredentialsError as exc:
        return str(exc)
    now = now or datetime.datetime.now(datetime.timezone.utc)
    exp = claims.get('exp')
    if isinstance(exp, (int, float)) and exp <= now.timestamp():
        when = datetime.datetime.fromtimestamp(exp, datetime.timezone.utc).isoformat(timespec='seconds')
        return f'the LiveKit token expired at {when}; mint a new one (ros2 run portal_bridge token ...)'
    video = claims.get('video') or {}
    missing = [
        g for g in ('roomJoin', 'canPublish', 'canSubscribe', 'canPublishData', 'canUpdateOwnMetadata')
        if video.get(g) is False or (g in ('roomJoin', 'canUpdateOwnMetadata') and not video.get(g))
    ]  # fmt: skip
    if missing:
        return f'the LiveKit token lacks the grant(s) {", ".join(missing)} that a Portal peer needs'
    if not video.get('room'):
        return 'the LiveKit token names no room'
    return None


def redact(text: str, creds: Optional[Credentials] = None) -> str:
    """``text`` with every token and the API secret blanked, for log lines quoting server errors.

    LiveKit's refusals quote the token they refused; a log line is readable by whoever reads the
    logs, and a token is a credential until it expires.
    """
    text = redact_tokens(text)
    if creds is not None:
        for secret in (creds.token, creds.api_secret):
            if secret:
                text = text.replace(secret, '<redacted>')
    return text
