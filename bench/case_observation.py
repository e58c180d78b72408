"""Cases 1-3: observation latency through the bridges, the bare core alongside, and the plain ROS floor."""

from __future__ import annotations

import time
from typing import Any, Optional

from sensor_msgs.msg import Image

from portal_bridge_msgs.msg import Observation

from .harness import RELIABLE, Processes
from .runner import Bench, Emit
from .stats import fmt, summary, table


def observation_latency(
    b: Bench, width: int, height: int, cameras: int, codec: str, contract: Optional[str] = None, pattern: str = 'bands'
) -> dict[str, Any]:
    """The full ROS path; ``contract`` (a portal.yaml path) and the publisher's frame ``pattern`` as given."""
    procs = Processes(b.env)
    room = b.room()
    got: list[tuple[float, int]] = []
    sub = b.operator_side.node.create_subscription(
        Observation, '/operator_bridge/observation', lambda m: got.append((time.time_ns() // 1000, m.timestamp_us)),
        RELIABLE,
    )  # fmt: skip
    try:
        b.bridges(procs, contract or b.contract(cameras, codec), room, cameras=cameras)
        procs.start('publisher', ['-m', 'bench.ros_publisher', '--cameras', str(cameras), '--width', str(width),
                                  '--height', str(height), '--state-hz', '30', '--pattern', pattern],
                    b.base)  # fmt: skip
        if not b.wait(lambda: len(got) > 30, 60):
            return {'error': 'no observations'}
        time.sleep(2)  # warm-up: encoders ramp up their bitrate
        got.clear()
        seconds = b.seconds(8)
        cpu = procs.cpu(seconds)
        samples = [(recv - ts) / 1000.0 for recv, ts in got]  # before the probes: they take seconds too
        probes = b.latency_probes(
            ros_in='robot:state_delivery',
            robot_bridge='robot:state_bridge',
            frame_bridge='robot:frame_bridge',
            frame_codec='robot:frame_codec',
            age_at_operator='operator:observation_age',
            operator_bridge='operator:observation_bridge',
        )
        return {'total': summary(samples), 'rate': len(samples) / seconds, **probes, 'cpu': cpu}
    finally:
        b.operator_side.node.destroy_subscription(sub)
        procs.stop()


def core_latency(b: Bench, width: int, height: int, cameras: int, codec: str) -> dict[str, Any]:
    import asyncio

    from portal_bridge.portal import Operator

    from .core_peer import contract

    procs = Processes(b.env)
    room = b.room()
    got: list[float] = []

    async def run() -> None:
        op = Operator(contract(cameras, codec))
        op.on_observation(lambda o: got.append((o.received_ns // 1000 - o.timestamp_us) / 1000.0))
        await op.connect(b.server.url, api_key='devkey', api_secret='secret', identity='op', room=room)
        procs.start('core_robot', ['-m', 'bench.core_peer', 'robot', '--url', b.server.url, '--room', room,
                                   '--cameras', str(cameras), '--width', str(width), '--height', str(height),
                                   '--codec', codec, '--duration', '60'], b.base)  # fmt: skip
        for _ in range(600):
            if len(got) > 30:
                break
            await asyncio.sleep(0.1)
        await asyncio.sleep(2)
        got.clear()
        seconds = b.seconds(8)
        await asyncio.sleep(seconds)
        b._core_rate = len(got) / seconds
        b._core_samples = list(got)
        await op.disconnect()

    try:
        asyncio.run(run())
    finally:
        procs.stop()
    return {'total': summary(b._core_samples), 'rate': b._core_rate}


def ros_floor(b: Bench, width: int, height: int) -> dict[str, Any]:
    procs = Processes(b.env)
    got: list[float] = []

    def on_image(msg: Image) -> None:
        s = msg.header.stamp
        got.append(time.time() * 1000.0 - (s.sec * 1000.0 + s.nanosec / 1e6))

    sub = b.robot_side.node.create_subscription(Image, '/cam0/image_raw', on_image, RELIABLE)
    try:
        procs.start('publisher', ['-m', 'bench.ros_publisher', '--cameras', '1', '--width', str(width),
                                  '--height', str(height)], b.base)  # fmt: skip
        b.wait(lambda: len(got) > 30, 30)
        got.clear()
        seconds = b.seconds(6)
        time.sleep(seconds)
        return {'total': summary(list(got)), 'rate': len(got) / seconds}
    finally:
        b.robot_side.node.destroy_subscription(sub)
        procs.stop()


def section(b: Bench, emit: Emit) -> None:
    emit('## 1-3. Observation latency (robot-side Image + JointState publish -> operator-side Observation)\n')
    sizes = [(640, 480)] if b.quick else [(640, 480), (1280, 720)]
    cams = [1] if b.quick else [1, 3]
    codecs = ['h264'] if b.quick else ['h264', 'mjpeg']
    rows, floor_rows = [], []
    for w, h in sizes:
        for n in cams:
            for codec in codecs:
                r = observation_latency(b, w, h, n, codec)
                c = core_latency(b, w, h, n, codec)
                t = r.get('total', {})
                robot_ms = (r.get('robot_bridge') or 0) + (r.get('frame_bridge') or 0) + (r.get('frame_codec') or 0)
                rows.append([f'{w}x{h}', str(n), codec, t.get('p50'), t.get('p95'), t.get('p99'), r.get('rate'),
                             r.get('ros_in'), r.get('robot_bridge'), r.get('frame_bridge'), r.get('frame_codec'),
                             (r.get('age_at_operator') or 0) - (r.get('ros_in') or 0) - robot_ms,
                             (t.get('p50') or 0) - (r.get('age_at_operator') or 0), r.get('operator_bridge'),
                             c['total']['p50'], c['total']['p95'], c['total']['p99'], c['rate'],
                             (t.get('p50') or 0) - (c['total']['p50'] or 0)])  # fmt: skip
                b.__dict__.setdefault('internal', []).append((f'{w}x{h} x{n} {codec}', r))
        floor = ros_floor(b, w, h)['total']
        floor_rows.append([f'{w}x{h}', floor['n'], floor['p50'], floor['p95'], floor['p99']])
    emit(table(['size', 'cams', 'codec', 'p50 ms', 'p95 ms', 'p99 ms', 'obs/s', 'ROS->robot_bridge p50',
                'robot_bridge state p50', 'robot_bridge frame p50', 'frame codec p50',
                'robot_bridge->SFU->operator core p50',
                'core->ROS subscriber p50', 'operator_bridge publish p50', 'core only p50', 'core only p95',
                'core only p99', 'core obs/s', 'ROS layer cost p50'], rows))  # fmt: skip
    emit('\nPlain ROS 2 between two processes on this host (the floor for one ROS hop, rgb8 Image, 30 fps):\n')
    emit(table(['size', 'n', 'p50 ms', 'p95 ms', 'p99 ms'], floor_rows))
    emit('\nBridge-internal time (our code only, no codec: ROS callback -> handed to LiveKit on the robot; '
         'observation emitted -> published on the operator), p50 / p95 ms:\n')  # fmt: skip
    emit(table(['case', 'robot state', 'robot frame', 'operator observation'],
               [[name, f"{fmt(r.get('robot_bridge'))} / {fmt(r.get('robot_bridge_p95'))}",
                 f"{fmt(r.get('frame_bridge'))} / {fmt(r.get('frame_bridge_p95'))}",
                 f"{fmt(r.get('operator_bridge'))} / {fmt(r.get('operator_bridge_p95'))}"]
                for name, r in b.internal]))  # fmt: skip
    cpu_rows = [[name, *(fmt(r.get('cpu', {}).get(p), 0) for p in ('publisher', 'robot_bridge', 'operator_bridge'))]
                for name, r in b.internal]  # fmt: skip
    emit('\nCPU % of one core during those runs:\n')
    emit(table(['case', 'camera publisher', 'robot_bridge', 'operator_bridge'], cpu_rows))
