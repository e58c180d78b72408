r"""One Portal peer in its own process, ours or the reference (livekit-portal), for case 10.

    python -m bench.portal_pair robot --impl ref --url ws://... --room r --contract c.yaml \
        --cameras 1 --width 1280 --height 720 --duration 30
    python -m bench.portal_pair operator --impl ours --url ws://... --room r --contract c.yaml \
        --seconds 10 --out result.json

Both implementations get the same camera-like frames (:func:`~.ros_publisher.camera_frame`,
30 distinct frames per camera, cycled at 30 fps) and the same 6-joint state, stamped at send
time; the operator takes each observation's latency as its arrival in the callback minus that
stamp (one host clock). The operator waits for its first observation, lets 2 s pass (encoders
ramp up their bitrate), touches ``<out>.measuring`` so the driver samples CPU over the same
window, counts for ``--seconds`` and writes ``{"latencies_ms": [...], "seconds": ...}``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
from pathlib import Path
import threading
import time
from typing import Any, Callable

import numpy as np

from portal_bridge.portal import now_us

from .core_peer import camera_loop
from .ros_publisher import CAMERA_VARIANTS, camera_frame

KEY, SECRET = 'devkey', 'secret'


class Peer:
    """The few calls the benchmark needs, on either implementation."""

    def __init__(self, impl: str, contract: str, room: str) -> None:
        self.impl = impl
        self.room = room
        text = Path(contract).read_text()
        if impl == 'ref':
            from livekit import portal as lp

            self.lp = lp
            self.robot_config = lambda: lp.RobotConfig.from_yaml_str(text, room)
            self.operator_config = lambda: lp.OperatorConfig.from_yaml_str(text, room)
        else:
            from portal_bridge.portal.wire.contract_yaml import load

            self.contract = load(text)

    async def robot(self, url: str) -> Any:
        if self.impl == 'ref':
            robot = self.lp.Robot(self.robot_config())
            await robot.connect(url, self._token('robot'))
            return robot
        from portal_bridge.portal import Robot

        robot = Robot(self.contract)
        await robot.connect(url, api_key=KEY, api_secret=SECRET, identity='robot', room=self.room)
        return robot

    async def operator(self, url: str, on_observation: Callable[[Any], None]) -> Any:
        if self.impl == 'ref':
            op = self.lp.Operator(self.operator_config())
            op.on_observation(on_observation)
            await op.connect(url, self._token('operator'))
            return op
        from portal_bridge.portal import Operator

        op = Operator(self.contract)
        op.on_observation(on_observation)
        await op.connect(url, api_key=KEY, api_secret=SECRET, identity='operator', room=self.room)
        return op

    def _token(self, identity: str) -> str:
        from portal_bridge.portal import mint_token

        return mint_token(KEY, SECRET, identity, self.room)


async def run_robot(args: argparse.Namespace) -> None:
    rng = np.random.default_rng(7)
    frames = [
        [camera_frame(args.width, args.height, n, cam, rng) for n in range(CAMERA_VARIANTS)]
        for cam in range(args.cameras)
    ]
    robot = await Peer(args.impl, args.contract, args.room).robot(args.url)
    stop = threading.Event()
    threading.Thread(target=camera_loop, args=(robot, frames, stop), daemon=True).start()
    await asyncio.sleep(args.duration)
    stop.set()
    await robot.disconnect()


async def run_operator(args: argparse.Namespace) -> None:
    latencies: list[float] = []
    first = threading.Event()

    def on_observation(obs: Any) -> None:
        latencies.append((now_us() - obs.timestamp_us) / 1000.0)
        first.set()

    op = await Peer(args.impl, args.contract, args.room).operator(args.url, on_observation)
    out = Path(args.out)
    end = time.monotonic() + args.wait
    while not first.is_set() and time.monotonic() < end:
        await asyncio.sleep(0.05)
    if first.is_set():
        await asyncio.sleep(2.0)
        latencies.clear()
        Path(f'{out}.measuring').touch()
        await asyncio.sleep(args.seconds)
    got = list(latencies)
    out.write_text(json.dumps({'latencies_ms': got, 'seconds': args.seconds if first.is_set() else 0}))
    await op.disconnect()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument('role', choices=['robot', 'operator'])
    parser.add_argument('--impl', choices=['ours', 'ref'], required=True)
    parser.add_argument('--url', required=True)
    parser.add_argument('--room', required=True)
    parser.add_argument('--contract', required=True)
    parser.add_argument('--cameras', type=int, default=1)
    parser.add_argument('--width', type=int, default=640)
    parser.add_argument('--height', type=int, default=480)
    parser.add_argument('--duration', type=float, default=60.0, help='robot: seconds to send')
    parser.add_argument('--seconds', type=float, default=10.0, help='operator: seconds to count')
    parser.add_argument('--wait', type=float, default=30.0, help='operator: seconds to wait for a first observation')
    parser.add_argument('--out', default='operator.json')
    args = parser.parse_args()
    asyncio.run(run_robot(args) if args.role == 'robot' else run_operator(args))
    os._exit(0)  # skip finalization with the LiveKit FFI's threads still around


if __name__ == '__main__':
    main()
