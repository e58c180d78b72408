"""``shadow_report`` command: per candidate and joint, how far its proposals were from what was executed.

    ros2 run portal_bridge shadow_report ~/datasets/pick
    ros2 run portal_bridge shadow_report ~/datasets/pick --plot divergence.png

Over the frames where the robot executed an action and the candidate proposed one: the mean and
the largest absolute difference per joint, over all frames and split by who was driving.
"""

from __future__ import annotations

import argparse
import sys
from typing import Optional, Sequence


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog='shadow_report', description=__doc__.split('\n\n')[0])
    parser.add_argument('dataset', help='a dataset written by the recorder or bag_to_lerobot')
    parser.add_argument('--plot', metavar='FILE', help='write a PNG with one plot per joint')
    args = parser.parse_args(argv)
    try:
        from portal_bridge.dataset.schema import SchemaError
        from portal_bridge.dataset.shadow import divergences, load_actions, plot, table
    except ImportError as exc:
        print(f'shadow_report: {exc}', file=sys.stderr)
        return 2
    try:
        data = load_actions(args.dataset)
    except SchemaError as exc:
        print(f'shadow_report: {exc}', file=sys.stderr)
        return 1
    if not data['candidates']:
        print(f'shadow_report: {args.dataset} has no candidate features (recorder parameter `candidates`)')
        return 1
    print(table(divergences(data)))
    if args.plot:
        plot(data, args.plot)
        print(f'plot: {args.plot}')
    return 0


if __name__ == '__main__':
    sys.exit(main())
