"""sim_robot: a robot without hardware, so the whole Portal loop closes on one machine.

Publishes synthetic camera images (a moving colour pattern with the frame number drawn in
digits, and encoded as a 32-block barcode along the top edge so a program can read it back
even through lossy video) and ``joint_states`` at configurable rates and sizes. Joints follow
the commands the robot bridge publishes (any of its command types) at a bounded speed; a Twist
moves an odometry joint.
"""

from __future__ import annotations

import array
import functools
import math
import time
from typing import Any, Optional, Sequence

import numpy as np
from rclpy.node import Node
from sensor_msgs.msg import Image, JointState
from std_msgs.msg import Header

from ..commands import COMMANDS
from ..ros.params import declare

__all__ = ['SimRobot', 'draw_frame', 'read_barcode', 'main']

BARCODE_BITS = 32
BARCODE_HEIGHT = 16

# 3x5 digit glyphs, one string per row.
_GLYPHS = {
    '0': ('111', '101', '101', '101', '111'), '1': ('010', '110', '010', '010', '111'),
    '2': ('111', '001', '111', '100', '111'), '3': ('111', '001', '111', '001', '111'),
    '4': ('101', '101', '111', '001', '001'), '5': ('111', '100', '111', '001', '111'),
    '6': ('111', '100', '111', '101', '111'), '7': ('111', '001', '010', '010', '010'),
    '8': ('111', '101', '111', '101', '111'), '9': ('111', '101', '111', '001', '111'),
}  # fmt: skip
_GLYPH_MASKS = {d: np.array([[c == '1' for c in row] for row in rows]) for d, rows in _GLYPHS.items()}


@functools.lru_cache(maxsize=64)
def _glyph(digit: str, scale: int) -> np.ndarray:
    return np.kron(_GLYPH_MASKS[digit], np.ones((scale, scale), dtype=bool))


def _draw_number(img: np.ndarray, number: int, x: int, y: int, scale: int) -> None:
    for i, digit in enumerate(str(number)):
        mask = _glyph(digit, scale)
        x0 = x + i * 4 * scale
        h, w = mask.shape
        if y + h > img.shape[0] or x0 + w > img.shape[1]:
            return
        region = img[y : y + h, x0 : x0 + w]
        region[mask] = 255
        region[~mask] //= 3


@functools.lru_cache(maxsize=8)
def _band_strip(width: int, height: int, hue: int) -> np.ndarray:
    """Colours along the diagonal: pixel (x, y) of a frame with band offset o is ``strip[o + x + y]``."""
    phase = np.arange(width + height + 256) % 256
    stops = np.arange(256)
    palette = np.stack([(stops + hue) % 256, (255 - stops) // 2 + 64, (stops * 2 + hue) % 256], axis=1)
    return np.ascontiguousarray(palette.astype(np.uint8)[phase])


def draw_frame(width: int, height: int, number: int, hue: int = 0) -> np.ndarray:
    """One synthetic RGB frame: moving diagonal bands, the number in digits, and its barcode.

    The bands are a strided view of one diagonal strip, copied once: the simulated cameras of the
    demo and the tests cost a memcpy per frame, not a per-pixel palette lookup (7.5 ms -> under
    1 ms at 640x480), so the CPU goes to the bridges they exercise.
    """
    strip = _band_strip(width, height, hue % 256)[(4 * number) % 256 :]
    img = np.lib.stride_tricks.as_strided(strip, shape=(height, width, 3), strides=(3, 3, 1)).copy()
    bar_w = max(width // BARCODE_BITS, 1)
    band = img[:BARCODE_HEIGHT]
    band[:] = 0
    for bit in range(BARCODE_BITS):
        if (number >> (BARCODE_BITS - 1 - bit)) & 1:
            band[:, bit * bar_w : (bit + 1) * bar_w] = 255
    scale = max(height // 60, 2)
    _draw_number(img, number, 8, BARCODE_HEIGHT + 8, scale)
    return img


def read_barcode(img: np.ndarray) -> int:
    """The frame number from a frame drawn by :func:`draw_frame` (tolerates lossy video)."""
    width = img.shape[1]
    bar_w = max(width // BARCODE_BITS, 1)
    row = img[BARCODE_HEIGHT // 2, :, :].astype(np.int32).mean(axis=1)
    value = 0
    for bit in range(BARCODE_BITS):
        center = bit * bar_w + bar_w // 2
        value = (value << 1) | int(row[center] > 127)
    return value


class SimRobot(Node):
    def __init__(self, **kwargs: Any) -> None:
        super().__init__('sim_robot', **kwargs)

        def p(name: str, default: Any, description: str, **options: Any) -> Any:
            return declare(self, name, default, description, **options)

        def lp(name: str, default: Sequence[str], description: str) -> list[str]:
            return declare(self, name, [], description, item_type=str) or list(default)

        self.cameras = lp('camera_names', ['front', 'wrist'], 'Cameras; each publishes <name>/image_raw.')
        self.width = p('camera_width', 640, 'Image width in pixels.')
        self.height = p('camera_height', 480, 'Image height in pixels.')
        self.fps = p('camera_fps', 30.0, 'Camera frame rate.')
        self.encoding = p('camera_encoding', 'rgb8', 'Image encoding.', choices=('rgb8', 'bgr8'))
        self.sizes = {
            cam: (
                p(f'cameras.{cam}.width', self.width, f'Width of {cam} (default camera_width).'),
                p(f'cameras.{cam}.height', self.height, f'Height of {cam} (default camera_height).'),
            )
            for cam in self.cameras
        }
        self.joints = lp(
            'joint_names',
            ['shoulder_pan', 'shoulder_lift', 'elbow_flex', 'wrist_flex', 'wrist_roll', 'gripper'],
            'Joints published on joint_states (positions follow the commands).',
        )
        self.joint_rate = p('joint_rate_hz', 100.0, 'joint_states rate.')
        self.command_type = p('command_type', 'float64_multi_array', 'Commands to follow.', choices=tuple(COMMANDS))
        self.command_topic = p('command_topic', '/forward_position_controller/commands', 'Command topic.')
        self.command_joints = lp('command_joints', self.joints, 'Joint order of Float64MultiArray commands.')
        self.max_velocity = p('max_velocity', 3.0, 'Joint speed limit while following commands (units/s).')
        self.positions = np.zeros(len(self.joints))
        self.targets = np.zeros(len(self.joints))
        self.velocities = np.zeros(len(self.joints))
        self._twist = (0.0, 0.0)
        self._index = {name: i for i, name in enumerate(self.joints)}
        self.frame_number = 0
        self.commands_received = 0
        self._last_step = time.monotonic()
        self.image_pubs = [self.create_publisher(Image, f'{cam}/image_raw', 5) for cam in self.cameras]
        self.joint_pub = self.create_publisher(JointState, 'joint_states', 10)
        self.kind = COMMANDS[self.command_type]
        self.create_subscription(self.kind.message, self.command_topic, self._on_command, 10)
        self.create_timer(1.0 / self.fps, self._publish_images)
        self.create_timer(1.0 / self.joint_rate, self._publish_joints)
        self.get_logger().info(
            f'camera(s) {", ".join(f"{c} {w}x{h}" for c, (w, h) in self.sizes.items())} at {self.fps:g} fps, '
            f'{len(self.joints)} joints at {self.joint_rate:g} Hz, '
            f'following {self.command_type} on {self.command_topic}'
        )

    def _stamp(self) -> Header:
        return Header(stamp=self.get_clock().now().to_msg())

    def _publish_images(self) -> None:
        self.frame_number += 1
        header = self._stamp()
        for i, (cam, pub) in enumerate(zip(self.cameras, self.image_pubs)):
            width, height = self.sizes[cam]
            img = draw_frame(width, height, self.frame_number, hue=i * 80)
            if self.encoding == 'bgr8':
                img = np.ascontiguousarray(img[:, :, ::-1])
            msg = Image(header=Header(stamp=header.stamp, frame_id=f'{cam}_optical_frame'),
                        height=height, width=width, encoding=self.encoding, step=width * 3)  # fmt: skip
            buf = array.array('B')
            buf.frombytes(img.tobytes())
            msg.data = buf
            pub.publish(msg)

    def _set_targets(self, names: Sequence[str], values: Sequence[float]) -> None:
        for name, value in zip(names, values):
            i = self._index.get(name)
            if i is not None and math.isfinite(value):
                self.targets[i] = value
        self.commands_received += 1

    def _on_command(self, msg: Any) -> None:
        names, values = self.kind.follow(msg, self.command_joints)
        if self.kind.joint_based:
            if names:
                self._set_targets(names, values)
            return
        slots = dict(zip(names, values))
        self._twist = (slots['linear_x'], slots['angular_z'])
        self.commands_received += 1

    def _publish_joints(self) -> None:
        now = time.monotonic()
        dt, self._last_step = now - self._last_step, now
        if not self.kind.joint_based:
            self.velocities[:] = 0.0
            self.velocities[0] = self._twist[0]
            if len(self.velocities) > 1:
                self.velocities[1] = self._twist[1]
            self.positions += self.velocities * dt
        else:
            step = np.clip(self.targets - self.positions, -self.max_velocity * dt, self.max_velocity * dt)
            self.velocities = step / dt if dt > 0 else np.zeros_like(step)
            self.positions += step
        msg = JointState(header=self._stamp(), name=list(self.joints))
        msg.position = array.array('d', self.positions.tolist())
        msg.velocity = array.array('d', self.velocities.tolist())
        self.joint_pub.publish(msg)


def main(args: Optional[Sequence[str]] = None) -> int:
    from .node_main import run_node

    return run_node(SimRobot, args)


if __name__ == '__main__':
    import sys

    sys.exit(main())
