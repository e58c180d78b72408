"""Publishing an Observation: the Python message (what operator_bridge does) against CDR bytes.

    python -m bench.serialized_publish [--seconds 4]

Side by side in one run, for one 640x480 and three 1280x720 cameras, with one subscriber in
another process (as a policy or `ros2 bag record` would be): the time from a Portal observation
to ``publish`` returning, p50/p95 in ms, for ``observation_to_msg`` + ``publish(msg)`` and for
``observation_to_cdr`` + ``publish(bytes)``. Which one operator_bridge uses rests on these
numbers (bench/notes.md).
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path
import subprocess
import sys
import time

import numpy as np
import rclpy
from rclpy.context import Context

from portal_bridge.portal import Observation, State, VideoFrame
from portal_bridge.ros.cdr_observation import observation_to_cdr
from portal_bridge.ros.observation_msgs import observation_to_msg
from portal_bridge_msgs.msg import Observation as ObservationMsg

from .ros_publisher import camera_frame
from .stats import summary, table

_SUBSCRIBER = """
import rclpy, sys
from rclpy.node import Node
from portal_bridge_msgs.msg import Observation
rclpy.init()
node = Node('observation_sink')
node.create_subscription(Observation, '/bench_observation', lambda m: None, 10)
try:
    rclpy.spin(node)
except BaseException:
    pass
"""


def measure(seconds: float) -> list[list[object]]:
    env = dict(os.environ, ROS_DOMAIN_ID=os.environ.get('ROS_DOMAIN_ID', '97'))
    profile = Path(__file__).resolve().parents[1] / 'portal_bridge' / 'config' / 'fastdds_large_messages.xml'
    env.setdefault('FASTRTPS_DEFAULT_PROFILES_FILE', str(profile))
    env.setdefault('FASTDDS_DEFAULT_PROFILES_FILE', str(profile))
    os.environ.update(
        {k: env[k] for k in ('ROS_DOMAIN_ID', 'FASTRTPS_DEFAULT_PROFILES_FILE', 'FASTDDS_DEFAULT_PROFILES_FILE')}
    )
    sink = subprocess.Popen([sys.executable, '-c', _SUBSCRIBER], env=env)
    context = Context()
    rclpy.init(context=context)
    rows = []
    try:
        node = rclpy.create_node('observation_source', context=context)
        pub = node.create_publisher(ObservationMsg, '/bench_observation', 10)
        end = time.monotonic() + 20
        while pub.get_subscription_count() == 0 and time.monotonic() < end:
            time.sleep(0.05)
        rng = np.random.default_rng(0)
        names = [f'j{i}' for i in range(7)]
        for cameras, w, h in ((1, 640, 480), (3, 1280, 720)):
            ts = time.time_ns() // 1000
            frames = {f'cam{c}': VideoFrame(w, h, camera_frame(w, h, 0, c, rng).tobytes(), ts) for c in range(cameras)}
            obs = Observation(State({}, tuple(float(i) for i in range(7)), ts, tuple(names)), frames, ts)
            tracks = list(frames)
            paths = {
                'observation_to_msg + publish(msg)': observation_to_msg,
                'observation_to_cdr + publish(bytes)': observation_to_cdr,
            }
            for path, build in paths.items():
                samples = []
                stop = time.monotonic() + seconds
                while time.monotonic() < stop:
                    start = time.perf_counter()
                    pub.publish(build(obs, tracks, names, 'robot'))
                    samples.append((time.perf_counter() - start) * 1000.0)
                    time.sleep(1 / 30)
                s = summary(samples)
                rows.append([f'{cameras} x {w}x{h}', path, s['p50'], s['p95'], s['n']])
    finally:
        rclpy.shutdown(context=context)
        sink.terminate()
        sink.wait(5)
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(prog='python -m bench.serialized_publish', description=__doc__.split('\n\n')[0])
    parser.add_argument('--seconds', type=float, default=4.0, help='per path and size')
    args = parser.parse_args()
    print(table(['cameras', 'path', 'p50 ms', 'p95 ms', 'samples'], measure(args.seconds)))
    return 0


if __name__ == '__main__':
    sys.exit(main())
