"""robot_bridge's inputs: cameras and joint_states in, Portal video and state out.

Part of :class:`~.robot_bridge.RobotBridge`. Camera messages arrive serialized and are read in
place (:mod:`..ros.cdr_images`: no Python message, no copy of the pixels) and handed to one
:class:`~..ros.frame_worker.FrameWorker` per camera (conversion off the executor thread); joint
states are forwarded at ``state_rate_hz`` and every one of them updates the measured positions the
emergency stop of a position output stops at. Input health (publishers, message age) is checked
once a second and reported in the ``inputs`` diagnostics task.
"""

from __future__ import annotations

import time

from sensor_msgs.msg import CompressedImage, Image, JointState

from ..portal import now_us
from ..portal.errors import NotConnected, PortalError
from ..ros.cdr_images import CdrError, RawCompressedImage, RawImage, read_compressed_image, read_image
from ..ros.counters import reason_of
from ..ros.diagnostics import ERROR, OK, WARN
from ..ros.frame_worker import FrameWorker
from ..ros.images import ImageConversionError, compressed_format, compressed_size, compressed_to_rgb, image_to_rgb
from ..ros.input_health import change_lines
from ..ros.input_health import summary as input_summary
from ..ros.input_health import values as input_values
from ..ros.qos import incompatible_qos_callbacks, subscription_qos
from ..ros.stamps import stamp_to_us

__all__ = ['RobotInputs']

_INPUT_GRACE_S = 5.0  # discovery of the publishers takes a moment (2-3 s measured in the demo)


class RobotInputs:
    """Subscriptions, conversion and input health of robot_bridge. Mixed into RobotBridge, whose attributes it uses."""

    # -- inputs ------------------------------------------------------------------------------------
    def _subscribe_inputs(self) -> None:
        events = incompatible_qos_callbacks(
            lambda e: self.count('incompatible-qos', 'a publisher offers incompatible QoS')
        )
        qos = subscription_qos(self, self.joint_states_topic, self.qos_mode)
        self.inputs.add('joint_states', self.resolve_topic_name(self.joint_states_topic))
        self.create_subscription(
            JointState, self.joint_states_topic, self.guarded(self._on_joint_state), qos, event_callbacks=events
        )
        for spec in self.contract.videos:
            topic = self.param(
                f'cameras.{spec.name}.topic',
                f'/{spec.name}/image_raw',
                f"Input of video track '{spec.name}'.",
            )
            transport = self.param(
                f'cameras.{spec.name}.transport',
                'raw',
                'raw: sensor_msgs/Image; compressed: sensor_msgs/CompressedImage.',
            )
            if transport not in ('raw', 'compressed'):
                raise SystemExit(
                    self._fatal(f"cameras.{spec.name}.transport must be raw or compressed, got '{transport}'")
                )
            qos = subscription_qos(self, topic, self.qos_mode)
            msg_type = Image if transport == 'raw' else CompressedImage
            handler = self._on_image if transport == 'raw' else self._on_compressed
            # Serialized bytes in, read in place (ros/cdr_images.py): no Python message, no pixel copy.
            read = read_image if transport == 'raw' else read_compressed_image
            worker = FrameWorker(
                spec.name,
                lambda msg, s=spec, h=handler: h(s, msg),
                on_drop=lambda n=spec.name: self.count(
                    'frames-behind', f"camera '{n}': conversion fell behind the camera; dropping the oldest frame"
                ),
                on_error=lambda exc, n=spec.name: self.count(
                    'internal-error', f"camera '{n}': frame handling failed: {exc!r}"
                ),
            )
            self._workers.append(worker)
            name = f'camera {spec.name}'
            self.inputs.add(name, self.resolve_topic_name(topic))

            pacing = self.paced_states is not None and spec is self.contract.videos[0]

            def on_frame(wire: bytes, n=name, w=worker, pacing=pacing, read=read, cam=spec.name) -> None:
                self.inputs.seen(n, time.monotonic())
                try:
                    msg = read(wire)
                except CdrError as exc:
                    self.count(exc.reason, f"camera '{cam}': {exc}")
                    return
                if pacing:
                    self._pace_state(msg)
                w.submit(msg)

            self.create_subscription(msg_type, topic, self.guarded(on_frame), qos, event_callbacks=events, raw=True)
            self.get_logger().info(f"video track '{spec.name}' ({spec.codec.name}) <- {topic} ({transport})")

    def _stamp(self, header) -> int:
        ts = stamp_to_us(header.stamp)
        if ts == 0:
            self.count('zero-stamp', 'a message has a zero header.stamp; using the receive time')
            return now_us()
        return ts

    def _on_joint_state(self, msg: JointState) -> None:
        self.inputs.seen('joint_states', time.monotonic())
        # Every message, even one not forwarded: the e-stop of a position output stops here.
        self._measured.update(zip(msg.name, msg.position))
        # One state per frame of the pacing camera, the one nearest to the frame (or, while that
        # camera is silent, at state_rate_hz by stamp): two states close together would compete
        # for one frame on the operator, and one of them would be dropped (ros/state_rate.py).
        stamp = self._stamp(msg.header)
        paced = self.paced_states is not None and self.paced_states.pacing(time.monotonic())
        if not paced and not self.state_rate.admit(stamp):
            return
        start = time.perf_counter_ns()
        values, missing = self.state_map.extract(msg)
        if missing:
            self.count(
                'missing-joints',
                f'joint_states lacks joints for state fields {missing}; their last values are kept',
            )
        if not values:
            return
        if paced:
            for picked, picked_values in self.paced_states.offer(stamp, values):
                self._send_state(picked, picked_values, start)
            return
        self._send_state(stamp, values, start)

    def _send_state(self, stamp: int, values, start: int) -> None:
        if stamp <= self._last_state_stamp:  # never one older than a state already sent
            return
        self._last_state_stamp = stamp
        self.latency['state_delivery'].add(now_us() - stamp)
        self._send(lambda: self.robot.send_state(values, stamp, check_types=False))
        self.latency['state_bridge'].add((time.perf_counter_ns() - start) // 1000)

    def _pace_state(self, msg) -> None:
        """A frame of the pacing camera arrived (executor thread): forward its nearest state."""
        ts = stamp_to_us(msg.header.stamp) or now_us()
        for stamp, values in self.paced_states.on_frame(ts, time.monotonic()):
            self._send_state(stamp, values, time.perf_counter_ns())

    def _send(self, send) -> None:
        try:
            send()
        except NotConnected:
            self.count('not-connected')
        except PortalError as exc:
            self.count(reason_of(exc), f'cannot send: {exc}')

    def _on_image(self, spec, msg: RawImage) -> None:
        start = time.perf_counter_ns()
        try:
            rgb = image_to_rgb(msg)
        except ImageConversionError as exc:
            self.count(exc.reason, f"camera '{spec.name}': {exc}")
            return
        if spec.codec.is_webrtc and (rgb.shape[0] % 2 or rgb.shape[1] % 2):
            self.count(
                'odd-size-cropped',
                f"camera '{spec.name}': {rgb.shape[1]}x{rgb.shape[0]} cropped to even size",
            )
            rgb = rgb[: rgb.shape[0] // 2 * 2, : rgb.shape[1] // 2 * 2]
        stamp = self._stamp(msg.header)
        self.latency['frame_delivery'].add(now_us() - stamp)
        converted = time.perf_counter_ns()
        self._send(lambda: self.robot.send_video_frame(spec.name, rgb, timestamp_us=stamp))
        # bridge = our conversion; codec = the SDK's RGB->I420 capture, or JPEG/PNG encoding
        self.latency['frame_bridge'].add((converted - start) // 1000)
        self.latency['frame_codec'].add((time.perf_counter_ns() - converted) // 1000)

    def _on_compressed(self, spec, msg: RawCompressedImage) -> None:
        fmt = compressed_format(msg)
        wanted = spec.codec.spec.ros_format  # None: the track's codec is not a CompressedImage format
        try:
            if fmt is not None and fmt == wanted:  # already in the track's codec: forward as is
                width, height = compressed_size(msg)
                ts = self._stamp(msg.header)
                self._send(lambda: self.robot.send_encoded_frame(spec.name, bytes(msg.data), width, height, ts))
                return
            rgb = compressed_to_rgb(msg)
        except ImageConversionError as exc:
            self.count(exc.reason, f"camera '{spec.name}': {exc}")
            return
        if spec.codec.is_webrtc:
            rgb = rgb[: rgb.shape[0] // 2 * 2, : rgb.shape[1] // 2 * 2]
        self._send(lambda: self.robot.send_video_frame(spec.name, rgb, timestamp_us=self._stamp(msg.header)))

    def _check_inputs(self) -> None:
        """Once a second: publishers and message age of every input; one log line per change."""
        now = time.monotonic()
        if now - self._inputs_since < _INPUT_GRACE_S:  # discovery of the publishers takes a moment
            return
        publishers = {name: self.count_publishers(self.inputs.topic(name)) for name in self.inputs.names}
        self._input_statuses, changed = self.inputs.evaluate(now, publishers)
        for healthy, line in change_lines(changed):
            if healthy:  # one call site per severity: rclpy refuses a call site that changes it
                self.get_logger().info(line)
            else:
                self.get_logger().warning(line)

    def _diag_inputs(self):
        statuses = self._input_statuses
        values = input_values(statuses)
        if not statuses:
            return OK, 'checking inputs', values
        any_bad, all_bad, text = input_summary(statuses)
        if all_bad:
            return ERROR, f'the robot sends nothing: {text}', values
        return (WARN if any_bad else OK), text, values
