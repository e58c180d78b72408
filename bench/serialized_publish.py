"""Publishing an Observation: the Python message (what operator_bridge does) against CDR bytes.

    python -m bench.serialized_publish [--seconds 4]

Side by side in one run, for one 640x480 and three 1280x720 cameras, with one subscriber in
another process (as a policy or `ros2 bag record` would be): the time from a Portal observation
to ``publish`` returning, p50/p95 in ms, for ``observation_to_msg`` + ``publish(msg)`` and for
``observation_to_cdr`` + ``publish(bytes)``, each under Fast DDS's SYNCHRONOUS and ASYNCHRONOUS
publication modes (``RMW_FASTRTPS_PUBLICATION_MODE``, one child process per mode), and for the
bytes path the delivery time to the subscriber. Which path and mode operator_bridge uses rests on
these numbers (bench/notes.md).
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path
import subprocess
import sys
import threading
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
import rclpy, sys, time
from rclpy.node import Node
from portal_bridge_msgs.msg import Observation
rclpy.init()
node = Node('observation_sink')

def received(msg):
    print(time.time_ns() // 1000 - msg.timestamp_us, flush=True)  # the source stamps publish time

node.create_subscription(Observation, '/bench_observation', received, 10)
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
    sink = subprocess.Popen([sys.executable, '-c', _SUBSCRIBER], env=env, stdout=subprocess.PIPE, text=True)
    delivered: list[float] = []
    reader = threading.Thread(target=lambda: delivered.extend(int(x) / 1000.0 for x in sink.stdout), daemon=True)
    reader.start()
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
            frames = {f'cam{c}': VideoFrame(w, h, camera_frame(w, h, 0, c, rng).tobytes(), 0) for c in range(cameras)}
            tracks = list(frames)
            paths = {
                'observation_to_msg + publish(msg)': observation_to_msg,
                'observation_to_cdr + publish(bytes)': observation_to_cdr,
            }
            for path, build in paths.items():
                samples = []
                time.sleep(0.5)  # the previous path's messages delivered
                delivered.clear()
                stop = time.monotonic() + seconds
                while time.monotonic() < stop:
                    ts = time.time_ns() // 1000
                    obs = Observation(State({}, tuple(float(i) for i in range(7)), ts, tuple(names)), frames, ts)
                    start = time.perf_counter()
                    pub.publish(build(obs, tracks, names, 'robot'))
                    samples.append((time.perf_counter() - start) * 1000.0)
                    time.sleep(1 / 30)
                time.sleep(0.5)
                s, d = summary(samples), summary(list(delivered))
                rows.append([f'{cameras} x {w}x{h}', path, s['p50'], s['p95'], s['n'], d['p50'], d['p95'], d['n']])
    finally:
        rclpy.shutdown(context=context)
        sink.terminate()
        sink.wait(5)
    return rows


MODES = ('SYNCHRONOUS', 'ASYNCHRONOUS')


def main() -> int:
    parser = argparse.ArgumentParser(prog='python -m bench.serialized_publish', description=__doc__.split('\n\n')[0])
    parser.add_argument('--seconds', type=float, default=4.0, help='per path, size and mode')
    parser.add_argument('--child', action='store_true', help=argparse.SUPPRESS)  # one mode, rows as JSON
    args = parser.parse_args()
    if args.child:
        print(json.dumps(measure(args.seconds)))
        return 0
    rows = []
    for mode in MODES:  # the mode is read when rclpy starts: one process each
        env = dict(os.environ, RMW_FASTRTPS_PUBLICATION_MODE=mode)
        cmd = [sys.executable, '-m', 'bench.serialized_publish', '--seconds', str(args.seconds), '--child']
        run = subprocess.run(cmd, env=env, capture_output=True, text=True, check=True)
        for row in json.loads(run.stdout.strip().splitlines()[-1]):
            rows.append([row[0], mode, *row[1:]])
    rows.sort(key=lambda r: (r[0], r[2], MODES.index(r[1])))
    print(table(['cameras', 'publication mode', 'path', 'p50 ms', 'p95 ms', 'samples',
                 'delivered p50 ms', 'delivered p95 ms', 'delivered'], rows))  # fmt: skip
    return 0


if __name__ == '__main__':
    sys.exit(main())
