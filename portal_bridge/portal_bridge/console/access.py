"""Who gets a LiveKit token from the console, for which identity.

The page never holds credentials: it asks the console for a short-lived token. The rules:

* Bound to a loopback address (the default), only this machine (or an SSH tunnel to it) reaches
  the console. A *local* request gets a token for the configured identity: it comes from a
  loopback address, names a loopback host (``Host: 127.0.0.1:8080``, so a page of another site
  that DNS-rebinds its name to 127.0.0.1 is not local) and carries no proxy header
  (``Forwarded``, ``X-Forwarded-For``, ``X-Real-IP``: behind a reverse proxy on this host every
  visitor would otherwise look local). The server decides what is local (:mod:`.server`).
* Bound to any other address, the console refuses to start without a shared secret file or a
  login list (see :func:`check_binding`). A request from another machine must then carry the
  shared secret, or a login (identity and password) from the list; otherwise it is refused.
* With a login list every request, local or not, names a login; the token's identity is that
  login's, so two people get two identities.

Secrets are compared in constant time; no secret is ever logged or sent back.
"""

from __future__ import annotations

import dataclasses
import datetime
import hmac
import ipaddress
import os
from typing import Any, Mapping, Optional

import yaml

from ..portal.room.tokens import mint_token

__all__ = [
    'AccessError',
    'TokenPolicy',
    'Grant',
    'Refusal',
    'check_binding',
    'is_loopback',
    'read_secret',
    'read_logins',
]

MIN_SECRET_CHARS = 12


class AccessError(ValueError):
    """A configuration the console must not start with; the message says what to change."""


@dataclasses.dataclass(frozen=True)
class Grant:
    token: str
    identity: str
    ttl_s: int


@dataclasses.dataclass(frozen=True)
class Refusal:
    status: int  # HTTP status: 401 (credentials missing or wrong), 403 (never from here)
    reason: str  # shown to the user and counted; never contains a secret


def is_loopback(host: str) -> bool:
    """True for 127.0.0.0/8, ::1 and ``localhost``."""
    if host == 'localhost':
        return True
    try:
        return ipaddress.ip_address(host.split('%', 1)[0]).is_loopback
    except ValueError:
        return False


def check_binding(address: str, secret: Optional[str], logins: Optional[Mapping[str, str]]) -> str:
    """The one startup line about access; AccessError when a non-local bind has no secret."""
    if logins:
        return 'every token request needs a login from logins_file'
    if is_loopback(address):
        return 'loopback only: tokens for this machine; from elsewhere, through an SSH tunnel'
    if not secret:
        raise AccessError(
            f"address '{address}' is reachable from other machines: set secret_file (a shared secret) "
            'or logins_file (identities and passwords), or bind to 127.0.0.1'
        )
    return 'reachable from other machines: tokens for them only with the shared secret'


def read_secret(path: str) -> str:
    """The shared secret in ``path`` (surrounding whitespace removed), at least 12 characters."""
    try:
        with open(path, encoding='utf-8') as f:
            secret = f.read().strip()
    except OSError as exc:
        raise AccessError(f'cannot read secret_file {path}: {exc.strerror}') from None
    if len(secret) < MIN_SECRET_CHARS:
        raise AccessError(f'secret_file {path}: the secret must be at least {MIN_SECRET_CHARS} characters')
    return secret


def read_logins(path: str) -> dict[str, str]:
    """``identity: password`` pairs from a YAML mapping; each password at least 12 characters."""
    try:
        with open(path, encoding='utf-8') as f:
            doc = yaml.safe_load(f)
    except OSError as exc:
        raise AccessError(f'cannot read logins_file {path}: {exc.strerror}') from None
    except yaml.YAMLError as exc:
        raise AccessError(f'logins_file {path}: not valid YAML: {exc}') from None
    if not isinstance(doc, dict) or not doc:
        raise AccessError(f'logins_file {path}: must map identities to passwords')
    logins: dict[str, str] = {}
    for identity, password in doc.items():
        if not isinstance(identity, str) or not identity.strip():
            raise AccessError(f'logins_file {path}: identity {identity!r} must be a non-empty string')
        if not isinstance(password, str) or len(password) < MIN_SECRET_CHARS:
            raise AccessError(
                f"logins_file {path}: the password of '{identity}' must be at least {MIN_SECRET_CHARS} characters"
            )
        logins[identity] = password
    return logins


def file_is_private(path: str) -> bool:
    """False when a secret file is readable by group or others (worth a warning)."""
    return not os.stat(path).st_mode & 0o077


class TokenPolicy:
    """Decides each token request and mints the token (LiveKit API key and secret stay here)."""

    def __init__(
        self,
        api_key: str,
        api_secret: str,
        room: str,
        identity: str,
        ttl_s: int,
        secret: Optional[str] = None,
        logins: Optional[Mapping[str, str]] = None,
    ) -> None:
        self._api_key, self._api_secret = api_key, api_secret
        self.room, self.identity, self.ttl_s = room, identity, ttl_s
        self._secret = secret
        self._logins = dict(logins or {})

    @property
    def needs_secret(self) -> bool:
        return bool(self._secret)

    @property
    def uses_logins(self) -> bool:
        return bool(self._logins)

    def decide(self, local: bool, request: Mapping[str, Any]) -> Grant | Refusal:
        """A token for a client (``local``: on this machine, see the module docstring) asking with ``request``."""
        if self._logins:
            login, password = request.get('identity'), request.get('password')
            if not isinstance(login, str) or not isinstance(password, str) or not login:
                return Refusal(401, 'this console needs a login (identity and password)')
            expected = self._logins.get(login)
            # compare against something of the same kind even for an unknown login
            if not hmac.compare_digest(password.encode(), (expected or '\0').encode()) or expected is None:
                return Refusal(401, f"login '{login[:64]}' refused: unknown identity or wrong password")
            return self._grant(login)
        if local:
            return self._grant(self.identity)
        if not self._secret:
            return Refusal(401, 'tokens are only given to this machine (the console has no shared secret)')
        offered = request.get('secret')
        if not isinstance(offered, str) or not offered:
            return Refusal(401, 'this console needs the shared secret')
        if not hmac.compare_digest(offered.encode(), self._secret.encode()):
            return Refusal(401, 'wrong shared secret')
        return self._grant(self.identity)

    def _grant(self, identity: str) -> Grant:
        token = mint_token(
            self._api_key,
            self._api_secret,
            identity,
            self.room,
            ttl=datetime.timedelta(seconds=self.ttl_s),
            publish_media=False,  # the page publishes data only: no camera or microphone in its name
        )
        return Grant(token, identity, self.ttl_s)
