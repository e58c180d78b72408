"""robot_bridge: a ROS robot as the robot of a Portal session.

Cameras (``sensor_msgs/Image`` or ``CompressedImage``) and ``sensor_msgs/JointState`` go out
as Portal video and state, stamped from their headers. The active operator's actions come in as
commands for ros2_control (``Float64MultiArray``, ``JointTrajectory``, ``JointState`` or
``Twist``); action chunks play as one trajectory or one row per tick. A watchdog applies the
``on_timeout`` policy when the active operator goes quiet, NaN and out-of-limit values never
reach the controller, and only ``allowed_operators`` may take control.

Run: ``ros2 run portal_bridge robot_bridge --ros-args --params-file config/robot_arm.yaml``
"""

from __future__ import annotations

import asyncio
import threading
import time
from typing import Any, Optional, Sequence

from sensor_msgs.msg import CompressedImage, Image, JointState
from std_srvs.srv import Trigger

from portal_bridge_msgs.srv import SetActiveOperator

from .bridge_node import BridgeNode
from .diagnostics import ERROR, OK, WARN
from .images import ImageConversionError, compressed_format, compressed_size, compressed_to_rgb, image_to_rgb
from .joints import (
    COMMAND_MESSAGES,
    COMMAND_TYPES,
    CommandBuilder,
    MappingError,
    StateMapping,
    apply_limits,
    nan_fields,
)
from .node_main import run_node
from .portal import AccessPolicy, Action, ActionChunk, Robot, VideoCodec, now_us
from .portal.errors import NotConnected, PortalError, RpcCallError
from .portal.metrics import SampleRing
from .qos import QOS_MODES, incompatible_qos_callbacks, subscription_qos
from .ros_time import stamp_to_us
from .safety import TIMEOUT_POLICIES, ActionWatchdog, ChunkPlayer

__all__ = ['RobotBridge', 'main']

_DEFAULT_COMMAND_TOPICS = {
    'float64_multi_array': '/forward_position_controller/commands',
    'joint_trajectory': '/joint_trajectory_controller/joint_trajectory',
    'joint_state': '/joint_command',
    'twist': '/cmd_vel',
}
_WATCHDOG_PERIOD_S = 0.02


class RobotBridge(BridgeNode):
    def __init__(self, **kwargs: Any) -> None:
        super().__init__('robot_bridge', default_identity='robot', **kwargs)
        c = self.contract
        p = self.param
        # -- inputs ------------------------------------------------------------------------------
        self.qos_mode = p('qos_reliability', 'auto', f'Input subscription reliability: {", ".join(QOS_MODES)}.')
        self.joint_states_topic = p('joint_states_topic', 'joint_states', 'sensor_msgs/JointState input.')
        self.state_rate_hz = p(
            'state_rate_hz',
            float(c.fps) if c.videos else 0.0,
            'Forward joint states at most this often (Hz); 0: every message. Observations pair each state with '
            'one frame per camera, so states faster than the video are dropped on the operator anyway.',
        )
        state_joints = self.list_param(
            'state_joints',
            'Joint read for each state field of the contract, in contract order: "<joint>" (position) or '
            '"<joint>/velocity" or "<joint>/effort". Default: the field names.',
        ) or [f.name for f in c.state]
        # -- outputs ------------------------------------------------------------------------------
        self.command_type = p('command_type', 'float64_multi_array', f'Command message: {", ".join(COMMAND_TYPES)}.')
        if self.command_type not in COMMAND_TYPES:
            raise SystemExit(
                self._fatal(f"command_type '{self.command_type}' must be one of {', '.join(COMMAND_TYPES)}")
            )
        self.command_topic = p('command_topic', _DEFAULT_COMMAND_TOPICS[self.command_type], 'Topic of the commands.')
        command_joints = self.list_param(
            'command_joints', "Joint order the controller expects. Default: the contract's action fields."
        )
        command_fields = self.list_param(
            'command_fields',
            'Action field driving each of command_joints. Default: same names as command_joints.',
        )
        twist_fields = self.list_param(
            'twist_fields', 'For Twist: action fields for linear x,y,z and angular x,y,z ("" for zero).'
        )
        self.chunk_name = p('chunk_name', c.action_chunks[0].name if c.action_chunks else '', 'Action chunk to play.')
        self.chunk_mode = p(
            'chunk_mode',
            'trajectory' if self.command_type == 'joint_trajectory' else 'stepped',
            'trajectory: one JointTrajectory per chunk (time_from_start = row / fps); stepped: one row per tick.',
        )
        # -- safety --------------------------------------------------------------------------------
        self.action_timeout_ms = p(
            'action_timeout_ms', 500, 'Silence from the active operator after which on_timeout applies (ms).'
        )
        self.on_timeout = p(
            'on_timeout',
            'hold',
            'hold: keep re-sending the last command; zero: send zeros once; stop: send nothing.',
        )
        self.limit_policy = p('limit_policy', 'clamp', 'Action values outside the limits: clamp or reject.')
        lower = self.list_param('action_limits_lower', 'Lower limit per action field (contract order).', float)
        upper = self.list_param('action_limits_upper', 'Upper limit per action field (contract order).', float)
        allowed = self.list_param('allowed_operators', 'Identities that may take control; empty: anyone.')
        supervisors = self.list_param('supervisors', 'Identities that may assign control without driving.')
        rpc_methods = self.list_param('rpc_methods', 'Portal RPC methods served by calling std_srvs/Trigger.')
        rpc_services = self.list_param('rpc_services', 'Trigger service for each rpc_method. Default: /<method>.')
        self._validate(lower, upper, rpc_methods, rpc_services)
        self.limits = (lower, upper) if lower else (None, None)

        # -- mapping -------------------------------------------------------------------------------
        try:
            self.state_map = StateMapping([f.name for f in c.state], state_joints)
            action_names = [f.name for f in c.action]
            self.builder = (
                CommandBuilder(
                    self.command_type, action_names, command_joints, command_fields, twist_fields, 1.0 / c.fps
                )
                if c.action
                else None
            )
            chunk = c.chunk(self.chunk_name) if self.chunk_name else None
            if self.chunk_name and chunk is None:
                raise MappingError(f"chunk_name '{self.chunk_name}' is not an action chunk of the wire contract")
            self.chunk_fields = [f.name for f in chunk.fields] if chunk else []
            self.chunk_builder = (
                CommandBuilder(
                    self.command_type,
                    self.chunk_fields,
                    command_joints,
                    command_fields,
                    twist_fields,
                    1.0 / c.fps,
                )
                if chunk
                else None
            )
        except MappingError as exc:
            raise SystemExit(self._fatal(str(exc))) from None
        if self.chunk_mode == 'trajectory' and self.command_type != 'joint_trajectory':
            self.get_logger().warning(
                'chunk_mode trajectory needs command_type joint_trajectory; playing chunks stepped'
            )
            self.chunk_mode = 'stepped'

        degradation = p(
            'video_degradation',
            'maintain_framerate_and_resolution',
            'What WebRTC video gives up when CPU or bandwidth runs short: maintain_framerate_and_resolution '
            '(quality drops; every state keeps a frame, images keep their size), maintain_framerate, '
            'maintain_resolution or balanced (WebRTC default).',
        )
        publish_executed = p(
            'publish_executed',
            True,
            'Re-broadcast every accepted action and chunk with its sender, so recorders (operator_bridge with '
            'action_subscription) record exactly what was executed across handoffs. Other Portal peers ignore it.',
        )
        try:
            self.robot = Robot(
                c,
                session=self.room,
                e2ee_key=self.e2ee_key,
                access=AccessPolicy(frozenset(allowed), frozenset(supervisors)),
                video_degradation=degradation,
                echo_executed=publish_executed,
            )
        except ValueError as exc:
            raise SystemExit(self._fatal(f'video_degradation: {exc}')) from None
        self.robot.on_action(self._on_action)
        if self.chunk_name:
            self.robot.on_action_chunk(self.chunk_name, self._on_chunk)
        self.robot.on_set_active_operator_refused(self._on_refused)
        for method, service in zip(rpc_methods, rpc_services or [f'/{m}' for m in rpc_methods]):
            self._serve_rpc(method, service)

        # -- ROS interfaces --------------------------------------------------------------------------
        self._lock = threading.Lock()
        self.watchdog = ActionWatchdog(self.action_timeout_ms / 1000.0)
        self.player = ChunkPlayer()
        self._last_command: Any = None
        self._operator: Optional[str] = None
        self._next_state_due = 0.0
        self.states_skipped = 0
        # Latency probes (µs), reported in the `latency` diagnostics task:
        # delivery = header stamp -> our callback (DDS + executor); bridge = callback -> handed to LiveKit;
        # command = action arrives from LiveKit -> command published.
        probes = ('state_delivery', 'state_bridge', 'frame_delivery', 'frame_bridge', 'frame_codec', 'command_bridge')
        self.latency = {name: SampleRing() for name in probes}
        self._holding = False
        self._last_hold = 0.0
        self._commands_published = 0
        self.command_pub = None
        if self.builder is not None or self.chunk_builder is not None:
            self.command_pub = self.create_publisher(COMMAND_MESSAGES[self.command_type], self.command_topic, 10)
            self.get_logger().info(f'commands ({self.command_type}) -> {self.command_topic}')
        self._subscribe_inputs()
        self.service_host.create_service(SetActiveOperator, '~/set_active_operator', self._srv_set_active_operator)
        self.service_host.create_service(Trigger, '~/emergency_stop', self._srv_emergency_stop)
        self.create_timer(_WATCHDOG_PERIOD_S, self.guarded(self._watchdog_tick))
        if self.chunk_builder is not None and self.chunk_mode == 'stepped':
            self.create_timer(1.0 / c.fps, self.guarded(self._play_tick))
        d = self.diagnostics
        d.add('transport', self._diag_transport)
        d.add('rtt', self._diag_rtt)
        d.add('policy', self._diag_policy)
        d.add('gate', self._diag_gate)
        d.add('watchdog', self._diag_watchdog)
        d.add('latency', lambda: self.diag_latency(self.latency))
        d.add('conversion', self._diag_conversion)
        self.start_session(self.robot)

    # -- configuration checks ----------------------------------------------------------------------
    def _validate(self, lower, upper, rpc_methods, rpc_services) -> None:
        n = len(self.contract.action)
        problems = []
        if self.on_timeout not in TIMEOUT_POLICIES:
            problems.append(f"on_timeout '{self.on_timeout}' must be one of {', '.join(TIMEOUT_POLICIES)}")
        if self.limit_policy not in ('clamp', 'reject'):
            problems.append(f"limit_policy '{self.limit_policy}' must be clamp or reject")
        if self.qos_mode not in QOS_MODES:
            problems.append(f"qos_reliability '{self.qos_mode}' must be one of {', '.join(QOS_MODES)}")
        if self.action_timeout_ms <= 0:
            problems.append('action_timeout_ms must be > 0')
        if len(lower) != len(upper) or (lower and len(lower) != n):
            problems.append(f'action_limits_lower/upper need {n} values each (one per action field), or none')
        if any(lo > hi for lo, hi in zip(lower, upper)):
            problems.append('action_limits_lower must not exceed action_limits_upper')
        if rpc_services and len(rpc_services) != len(rpc_methods):
            problems.append('rpc_services needs one entry per rpc_method')
        if self.chunk_mode not in ('trajectory', 'stepped'):
            problems.append(f"chunk_mode '{self.chunk_mode}' must be trajectory or stepped")
        if problems:
            raise SystemExit(self._fatal('; '.join(problems))) from None
        if self.on_timeout == 'zero' and self.command_type in ('float64_multi_array', 'joint_trajectory'):
            self.get_logger().warning(
                'on_timeout zero sends all-zero commands: under position control that drives every joint to 0'
            )
        if self.on_timeout == 'hold' and self.command_type == 'twist':
            self.get_logger().warning('on_timeout hold keeps a Twist base moving; zero is the safe choice for Twist')

    def _zero_message(self):
        builder = self.builder or self.chunk_builder
        return builder.zeros() if builder is not None else None

    # -- inputs ------------------------------------------------------------------------------------
    def _subscribe_inputs(self) -> None:
        events = incompatible_qos_callbacks(
            lambda e: self.count('incompatible_qos', 'a publisher offers incompatible QoS')
        )
        qos = subscription_qos(self, self.joint_states_topic, self.qos_mode)
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
            callback = self.guarded(lambda msg, s=spec, h=handler: h(s, msg))
            self.create_subscription(msg_type, topic, callback, qos, event_callbacks=events)
            self.get_logger().info(f"video track '{spec.name}' ({spec.codec.name}) <- {topic} ({transport})")

    def _stamp(self, header) -> int:
        ts = stamp_to_us(header.stamp)
        if ts == 0:
            self.count('zero_stamp', 'a message has a zero header.stamp; using the receive time')
            return now_us()
        return ts

    def _on_joint_state(self, msg: JointState) -> None:
        if self.state_rate_hz > 0:
            # Forward at exactly state_rate_hz on average (phase kept, no burst after a gap): a state
            # rate even a little above the frame rate leaves states without frames to pair with.
            now = time.monotonic()
            if now < self._next_state_due:
                self.states_skipped += 1
                return
            period = 1.0 / self.state_rate_hz
            self._next_state_due = max(self._next_state_due + period, now - period / 2)
        start = time.perf_counter_ns()
        values, missing = self.state_map.extract(msg)
        if missing:
            self.count(
                'missing_joints',
                f'joint_states lacks joints for state fields {missing}; their last values are kept',
            )
        if not values:
            return
        stamp = self._stamp(msg.header)
        self.latency['state_delivery'].add(now_us() - stamp)
        self._send(lambda: self.robot.send_state(values, stamp, check_types=False))
        self.latency['state_bridge'].add((time.perf_counter_ns() - start) // 1000)

    def _send(self, send) -> None:
        try:
            send()
        except NotConnected:
            self.count('not_connected')
        except PortalError as exc:
            self.count(type(exc).__name__, f'cannot send: {exc}')

    def _on_image(self, spec, msg: Image) -> None:
        start = time.perf_counter_ns()
        try:
            rgb = image_to_rgb(msg)
        except ImageConversionError as exc:
            self.count(exc.reason, f"camera '{spec.name}': {exc}")
            return
        if spec.codec.is_webrtc and (rgb.shape[0] % 2 or rgb.shape[1] % 2):
            self.count(
                'odd_size_cropped',
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

    def _on_compressed(self, spec, msg: CompressedImage) -> None:
        fmt = compressed_format(msg)
        wanted = {VideoCodec.MJPEG: 'jpeg', VideoCodec.PNG: 'png'}.get(spec.codec)
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

    # -- actions (LiveKit thread) -------------------------------------------------------------------
    def _checked(self, names: Sequence[str], values: Sequence[float], what: str) -> Optional[list[float]]:
        bad = nan_fields(names, values)
        if bad:
            self.count('nan_action', f'{what} with NaN in {bad} rejected; never sent to the controller')
            return None
        lower, upper = self.limits
        if lower is None or len(names) != len(lower):
            return list(values)
        out, outside = apply_limits(values, lower, upper)
        if outside:
            fields = [names[i] for i in outside]
            if self.limit_policy == 'reject':
                self.count('limit_rejected', f'{what} outside action limits in {fields} rejected')
                return None
            self.count('limit_clamped', f'{what} outside action limits in {fields} clamped')
        return out

    def _publish_command(self, msg) -> None:
        self.command_pub.publish(msg)
        self._last_command = msg
        self._commands_published += 1

    def _on_action(self, action: Action) -> None:
        if self.builder is None:
            return
        start = time.perf_counter_ns()
        values = self._checked(self.builder.action_fields, action.raw, 'action')
        if values is None:
            return
        msg = self.builder.build(values)
        with self._lock:
            self.player.clear()  # a single action supersedes a playing chunk
            self._holding = False
            if self.watchdog.feed(time.monotonic()):
                self.get_logger().info(f"actions from '{action.sender}' resumed")
            self._publish_command(msg)
        self.latency['command_bridge'].add((time.perf_counter_ns() - start) // 1000)

    def _on_chunk(self, chunk: ActionChunk) -> None:
        if self.chunk_builder is None:
            return
        matrix = chunk.matrix()
        rows = []
        for r in range(chunk.horizon):
            row = self._checked(self.chunk_fields, matrix[r].tolist(), f"chunk '{chunk.name}' row {r}")
            if row is None:
                return  # one bad row rejects the whole chunk
            rows.append(row)
        with self._lock:
            self._holding = False
            self.watchdog.feed(time.monotonic())
            if self.chunk_mode == 'trajectory':
                self.player.clear()
                self._publish_command(self.chunk_builder.build_trajectory(rows, self.contract.fps))
            else:
                self.player.load(rows)

    def _play_tick(self) -> None:
        with self._lock:
            row = self.player.step()
            if row is None:
                return
            self.watchdog.feed(time.monotonic())
            self._publish_command(self.chunk_builder.build(row))

    # -- safety ----------------------------------------------------------------------------------
    def on_active_operator(self, identity: Optional[str]) -> None:
        with self._lock:
            previous, self._operator = self._operator, identity
            self.watchdog.arm(identity, time.monotonic())
            if identity is None and previous is not None:
                self._enter_safe_state(f"'{previous}' is no longer the active operator")

    def _enter_safe_state(self, reason: str) -> None:
        """Stop chunk playback and apply on_timeout (caller holds the lock)."""
        self.player.clear()
        if self.command_pub is None:
            return
        if self.on_timeout == 'zero':
            self._publish_command(self._zero_message())
            self._holding = False
        elif self.on_timeout == 'hold':
            self._holding = self._last_command is not None
        else:
            self._holding = False
        self.get_logger().warning(f'safe state ({self.on_timeout}): {reason}')

    def _watchdog_tick(self) -> None:
        now = time.monotonic()
        with self._lock:
            if self.player.playing:
                self.watchdog.feed(now)
            reason = self.watchdog.check(now)
            if reason is not None:
                self._enter_safe_state(reason)
            if self._holding and now - self._last_hold >= 1.0 / self.contract.fps:
                self._last_hold = now
                self.command_pub.publish(self._last_command)

    def _srv_emergency_stop(self, request, response):
        with self._lock:
            self._enter_safe_state('emergency stop requested')
        self.count('emergency_stop')
        try:
            self.run_on_loop(self.robot.set_active_operator(None), 5.0)
            response.success, response.message = True, 'active operator cleared; command output in safe state'
        except Exception as exc:
            response.success = False
            response.message = f'command output in safe state, but clearing the active operator failed: {exc}'
        return response

    def _srv_set_active_operator(self, request, response):
        identity = request.identity or None
        response.previous = self.robot.active_operator() or ''
        if not self.robot.access.may_drive(identity):
            response.success, response.message = False, f"'{identity}' is not in allowed_operators"
            response.active = response.previous
            return response
        try:
            self.run_on_loop(self.robot.set_active_operator(identity), 5.0)
            response.success, response.message = True, f'active operator: {identity or "(none)"}'
        except Exception as exc:
            response.success, response.message = False, f'could not set the active operator: {exc}'
        response.active = self.robot.active_operator() or ''
        return response

    def _on_refused(self, caller: str, requested: Optional[str], reason: str) -> None:
        self.count('handoff_refused')

    # -- RPC -> ROS services -----------------------------------------------------------------------
    def _serve_rpc(self, method: str, service: str) -> None:
        client = self.create_client(Trigger, service)

        async def handler(data) -> str:
            if not client.service_is_ready():
                raise RpcCallError(1500, f"ROS service '{service}' is not available")
            loop = asyncio.get_running_loop()
            done: asyncio.Future = loop.create_future()
            ros_future = client.call_async(Trigger.Request())
            ros_future.add_done_callback(lambda f: loop.call_soon_threadsafe(done.set_result, f.result()))
            result = await asyncio.wait_for(done, 10.0)
            if not result.success:
                raise RpcCallError(1500, result.message or f"'{service}' reported failure")
            return result.message

        self.robot.register_rpc_method(method, handler)
        self.get_logger().info(f"Portal RPC '{method}' -> ROS service {service}")

    # -- diagnostics -----------------------------------------------------------------------------
    def _diag_transport(self):
        t = self.robot.metrics().transport
        rates = self.rates('frames', t.frames_sent)
        values = {f'{k}.fps': v for k, v in rates.items()}
        values.update({f'{k}.frames_sent': v for k, v in t.frames_sent.items()})
        values.update({f'{k}.dropped_publisher_full': v for k, v in t.frames_dropped_publisher_full.items()})
        values.update(
            states_sent=t.states_sent,
            states_skipped_rate=self.states_skipped,
            actions_received=t.actions_received,
            action_chunks_received=t.action_chunks_received,
            action_jitter_us=t.action_jitter_us,
        )
        values.update({f'dropped.{k}': v for k, v in t.dropped.items()})
        return OK, f'{t.states_sent} states sent', values

    def _diag_policy(self):
        p = self.robot.metrics().policy
        values = {
            'e2e_us_p50': p.e2e_us_p50,
            'e2e_us_p95': p.e2e_us_p95,
            'correlated_received': p.correlated_received,
        }
        msg = 'no correlated actions' if p.e2e_us_p50 is None else f'e2e p50 {p.e2e_us_p50 / 1000:.1f} ms'
        return OK, msg, values

    def _diag_gate(self):
        t = self.robot.metrics().transport
        active = self.robot.active_operator()
        values = {
            'active_operator': active or '',
            'actions_accepted': t.actions_received + t.action_chunks_received,
            'actions_dropped': t.dropped.get('gate', 0),
            'handoff_refused': t.dropped.get('handoff-refused', 0),
            'commands_published': self._commands_published,
            'allowed_operators': sorted(self.robot.access.allowed_operators),
        }
        return OK, f'active operator: {active or "(none)"}', values

    def _diag_watchdog(self):
        w = self.watchdog
        values = {'trips': w.trips, 'tripped': w.tripped, 'reason': w.reason, 'on_timeout': self.on_timeout,
                  'action_timeout_ms': self.action_timeout_ms}  # fmt: skip
        if w.tripped:
            return WARN, w.reason, values
        return OK, 'actions flowing' if self.robot.active_operator() else 'no active operator', values

    def _diag_conversion(self):
        counts = self.counts()
        errors = {k: v for k, v in counts.items() if k not in ('not_connected', 'emergency_stop', 'handoff_refused')}
        level = WARN if errors else OK
        if counts.get('connect_failed') and not self.robot.is_connected:
            level = ERROR
        return level, f'{sum(errors.values())} inputs rejected' if errors else 'no conversion errors', counts


def main(args: Optional[Sequence[str]] = None) -> int:
    return run_node(RobotBridge, args)


if __name__ == '__main__':
    import sys

    sys.exit(main())
