"""Bare Portal peers (no ROS) in their own process, for the core-only and scale benchmarks.

python -m bench.core_peer robot --url ... --room ... --cameras 1 --width 640 --height 480 --codec h264
python -m bench.core_peer operators --url ... --room ... --count 4 --action-hz 100
"""

from __future__ import annotations

import argparse
import asyncio
import os
import threading
import time
from typing import Any

from portal_bridge.nodes.sim_robot import draw_frame
from portal_bridge.portal import DType, Operator, Robot, VideoCodec, WireContract, now_us

JOINTS = [f'j{i}' for i in range(6)]


def contract(cameras: int, codec: str) -> WireContract:
    c = WireContract(fps=30)
    for i in range(cameras):
        c.add_video(f'cam{i}', VideoCodec.parse(codec))
    c.add_state([(j, DType.F64) for j in JOINTS])
    c.add_action([(j, DType.F64) for j in JOINTS])
    return c


async def run_robot(args: argparse.Namespace) -> None:
    c = contract(args.cameras, args.codec)
    robot = Robot(c)
    await robot.connect(args.url, api_key='devkey', api_secret='secret', identity='robot', room=args.room)
    frames = [[draw_frame(args.width, args.height, n * 97, hue=60 * i) for n in range(8)] for i in range(args.cameras)]
    stop = threading.Event()
    threading.Thread(target=camera_loop, args=(robot, frames, stop), daemon=True).start()
    await asyncio.sleep(args.duration)
    stop.set()
    await robot.disconnect()


def camera_loop(robot: Any, frames: list[list[Any]], stop: threading.Event) -> None:
    """Send frame n of every camera ``cam<i>`` and a state at 30 fps, one stamp each, until ``stop``.

    Runs in a thread of its own, like a camera driver: sends never run on the event loop. Works
    with any robot that has Portal's ``send_video_frame`` and ``send_state`` (ours or livekit-portal's).
    """
    n = 0
    next_t = time.monotonic()
    while not stop.is_set():
        ts = now_us()
        for i, variants in enumerate(frames):
            robot.send_video_frame(f'cam{i}', variants[n % len(variants)], timestamp_us=ts)
        robot.send_state({j: float(n) for j in JOINTS}, timestamp_us=ts)
        n += 1
        next_t += 1 / 30
        time.sleep(max(0.0, next_t - time.monotonic()))


async def run_operators(args: argparse.Namespace) -> None:
    c = contract(args.cameras, args.codec)
    ops = [Operator(c) for _ in range(args.count)]
    prefix = 'watcher' if args.role == 'watchers' else 'op'
    for i, op in enumerate(ops):
        await op.connect(args.url, api_key='devkey', api_secret='secret', identity=f'{prefix}{i}', room=args.room)
    if args.role == 'watchers':  # in the room, receiving video and state, never driving
        await asyncio.sleep(args.duration)
        for op in ops:
            await op.disconnect()
        return
    await ops[0].claim_control()
    n = 0
    end = time.monotonic() + args.duration
    while time.monotonic() < end:
        # j0 = sequence, j1 = send time: the robot side measures latency on the same host clock
        ops[0].send_action({'j0': float(n), 'j1': time.time()}, check_types=False)
        n += 1
        await asyncio.sleep(1 / args.action_hz)
    for op in ops:
        await op.disconnect()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument('role', choices=['robot', 'operators', 'watchers'])
    parser.add_argument('--url', required=True)
    parser.add_argument('--room', required=True)
    parser.add_argument('--cameras', type=int, default=1)
    parser.add_argument('--width', type=int, default=640)
    parser.add_argument('--height', type=int, default=480)
    parser.add_argument('--codec', default='h264')
    parser.add_argument('--count', type=int, default=1)
    parser.add_argument('--action-hz', type=float, default=100.0)
    parser.add_argument('--duration', type=float, default=20.0)
    args = parser.parse_args()
    asyncio.run(run_robot(args) if args.role == 'robot' else run_operators(args))
    os._exit(0)  # skip finalization with the LiveKit FFI's threads still around


if __name__ == '__main__':
    main()
