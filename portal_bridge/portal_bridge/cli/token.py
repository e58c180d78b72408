"""``token`` command: print a LiveKit token with the grants a Portal peer needs.

Reads ``LIVEKIT_API_KEY`` and ``LIVEKIT_API_SECRET`` from the environment (never from the
command line, where other users could see them)::

    ros2 run portal_bridge token --identity policy --room lab
    python -m portal_bridge.token --identity robot --room lab --active-operator teleop

Any Portal peer (livekit-portal, its lerobot plugins, a browser) can join with it.
"""

from __future__ import annotations

import argparse
import datetime
import sys
from typing import Optional, Sequence

from portal_bridge.portal.room.tokens import credentials_from_env, mint_token


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(
        prog='token',
        description='Print a LiveKit access token with Portal grants (join, publish, subscribe, '
        'publish data, update own metadata), signed with LIVEKIT_API_KEY/LIVEKIT_API_SECRET.',
    )
    parser.add_argument('--identity', required=True, help='participant identity (unique in the room)')
    parser.add_argument('--room', required=True, help='LiveKit room name (the Portal session)')
    parser.add_argument('--ttl', type=float, default=6.0, help='validity in hours (default: 6)')
    parser.add_argument(
        '--active-operator',
        default=None,
        help="seed the robot's active operator (only meaningful on the robot's token)",
    )
    args = parser.parse_args(argv)
    try:
        key, secret = credentials_from_env()
        token = mint_token(
            key,
            secret,
            args.identity,
            args.room,
            ttl=datetime.timedelta(hours=args.ttl),
            active_operator=args.active_operator,
        )
    except ValueError as exc:
        print(f'token: {exc}', file=sys.stderr)
        return 2
    print(token)
    return 0


if __name__ == '__main__':
    sys.exit(main())
