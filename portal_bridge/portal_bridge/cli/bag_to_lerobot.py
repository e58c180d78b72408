r"""``bag_to_lerobot`` command: a bag of a Portal session as a LeRobotDataset v3.0.

    ros2 run portal_bridge bag_to_lerobot session_bag ~/datasets/pick
    # what the recorder saw, episodes included:
    ros2 bag record -s mcap /recorder/observation /recorder/executed_actions \
        /recorder/candidate_actions /recorder/episode_events

Reads MCAP or sqlite3 bags with rosbags (no ROS install needed); the same matching and layout as
the recorder (docs/recording.md). Episodes come from the recorder's ``~/episode_events`` when the
bag has them, else the bag is one episode, or one per handoff with ``--split-on-handoff``.
Appends to an existing dataset of the same schema.
"""

from __future__ import annotations

import argparse
import sys
from typing import Optional, Sequence


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog='bag_to_lerobot', description=__doc__.split('\n\n')[0])
    parser.add_argument('bag', help='rosbag2 folder (metadata.yaml and .mcap or .db3 files)')
    parser.add_argument('out', help='dataset directory (created, or appended to)')
    parser.add_argument('--fps', type=int, default=30, help="dataset fps (the wire contract's; default 30)")
    parser.add_argument('--task', default='recorded session', help='task of episodes without episode events')
    parser.add_argument('--video-codec', default='h264', help='h264, h264-lossless or av1')
    parser.add_argument('--candidates', default=None, help='comma-separated candidate identities (default: all)')
    parser.add_argument('--action-wait-ms', type=int, default=1000, help="the recorder's action_wait_ms")
    parser.add_argument('--split-on-handoff', action='store_true', help='a new episode when the sender changes')
    parser.add_argument('--observation-topic', default=None, help='when the bag has observations on several topics')
    args = parser.parse_args(argv)
    try:
        from portal_bridge.dataset.bag_convert import BagError, convert_bag
        from portal_bridge.dataset.schema import SchemaError
    except ImportError as exc:
        print(f'bag_to_lerobot: {exc}', file=sys.stderr)
        return 2
    candidates = [c for c in args.candidates.split(',') if c] if args.candidates is not None else None
    try:
        report = convert_bag(
            args.bag,
            args.out,
            fps=args.fps,
            task=args.task,
            video_codec=args.video_codec,
            candidates=candidates,
            action_wait_ms=args.action_wait_ms,
            split_on_handoff=args.split_on_handoff,
            observation_topic=args.observation_topic,
        )
    except (BagError, SchemaError, FileNotFoundError) as exc:
        print(f'bag_to_lerobot: {exc}', file=sys.stderr)
        return 1
    for index, frames, task in report.episodes:
        print(f'episode {index}: {frames} frames, task {task!r}')
    print(
        f'{report.observations} observations, {report.executed_actions} executed and '
        f'{report.candidate_actions} candidate actions read; {report.frames_without_action} frames without an '
        f'action, {report.unmatched_actions} actions that answered no frame, {report.frames_outside_episodes} '
        f'observations outside episodes, {report.frames_refused} refused'
        + (f' ({report.refused})' if report.refused else '')
        + (f'; undecodable messages skipped: {report.undecodable}' if report.undecodable else '')
    )
    return 0


if __name__ == '__main__':
    sys.exit(main())
