"""A separate ROS process that publishes camera images and joint states, stamped at publish time.

Used by the benchmarks as the robot's camera drivers and joint_state_broadcaster, and as one end
of the plain-ROS baseline:

    python -m bench.ros_publisher --cameras 3 --width 1280 --height 720 --fps 30 --state-hz 100
"""

from __future__ import annotations

import argparse
import array
import threading
import time

import rclpy
from rclpy.node import Node
from sensor_msgs.msg import Image, JointState
from std_msgs.msg import Header

from portal_bridge.sim_robot import draw_frame

JOINTS = ['j0', 'j1', 'j2', 'j3', 'j4', 'j5']
VARIANTS = 8  # distinct frames per camera, cycled, so video encoders do real work


def frames(width: int, height: int, hue: int) -> list[array.array]:
    out = []
    for n in range(VARIANTS):
        buf = array.array('B')
        buf.frombytes(draw_frame(width, height, n * 97, hue=hue).tobytes())
        out.append(buf)
    return out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument('--cameras', type=int, default=1)
    parser.add_argument('--width', type=int, default=640)
    parser.add_argument('--height', type=int, default=480)
    parser.add_argument('--fps', type=float, default=30.0)
    parser.add_argument('--state-hz', type=float, default=30.0)
    parser.add_argument('--duration', type=float, default=3600.0)
    args = parser.parse_args()
    rclpy.init()
    node = Node('bench_publisher')
    cams = [node.create_publisher(Image, f'/cam{i}/image_raw', 5) for i in range(args.cameras)]
    joints = node.create_publisher(JointState, '/joint_states', 10)
    data = [frames(args.width, args.height, 60 * i) for i in range(args.cameras)]
    stop = threading.Event()

    def run_images() -> None:
        n = 0
        period = 1.0 / args.fps
        next_t = time.monotonic()
        while not stop.is_set():
            stamp = node.get_clock().now().to_msg()
            for i, pub in enumerate(cams):
                msg = Image(header=Header(stamp=stamp, frame_id=f'cam{i}'), height=args.height, width=args.width,
                            encoding='rgb8', step=args.width * 3)  # fmt: skip
                msg.data = data[i][n % VARIANTS]
                pub.publish(msg)
            n += 1
            next_t += period
            time.sleep(max(0.0, next_t - time.monotonic()))

    def run_joints() -> None:
        n = 0
        period = 1.0 / args.state_hz
        next_t = time.monotonic()
        while not stop.is_set():
            msg = JointState(header=Header(stamp=node.get_clock().now().to_msg()), name=JOINTS)
            msg.position = array.array('d', [0.01 * n + i for i in range(len(JOINTS))])
            joints.publish(msg)
            n += 1
            next_t += period
            time.sleep(max(0.0, next_t - time.monotonic()))

    threads = [threading.Thread(target=run_images, daemon=True), threading.Thread(target=run_joints, daemon=True)]
    for t in threads:
        t.start()
    try:
        time.sleep(args.duration)
    except KeyboardInterrupt:
        pass
    stop.set()
    for t in threads:
        t.join(1)
    node.destroy_node()
    rclpy.try_shutdown()


if __name__ == '__main__':
    main()
