"""``contract`` command: validate a ``portal.yaml`` wire contract and print its fingerprints.

When a peer's traffic is dropped with a schema mismatch, run this on both sides and compare::

    ros2 run portal_bridge contract config/portal.yaml
    python -m portal_bridge.contract config/portal.yaml

Prints ``{"state": "0x...", "action": "0x...", "chunks": {...}, "search_range_us": N}``.
Exit status 0 when valid, 2 (with the error on stderr) when not.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Optional, Sequence

from portal_bridge.portal.wire.contract import ContractError, WireContract


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(
        prog='contract',
        description='Validate a Portal wire contract (portal.yaml) and print its schema fingerprints.',
    )
    parser.add_argument('file', help='path to a portal.yaml wire contract')
    args = parser.parse_args(argv)
    try:
        contract = WireContract.from_yaml_file(args.file)
    except ContractError as exc:
        print(f'{args.file}: {exc}', file=sys.stderr)
        return 2
    print(json.dumps(contract.fingerprints()))
    return 0


if __name__ == '__main__':
    sys.exit(main())
