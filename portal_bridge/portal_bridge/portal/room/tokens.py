"""LiveKit access tokens with the grants a Portal peer needs.

Portal peers publish video and data, subscribe, and set their own participant attributes (the
role, and on the robot the active-operator pointer), so tokens need ``can_update_own_metadata``
besides the usual join/publish/subscribe grants. The room configuration asks the SFU for zero
playout delay, which is what teleoperation wants.
"""

from __future__ import annotations

import datetime
import logging
import os
import re
from typing import Mapping, Optional
import warnings

from livekit import api

from ..protocol import ACTIVE_OPERATOR_ATTR

__all__ = ['mint_token', 'redact_tokens', 'credentials_from_env', 'token_for', 'CONNECT_KEYS']

# What ``PortalSession.connect()`` keeps to join again after a reconnect.
CONNECT_KEYS = ('url', 'token', 'api_key', 'api_secret', 'identity', 'room', 'active_operator')

DEFAULT_TTL = datetime.timedelta(hours=6)


def credentials_from_env(environ: Optional[Mapping[str, str]] = None) -> tuple[str, str]:
    """Read ``LIVEKIT_API_KEY``/``LIVEKIT_API_SECRET``; ValueError naming what is missing."""
    env = os.environ if environ is None else environ
    key, secret = env.get('LIVEKIT_API_KEY', ''), env.get('LIVEKIT_API_SECRET', '')
    missing = [n for n, v in (('LIVEKIT_API_KEY', key), ('LIVEKIT_API_SECRET', secret)) if not v]
    if missing:
        raise ValueError(f'set {" and ".join(missing)} (or pass a token) to join a LiveKit room')
    return key, secret


DEV_KEYS = ('devkey', 'secret')  # livekit-server --dev
_MIN_SECRET_BYTES = 32
_short_secret_warned = False


def mint_token(
    api_key: str,
    api_secret: str,
    identity: str,
    room: str,
    *,
    ttl: datetime.timedelta = DEFAULT_TTL,
    active_operator: Optional[str] = None,
    name: Optional[str] = None,
    low_latency: bool = True,
    publish_media: bool = True,
) -> str:
    """Return a signed JWT for ``identity`` in ``room`` with Portal's grants.

    ``publish_media=False`` leaves out the grant to publish tracks (a peer that only sends data).

    ``active_operator`` seeds the robot's ``lk.portal.active_operator`` attribute (only
    meaningful on the robot's token), so an operator can drive from the first packet.
    """
    if not identity:
        raise ValueError('identity must not be empty')
    if not room:
        raise ValueError('room must not be empty')
    grants = api.VideoGrants(
        room_join=True,
        room=room,
        can_publish=publish_media,  # False: data, RPC and attributes only (the browser console)
        can_subscribe=True,
        can_publish_data=True,
        can_update_own_metadata=True,
    )
    token = (
        api.AccessToken(api_key, api_secret)
        .with_identity(identity)
        .with_name(name or identity)
        .with_grants(grants)
        .with_ttl(ttl)
    )
    if active_operator:
        token = token.with_attributes({ACTIVE_OPERATOR_ATTR: active_operator})
    if low_latency:
        token = token.with_room_config(api.RoomConfiguration(min_playout_delay=0, max_playout_delay=1))
    with warnings.catch_warnings():
        if (api_key, api_secret) == DEV_KEYS:
            # livekit-server --dev's well-known key pair: PyJWT's warning that the 6-byte secret is
            # shorter than HMAC-SHA256 wants says nothing a local test server could act on.
            warnings.filterwarnings('ignore', message='The HMAC key is', category=Warning)
        elif len(api_secret.encode()) < _MIN_SECRET_BYTES:
            warnings.filterwarnings('ignore', message='The HMAC key is', category=Warning)
            _warn_short_secret(len(api_secret.encode()))
        return token.to_jwt()


def _warn_short_secret(n: int) -> None:
    """Our own line for a short secret, once per process (PyJWT's would repeat per token)."""
    global _short_secret_warned
    if _short_secret_warned:
        return
    _short_secret_warned = True
    logging.getLogger('portal_bridge.tokens').warning(
        'LIVEKIT_API_SECRET is %d bytes; HMAC-SHA256 wants at least %d: anyone who guesses it can mint tokens '
        'for this LiveKit server',
        n,
        _MIN_SECRET_BYTES,
    )


# A JWT: three base64url parts, the first two JSON objects ('{"' encodes as 'eyJ').
_JWT = re.compile(r'eyJ[A-Za-z0-9_-]*\.eyJ[A-Za-z0-9_-]*\.[A-Za-z0-9_-]+')


def redact_tokens(text: str) -> str:
    """``text`` with every JWT replaced by ``<token>``: server errors quote the token they refused."""
    return _JWT.sub('<token>', text)


def token_for(connect_args: Mapping[str, Optional[str]]) -> str:
    """The token to join with: the one given to ``connect()``, else one minted from its credentials."""
    if connect_args.get('token'):
        return connect_args['token']
    credentials = (connect_args[k] for k in ('api_key', 'api_secret', 'identity', 'room'))
    return mint_token(*credentials, active_operator=connect_args.get('active_operator'))
