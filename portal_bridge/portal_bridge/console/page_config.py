"""What the console page is served: the wire contract in JSON, the keymap, where to connect.

The page implements the Portal wire protocol itself (packet layouts, FNV-1a fingerprints); it
gets the contract's fields and tracks here and computes the fingerprints on its own, so a page
served another contract than the robot's sees the robot's packets carry a foreign fingerprint
and says so. ``fingerprints`` is included for display and for the tests that compare both sides.
"""

from __future__ import annotations

from typing import Any, Optional

from ..portal import WireContract
from ..portal.protocol import ROLE_OPERATOR

__all__ = ['contract_json', 'page_config']


def contract_json(contract: WireContract) -> dict[str, Any]:
    """The parts of the contract a browser operator needs, in plain JSON types."""

    def fields(specs) -> list[dict[str, str]]:
        return [{'name': f.name, 'dtype': str(f.dtype)} for f in specs]

    return {
        'fps': contract.fps,
        'ping_ms': contract.ping_ms,
        'state_reliable': contract.state_reliable,
        'action_reliable': contract.action_reliable,
        'state': fields(contract.state),
        'action': fields(contract.action),
        'videos': [{'name': v.name, 'codec': v.codec.value, 'webrtc': v.codec.is_webrtc} for v in contract.videos],
        'action_chunks': [
            {'name': c.name, 'horizon': c.horizon, 'fields': fields(c.fields)} for c in contract.action_chunks
        ],
        'fingerprints': {
            'state': contract.state_fingerprint,
            'action': contract.action_fingerprint,
            'chunks': dict(contract.chunk_fingerprints),
        },
    }


def page_config(
    contract: WireContract,
    keymap: dict[str, Any],
    *,
    livekit_url: str,
    room: str,
    contract_name: str,
    robot_identity: Optional[str] = None,
    needs_secret: bool = False,
    logins: bool = False,
) -> dict[str, Any]:
    """The page's ``config.json``: everything but credentials (tokens come from ``/token``)."""
    return {
        'livekit_url': livekit_url,
        'room': room,
        'role': ROLE_OPERATOR,
        'robot_identity': robot_identity or '',
        'contract_name': contract_name,
        'contract': contract_json(contract),
        'keymap': keymap,
        'auth': {'needs_secret': needs_secret, 'logins': logins},
    }
