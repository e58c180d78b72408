"""Steady robot and policy traffic for fault tests: a camera and joint states, numbered actions."""

from __future__ import annotations

import threading
import time
from typing import Callable

import numpy as np
from sensor_msgs.msg import Image, JointState
from std_msgs.msg import Header

from portal_bridge.nodes.sim_robot import draw_frame
from portal_bridge.ros.stamps import us_to_stamp


class Publisher(threading.Thread):
    """Calls ``step(i)`` at ``hz`` on its own thread until stopped."""

    def __init__(self, step: Callable[[int], None], hz: float) -> None:
        super().__init__(daemon=True)
        self.step, self.period = step, 1.0 / hz
        self.count = 0
        self._halt = threading.Event()

    def run(self) -> None:
        next_t = time.monotonic()
        while not self._halt.is_set():
            self.step(self.count)
            self.count += 1
            next_t += self.period
            time.sleep(max(0.0, next_t - time.monotonic()))

    def stop(self) -> None:
        self._halt.set()
        self.join(2)


def robot_traffic(
    node, width: int = 320, height: int = 240, camera: str = '/cam/image_raw', hz: float = 30.0
) -> Publisher:
    """A camera and joint states (joint ``j1`` = frame number), stamped at publish time."""
    cam = node.create_publisher(Image, camera, 5)
    js = node.create_publisher(JointState, 'joint_states', 10)
    frames = [draw_frame(width, height, n * 97).tobytes() for n in range(8)]
    import array

    buffers = []
    for f in frames:
        b = array.array('B')
        b.frombytes(f)
        buffers.append(b)

    def step(i: int) -> None:
        stamp = us_to_stamp(time.time_ns() // 1000)
        img = Image(header=Header(stamp=stamp), height=height, width=width, encoding='rgb8', step=width * 3)
        img.data = buffers[i % 8]
        cam.publish(img)
        js.publish(JointState(header=Header(stamp=stamp), name=['j1', 'j2'], position=[float(i), 0.0]))

    return Publisher(step, hz)


def numbered_actions(node, topic: str, code: float, hz: float = 30.0) -> Publisher:
    """Actions ``j1`` = sequence number, ``j2`` = ``code`` (who sent it), on ``topic``."""
    pub = node.create_publisher(JointState, topic, 10)
    return Publisher(lambda i: pub.publish(JointState(name=['j1', 'j2'], position=[float(i), code])), hz)


def percentile(values, q: float) -> float:
    return float(np.percentile(values, q)) if len(values) else float('nan')
