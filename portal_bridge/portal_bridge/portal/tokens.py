"""LiveKit access tokens with the grants a Portal peer needs.

Portal peers publish video and data, subscribe, and set their own participant attributes (the
role, and on the robot the active-operator pointer), so tokens need ``can_update_own_metadata``
besides the usual join/publish/subscribe grants. The room configuration asks the SFU for zero
playout delay, which is what teleoperation wants.
"""

from __future__ import annotations

import datetime
import os
import re
from typing import Mapping, Optional

from livekit import api

__all__ = ['mint_token', 'redact_tokens', 'credentials_from_env', 'ACTIVE_OPERATOR_ATTR', 'ROLE_ATTR']

ROLE_ATTR = 'lk.portal.role'
ACTIVE_OPERATOR_ATTR = 'lk.portal.active_operator'
DEFAULT_TTL = datetime.timedelta(hours=6)


def credentials_from_env(environ: Optional[Mapping[str, str]] = None) -> tuple[str, str]:
    """Read ``LIVEKIT_API_KEY``/``LIVEKIT_API_SECRET``; ValueError naming what is missing."""
    env = os.environ if environ is None else environ
    key, secret = env.get('LIVEKIT_API_KEY', ''), env.get('LIVEKIT_API_SECRET', '')
    missing = [n for n, v in (('LIVEKIT_API_KEY', key), ('LIVEKIT_API_SECRET', secret)) if not v]
    if missing:
        raise ValueError(f'set {" and ".join(missing)} (or pass a token) to join a LiveKit room')
    return key, secret


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
) -> str:
    """Return a signed JWT for ``identity`` in ``room`` with Portal's grants.

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
        can_publish=True,
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
    return token.to_jwt()


# A JWT: three base64url parts, the first two JSON objects ('{"' encodes as 'eyJ').
_JWT = re.compile(r'eyJ[A-Za-z0-9_-]*\.eyJ[A-Za-z0-9_-]*\.[A-Za-z0-9_-]+')


def redact_tokens(text: str) -> str:
    """``text`` with every JWT replaced by ``<token>``: server errors quote the token they refused."""
    return _JWT.sub('<token>', text)
