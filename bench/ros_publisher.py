"""A separate ROS process that publishes camera images and joint states, stamped at publish time.

Used by the benchmarks as the robot's camera drivers and joint_state_broadcaster, and as one end
of the plain-ROS baseline:

    python -m bench.ros_publisher --cameras 3 --width 1280 --height 720 --fps 30 --state-hz 100

``--pattern bands`` (default) sends the simulator's numbered frames (smooth bands, cheap for any
codec); ``--pattern camera`` sends camera-like frames (lighting gradients, moving blocks, Gaussian
sensor noise, see :func:`camera_frame`), so lossless frame codecs (PNG) cost what they cost on a
real camera. ``--cameras 0`` publishes joint states only.
"""

from __future__ import annotations

import argparse
import array
import threading
import time

import numpy as np
import rclpy
from rclpy.node import Node
from sensor_msgs.msg import Image, JointState
from std_msgs.msg import Header

from portal_bridge.nodes.sim_robot import draw_frame

JOINTS = ['j0', 'j1', 'j2', 'j3', 'j4', 'j5']
VARIANTS = 8  # distinct frames per camera, cycled, so video encoders do real work
CAMERA_VARIANTS = 30  # camera pattern: one second of distinct frames at 30 fps
NOISE_SIGMA = 4.0  # Gaussian sensor noise of the camera pattern, in 8-bit levels


def camera_frame(width: int, height: int, n: int, camera: int, rng: np.random.Generator) -> np.ndarray:
    """A camera-like RGB frame: lit-scene gradients, blocks that move with ``n``, sensor noise.

    Never flat: the noise (sigma :data:`NOISE_SIGMA`) is what makes real camera images cost a
    lossless encoder several times more time and bytes than synthetic ones.
    """
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    fx, fy = x / width, y / height
    tint = np.array([(40 * camera) % 90, (25 * camera) % 70, (55 * camera) % 80], np.float32)
    img = np.stack([30 + 170 * fx, 40 + 140 * fy, 70 + 110 * (1 - fx) * fy], axis=-1) + tint
    img *= (0.75 + 0.25 * np.cos((fx - 0.5) * np.pi))[..., None]  # vignetting
    colours = [(200, 50, 40), (40, 160, 60), (50, 70, 200), (220, 200, 60), (30, 30, 30)]
    for k, colour in enumerate(colours):  # blocks, each on its own path
        bw, bh = width // (6 + k), height // (5 + k)
        x0 = int((width - bw) * (0.5 + 0.5 * np.sin(0.21 * n * (1 + 0.3 * k) + k + camera)))
        y0 = int((height - bh) * (0.5 + 0.5 * np.cos(0.17 * n * (1 + 0.2 * k) + 2 * k)))
        block = img[y0 : y0 + bh, x0 : x0 + bw]
        block[:] = np.array(colour, np.float32) * (0.8 + 0.2 * fy[y0 : y0 + bh, x0 : x0 + bw, None])
        if k == 3:  # one textured block (a checkerboard target)
            cy, cx = np.mgrid[0 : block.shape[0], 0 : block.shape[1]]
            block[((cy // 8 + cx // 8) % 2) == 1] *= 0.3
    img += rng.normal(0.0, NOISE_SIGMA, img.shape).astype(np.float32)
    return np.clip(img + 0.5, 0, 255).astype(np.uint8)


def frames(width: int, height: int, hue: int, pattern: str = 'bands', camera: int = 0) -> list[array.array]:
    out = []
    rng = np.random.default_rng(camera)
    for n in range(CAMERA_VARIANTS if pattern == 'camera' else VARIANTS):
        if pattern == 'camera':
            img = camera_frame(width, height, n, camera, rng)
        else:
            img = draw_frame(width, height, n * 97, hue=hue)
        buf = array.array('B')
        buf.frombytes(img.tobytes())
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
    parser.add_argument('--pattern', choices=['bands', 'camera'], default='bands')
    args = parser.parse_args()
    rclpy.init()
    node = Node('bench_publisher')
    cams = [node.create_publisher(Image, f'/cam{i}/image_raw', 5) for i in range(args.cameras)]
    joints = node.create_publisher(JointState, '/joint_states', 10)
    data = [frames(args.width, args.height, 60 * i, args.pattern, i) for i in range(args.cameras)]
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
                msg.data = data[i][n % len(data[i])]
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

    threads = [threading.Thread(target=run_joints, daemon=True)]
    if cams:
        threads.append(threading.Thread(target=run_images, daemon=True))
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
