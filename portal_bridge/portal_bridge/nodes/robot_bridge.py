"""robot_bridge: a ROS robot as the robot of a Portal session.

Cameras (``sensor_msgs/Image`` or ``CompressedImage``) and ``sensor_msgs/JointState`` go out
as Portal video and state, stamped from their headers. The active operator's actions come in as
commands for ros2_control (``Float64MultiArray``, ``JointTrajectory``, ``JointState`` or
``Twist``); action chunks play as one trajectory or one row per tick. One state machine
(:mod:`portal_bridge.safety`) owns the command output: a watchdog applies ``on_timeout`` when the
active operator goes quiet, an emergency stop latches a safe state until a local reset, NaN and
out-of-limit values never reach the controller, and only ``allowed_operators`` may take control.

Run: ``ros2 run portal_bridge robot_bridge --ros-args --params-file config/robot_arm.yaml``
"""

from __future__ import annotations

import asyncio
import sys
import time
from typing import Any, Optional, Sequence

from rclpy.qos import QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import CompressedImage, Image, JointState
from std_msgs.msg import Bool
from std_srvs.srv import Trigger

from portal_bridge_msgs.srv import SetActiveOperator

from ..commands import COMMAND_INTERFACES, COMMANDS
from ..control.command_output import CommandOutput
from ..control.safety import TIMEOUT_POLICIES, ChunkAlignment, CommandSafety, Emit, SafetyState, align_chunk
from ..portal import AccessPolicy, Action, ActionChunk, Robot, now_us
from ..portal.errors import RPC_APPLICATION_ERROR, NotConnected, PointerRefused, PortalError, RpcCallError
from ..portal.metrics import SampleRing
from ..ros.diagnostics import ERROR, OK, WARN
from ..ros.frame_worker import FrameWorker
from ..ros.images import ImageConversionError, compressed_format, compressed_size, compressed_to_rgb, image_to_rgb
from ..ros.input_health import InputHealth
from ..ros.input_health import summary as input_summary
from ..ros.joints import (
    CommandBuilder,
    MappingError,
    StateMapping,
    apply_limits,
    nan_fields,
)
from ..ros.params import DynamicParameters
from ..ros.qos import QOS_MODES, incompatible_qos_callbacks, subscription_qos
from ..ros.service_host import ServiceHost
from ..ros.stamps import stamp_to_us
from .bridge_node import LATCHED, BridgeNode
from .node_main import run_node

__all__ = ['RobotBridge', 'main']

_WATCHDOG_PERIOD_S = 0.02
_HANDOFF_WAIT_S = 3.0  # a local handoff request waits at most this long for the room to agree
SWITCH_INTERVAL_S = 0.001
_INPUT_GRACE_S = 2.0
# Counters that are not bad input: control-plane events, and values changed to fit (clamped).
_BENIGN = frozenset(
    {'not_connected', 'emergency_stop', 'handoff_refused', 'estop_latched', 'not_active_operator', 'chunk_rows_skipped'}
)
_ADJUSTED = frozenset({'limit_clamped', 'odd_size_cropped', 'zero_stamp'})
_ESTOP_QOS = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE)


class RobotBridge(BridgeNode):
    def __init__(self, **kwargs: Any) -> None:
        super().__init__('robot_bridge', default_identity='robot', **kwargs)
        c = self.contract
        p = self.param
        # -- inputs ------------------------------------------------------------------------------
        self.qos_mode = p('qos_reliability', 'auto', 'Input subscription reliability.', choices=QOS_MODES)
        self.joint_states_topic = p('joint_states_topic', 'joint_states', 'sensor_msgs/JointState input.')
        self.state_rate_hz = p(
            'state_rate_hz',
            float(c.fps) if c.videos else 0.0,
            'Forward joint states at most this often (Hz); 0: every message. Observations pair each state with '
            'one frame per camera, so states faster than the video are dropped on the operator anyway.',
            value_range=(0.0, 10000.0),
        )
        state_joints = self.list_param(
            'state_joints',
            'Joint read for each state field of the contract, in contract order: "<joint>" (position) or '
            '"<joint>/velocity" or "<joint>/effort". Default: the field names.',
        ) or [f.name for f in c.state]
        # -- outputs ------------------------------------------------------------------------------
        self.command_type = p('command_type', 'float64_multi_array', 'Command message type.', choices=tuple(COMMANDS))
        self.command_topic = p('command_topic', COMMANDS[self.command_type].default_topic, 'Topic of the commands.')
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
            'trajectory: one JointTrajectory per chunk, published once; stepped: each row at its own time.',
            choices=('trajectory', 'stepped'),
        )
        # -- safety --------------------------------------------------------------------------------
        self.action_timeout_ms = p(
            'action_timeout_ms',
            500,
            'Silence after which on_timeout applies (ms), from the last action, stepped row or trajectory end. '
            'Dynamic.',
            value_range=(1, 600000),
            dynamic=True,
        )
        kind = COMMANDS[self.command_type]
        self.on_timeout = p(
            'on_timeout',
            'hold' if 'hold' in kind.timeout_policies else 'zero',
            'hold: position outputs keep re-sending the last single command, trajectories finish and hold '
            'their last point (nothing is re-sent); zero: send one all-zero command; stop: send nothing. '
            'Twist allows zero and stop only. Dynamic.',
            choices=TIMEOUT_POLICIES,
            dynamic=True,
        )
        self.command_interface = p(
            'command_interface',
            kind.default_interface,
            "What the command drives (position, velocity, effort). It decides the emergency stop's one "
            'safe command: zeros for velocity and effort, the measured joint positions for position.',
            choices=COMMAND_INTERFACES,
        )
        self.chunk_alignment = p(
            'chunk_alignment',
            'observation',
            "observation: row r of a chunk answering an observation is meant for that observation's time "
            '+ r/fps, rows already past on arrival are skipped; arrival: row 0 is the arrival time.',
            choices=('observation', 'arrival'),
        )
        self.emergency_stop_topic = p(
            'emergency_stop_topic',
            '',
            'std_msgs/Bool topic whose True latches the emergency stop (a hardware button node); empty: none.',
        )
        self.limit_policy = p(
            'limit_policy', 'clamp', 'Action values outside the limits: clamp or reject. Dynamic.',
            choices=('clamp', 'reject'), dynamic=True,
        )  # fmt: skip
        lower = self.list_param(
            'action_limits_lower', 'Lower limit per action field (contract order). Dynamic.', float, dynamic=True
        )
        upper = self.list_param(
            'action_limits_upper', 'Upper limit per action field (contract order). Dynamic.', float, dynamic=True
        )
        allowed = self.list_param('allowed_operators', 'Identities that may take control; empty: anyone.')
        supervisors = self.list_param('supervisors', 'Identities that may assign control without driving.')
        rpc_methods = self.list_param('rpc_methods', 'Portal RPC methods served by calling std_srvs/Trigger.')
        rpc_services = self.list_param('rpc_services', 'Trigger service for each rpc_method. Default: /<method>.')
        self.input_timeout_ms = p(
            'input_timeout_ms',
            500,
            'An input (a camera topic, joint_states) with no message for this long is reported stale in '
            '/diagnostics (inputs task) and in one log line (ms).',
            value_range=(10, 600000),
        )
        self.rpc_timeout_s = (
            p(
                'rpc_service_timeout_ms',
                10000,
                'How long a Portal RPC waits for its ROS service before failing with error 1500; a late reply is '
                'dropped.',
                value_range=(1, 3600000),
            )
            / 1000.0
        )
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
                label=self.room,
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
        self._next_state_due = 0.0
        self.states_skipped = 0
        self._measured: dict[str, float] = {}  # latest measured position per joint (e-stop target)
        # Latency probes (µs), reported in the `latency` diagnostics task:
        # delivery = header stamp -> our callback (DDS + executor); bridge = callback -> handed to LiveKit;
        # command = action arrives from LiveKit -> command published.
        probes = ('state_delivery', 'state_bridge', 'frame_delivery', 'frame_bridge', 'frame_codec', 'command_bridge')
        self.latency = {name: SampleRing() for name in probes}
        self._commands_published = 0
        self.command_pub = None
        if self.builder is not None or self.chunk_builder is not None:
            self.command_pub = self.create_publisher(COMMANDS[self.command_type].message, self.command_topic, 10)
            self.get_logger().info(f'commands ({self.command_type}) -> {self.command_topic}')
        # The command output: one state machine owns what reaches the controller (see safety.py).
        self.safety = CommandSafety(
            timeout_s=self.action_timeout_ms / 1000.0,
            on_timeout=self.on_timeout,
            hold_period_s=1.0 / c.fps,
            hold_resends=COMMANDS[self.command_type].hold_resends,
        )
        self.output = CommandOutput(
            self.safety,
            self._publish_emit,
            period_s=_WATCHDOG_PERIOD_S,
            on_error=lambda exc: self.count('command_output_error', f'command output failed: {exc!r}'),
            on_transition=self._on_safety_transition,
            name=f'{self.get_name()}-safety-clock',
        )
        self.estop_pub = self.create_publisher(Bool, '~/emergency_stopped', LATCHED)
        self.estop_pub.publish(Bool(data=False))
        # E-stop and reset have a thread of their own: they answer at once even while a handoff
        # waits on the network on the services thread or the executor converts images.
        self.safety_host = ServiceHost(self, 'safety')
        self.safety_host.create_service(Trigger, '~/emergency_stop', self._srv_emergency_stop)
        self.safety_host.create_service(Trigger, '~/reset_emergency_stop', self._srv_reset_emergency_stop)
        if self.emergency_stop_topic:
            self.safety_host.create_subscription(Bool, self.emergency_stop_topic, self._on_estop_topic, _ESTOP_QOS)
            self.get_logger().info(f'emergency stop <- {self.emergency_stop_topic} (std_msgs/Bool, True latches)')
        self._workers: list[FrameWorker] = []
        self.inputs = InputHealth(self.input_timeout_ms / 1000.0)
        self._input_statuses: list = []
        self._inputs_since = time.monotonic()
        self._subscribe_inputs()
        self.service_host.create_service(SetActiveOperator, '~/set_active_operator', self._srv_set_active_operator)
        self.output.start()
        DynamicParameters(
            self,
            ('action_timeout_ms', 'on_timeout', 'limit_policy', 'action_limits_lower', 'action_limits_upper'),
            self._apply_safety_parameters,
            arrays=('action_limits_lower', 'action_limits_upper'),
        )
        if not allowed:
            self.get_logger().warning(
                f"allowed_operators is empty: anyone who can join room '{self.room}' may take control and drive "
                'this robot; list the identities that may drive in allowed_operators'
            )
        d = self.diagnostics
        d.add('transport', self._diag_transport)
        d.add('rtt', self._diag_rtt)
        d.add('policy', self._diag_policy)
        d.add('gate', self._diag_gate)
        d.add('safety', self._diag_safety)
        d.add('latency', lambda: self.diag_latency(self.latency))
        d.add('conversion', self._diag_conversion)
        d.add('inputs', self._diag_inputs)
        self.create_timer(1.0, self.guarded(self._check_inputs))
        self.start_session(self.robot)

    def shutdown(self, timeout: float = 5.0) -> None:
        """Stop the safety clock, camera workers and safety services, then leave the room."""
        for worker in getattr(self, '_workers', ()):
            worker.stop()
        output = getattr(self, 'output', None)
        if output is not None:
            output.stop()
        host = getattr(self, 'safety_host', None)
        if host is not None and self.loop.running:
            host.stop()
        super().shutdown(timeout)

    # -- configuration checks ----------------------------------------------------------------------
    def _validate(self, lower, upper, rpc_methods, rpc_services) -> None:
        problems = self._safety_problems(
            {
                'on_timeout': self.on_timeout,
                'action_timeout_ms': self.action_timeout_ms,
                'action_limits_lower': lower,
                'action_limits_upper': upper,
            }
        )
        if rpc_services and len(rpc_services) != len(rpc_methods):
            problems.append('rpc_services needs one entry per rpc_method')
        if problems:
            raise SystemExit(self._fatal('; '.join(problems))) from None
        self._warn_zero_position(self.on_timeout)

    def _safety_problems(self, values: dict) -> list[str]:
        """What is wrong with these safety parameter values (at startup and on every change)."""
        problems = []
        allowed_policies = COMMANDS[self.command_type].timeout_policies
        on_timeout = values['on_timeout']
        if on_timeout not in allowed_policies:
            problems.append(
                f"on_timeout '{on_timeout}' is not allowed for command_type {self.command_type}"
                + (' (a held velocity keeps the robot moving)' if on_timeout == 'hold' else '')
                + f'; use {" or ".join(allowed_policies)}'
            )
        if values['action_timeout_ms'] <= 0:
            problems.append('action_timeout_ms must be > 0')
        if values.get('limit_policy', 'clamp') not in ('clamp', 'reject'):
            problems.append(f"limit_policy '{values['limit_policy']}' must be clamp or reject")
        lower, upper = list(values['action_limits_lower']), list(values['action_limits_upper'])
        n = len(self.contract.action)
        if len(lower) != len(upper) or (lower and len(lower) != n):
            problems.append(
                f'action_limits_lower/upper need {n} values each (one per action field), or none; change both '
                'together (set_parameters_atomically, or a parameter file)'
            )
        elif any(not (lo <= hi) for lo, hi in zip(lower, upper)):
            problems.append('action_limits_lower must not exceed action_limits_upper (and no NaN)')
        return problems

    def _warn_zero_position(self, on_timeout: str) -> None:
        if on_timeout == 'zero' and self.command_interface == 'position' and self.command_type != 'twist':
            self.get_logger().warning(
                'on_timeout zero sends all-zero commands: under position control that drives every joint to 0'
            )

    def _apply_safety_parameters(self, values: dict) -> Optional[str]:
        """``ros2 param set`` of a safety parameter: refused with the reason, or applied at once."""
        problems = self._safety_problems(values)
        if problems:
            return '; '.join(problems)
        lower, upper = list(values['action_limits_lower']), list(values['action_limits_upper'])
        with self.output.lock:
            self.safety.configure(timeout_s=values['action_timeout_ms'] / 1000.0, on_timeout=values['on_timeout'])
            self.limits = (lower, upper) if lower else (None, None)
            self.limit_policy = values['limit_policy']
            self.action_timeout_ms = values['action_timeout_ms']
            self.on_timeout = values['on_timeout']
        self._warn_zero_position(values['on_timeout'])
        return None

    # -- inputs ------------------------------------------------------------------------------------
    def _subscribe_inputs(self) -> None:
        events = incompatible_qos_callbacks(
            lambda e: self.count('incompatible_qos', 'a publisher offers incompatible QoS')
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
            worker = FrameWorker(
                spec.name,
                lambda msg, s=spec, h=handler: h(s, msg),
                on_drop=lambda n=spec.name: self.count(
                    'frames_behind', f"camera '{n}': conversion fell behind the camera; dropping the oldest frame"
                ),
                on_error=lambda exc, n=spec.name: self.count(
                    'internal_error', f"camera '{n}': frame handling failed: {exc!r}"
                ),
            )
            self._workers.append(worker)
            name = f'camera {spec.name}'
            self.inputs.add(name, self.resolve_topic_name(topic))

            def on_frame(msg, n=name, w=worker) -> None:
                self.inputs.seen(n, time.monotonic())
                w.submit(msg)

            self.create_subscription(msg_type, topic, on_frame, qos, event_callbacks=events)
            self.get_logger().info(f"video track '{spec.name}' ({spec.codec.name}) <- {topic} ({transport})")

    def _stamp(self, header) -> int:
        ts = stamp_to_us(header.stamp)
        if ts == 0:
            self.count('zero_stamp', 'a message has a zero header.stamp; using the receive time')
            return now_us()
        return ts

    def _on_joint_state(self, msg: JointState) -> None:
        self.inputs.seen('joint_states', time.monotonic())
        # Every message, even one not forwarded: the e-stop of a position output stops here.
        self._measured.update(zip(msg.name, msg.position))
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

    def _on_action(self, action: Action) -> None:
        if self.builder is None:
            return
        start = time.perf_counter_ns()
        values = self._checked(self.builder.action_fields, action.raw, 'action')
        if values is None:
            return
        if not self.output.action(action.sender, self.builder.build(values)):
            self._not_driven(action.sender)
            return
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
        fps = self.contract.fps
        if self.chunk_alignment == 'observation':
            align = align_chunk(len(rows), fps, chunk.in_reply_to_ts_us, now_us())
        else:
            align = ChunkAlignment(0, 0.0)
        if align is None:
            self.count(
                'chunk_stale',
                f"chunk '{chunk.name}' from '{chunk.sender}' arrived after its last row was due "
                '(chunk_alignment observation); skipped',
            )
            return
        if align.skipped:
            self.count('chunk_rows_skipped', n=align.skipped)
        rows = rows[align.first_row :]
        if self.chunk_mode == 'trajectory':
            msg = self.chunk_builder.build_trajectory(rows, fps, align.first_offset_s)
            duration = align.first_offset_s + (len(rows) - 1) / fps
            out = self.output.trajectory(chunk.sender, msg, duration)
        else:
            commands = [self.chunk_builder.build(row) for row in rows]
            out = self.output.stepped(chunk.sender, commands, align.first_offset_s, 1.0 / fps)
        if not out and not self.safety.playing:
            self._not_driven(chunk.sender)

    def _not_driven(self, sender: str) -> None:
        if self.safety.estopped:
            self.count('estop_latched', f"input from '{sender}' ignored: the emergency stop is latched")
        else:
            self.count('not_active_operator', f"input from '{sender}', who is not the active operator, ignored")

    # -- command output ------------------------------------------------------------------------------
    def _publish_emit(self, emit: Emit) -> None:
        """Publish what the state machine decided (called under the output's lock)."""
        if self.command_pub is None:
            return
        if emit.kind in ('command', 'hold'):
            msg = emit.command
        elif emit.kind == 'zero':
            msg = (self.builder or self.chunk_builder).zeros()
        else:
            msg = self._safe_message()
            if msg is None:
                return
        self.command_pub.publish(msg)
        self._commands_published += 1

    def _safe_message(self):
        """The e-stop's one command: stop where the robot is, whatever on_timeout says."""
        builder = self.builder or self.chunk_builder
        kind = COMMANDS[self.command_type]
        if kind.stop_here is not None:
            return kind.stop_here(builder.joints)  # e.g. an empty trajectory: stop and hold where it is
        if not kind.joint_based or self.command_interface != 'position':
            return builder.zeros()
        msg = builder.build_positions(self._measured)
        if msg is None:
            missing = [j for j in builder.joints if j not in self._measured]
            self.get_logger().error(
                f'emergency stop: no measured position for {missing} on {self.joint_states_topic}; no stop command '
                'sent, the position controller keeps its last target'
            )
        return msg

    def _on_safety_transition(self, before: SafetyState, after: SafetyState, reason: str) -> None:
        log = self.get_logger()
        if after is SafetyState.STOPPED:
            what = {'hold': 'holding' if self.safety.hold_resends else 'controller holds', 'zero': 'zero sent',
                    'stop': 'nothing sent'}[self.safety.on_timeout]  # fmt: skip
            text = f'safe state (on_timeout {self.safety.on_timeout}: {what}): {reason}'
            (log.warning if self.safety.tripped else log.info)(text)
        elif after is SafetyState.DRIVING and before is SafetyState.STOPPED and self.safety.stop_cause == 'timeout':
            log.info(f"actions from '{self.safety.operator}' resumed")
        elif after is SafetyState.ESTOPPED:
            log.error(
                f'EMERGENCY STOP latched ({reason}): command output in its safe state and silent; handoffs refused '
                f'until {self.get_fully_qualified_name()}/reset_emergency_stop'
            )
        elif before is SafetyState.ESTOPPED:
            log.warning('emergency stop reset: nobody is in control; an operator must claim control to drive again')

    # -- safety ----------------------------------------------------------------------------------
    def on_active_operator(self, identity: Optional[str]) -> None:
        self.output.operator_changed(identity)

    def emergency_stop(self, source: str) -> bool:
        """Latch the e-stop (any thread): gate closed, safe command, handoffs refused. False if latched.

        The gate closes first, so no action arriving meanwhile is accepted (and re-broadcast as
        executed) only to be refused by the latched output; both steps are local and immediate.
        """
        self.robot.lock_out(
            f'the emergency stop is latched on the robot ({source}); reset it locally with '
            f'{self.get_fully_qualified_name()}/reset_emergency_stop'
        )
        out = self.output.estop(f'emergency stop from {source}')
        if out:
            self.count('emergency_stop')
            self.estop_pub.publish(Bool(data=True))
        return bool(out)

    def _srv_emergency_stop(self, request, response):
        first = self.emergency_stop(f'service {self.get_fully_qualified_name()}/emergency_stop')
        response.success = True
        response.message = (
            'emergency stop latched: command output in safe state, active operator cleared, handoffs refused '
            'until reset_emergency_stop'
            if first
            else 'emergency stop already latched'
        )
        return response

    def _on_estop_topic(self, msg: Bool) -> None:
        if msg.data:
            self.emergency_stop(f'topic {self.emergency_stop_topic}')

    def _srv_reset_emergency_stop(self, request, response):
        if not self.output.reset():
            response.success, response.message = False, 'no emergency stop is latched'
            return response
        self.robot.lift_lockout()
        self.estop_pub.publish(Bool(data=False))
        response.success = True
        response.message = 'emergency stop reset; nobody is in control (claim control to drive again)'
        return response

    def _srv_set_active_operator(self, request, response):
        identity = request.identity or None
        response.previous = self.robot.active_operator() or ''
        refusal = None
        if identity is not None and self.safety.estopped:
            refusal = self.robot.locked_out or 'the emergency stop is latched'
        elif not self.robot.access.may_drive(identity):
            refusal = f"'{identity}' is not in allowed_operators"
        if refusal is not None:
            self.count('handoff_refused')
            response.success, response.message = False, refusal
            response.active = response.previous
            return response
        try:
            confirmed = self.run_on_loop(
                self.robot.set_active_operator(identity, confirm_timeout=_HANDOFF_WAIT_S), _HANDOFF_WAIT_S + 1.0
            )
            response.success = True
            response.message = f'active operator: {identity or "(none)"}'
            if not confirmed:
                response.message += ' (in effect on the robot; the room has not acknowledged it yet, still retrying)'
        except PointerRefused as exc:
            response.success, response.message = False, str(exc)
        except Exception as exc:
            response.success, response.message = False, f'could not set the active operator: {exc!r}'
        response.active = self.robot.active_operator() or ''
        return response

    def _on_refused(self, caller: str, requested: Optional[str], reason: str) -> None:
        self.count('handoff_refused')

    # -- RPC -> ROS services -----------------------------------------------------------------------
    def _serve_rpc(self, method: str, service: str) -> None:
        client = self.create_client(Trigger, service)

        async def handler(data) -> str:
            if not client.service_is_ready():
                raise RpcCallError(RPC_APPLICATION_ERROR, f"ROS service '{service}' is not available")
            loop = asyncio.get_running_loop()
            done: asyncio.Future = loop.create_future()

            def resolve(ros_future) -> None:  # on a ROS thread; the wait may have given up already
                if not done.done():
                    done.set_result(ros_future)

            ros_future = client.call_async(Trigger.Request())
            ros_future.add_done_callback(lambda f: loop.call_soon_threadsafe(resolve, f))
            try:
                finished = await asyncio.wait_for(done, self.rpc_timeout_s)
            except asyncio.TimeoutError:
                client.remove_pending_request(ros_future)  # a late reply is then dropped by rclpy
                ros_future.cancel()
                raise RpcCallError(
                    RPC_APPLICATION_ERROR,
                    f"ROS service '{service}' did not answer within {self.rpc_timeout_s:g} s",
                ) from None
            result = finished.result()
            if result is None or not result.success:
                message = (result.message if result is not None else '') or f"'{service}' reported failure"
                raise RpcCallError(RPC_APPLICATION_ERROR, message)
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

    def _diag_safety(self):
        sm = self.safety
        p50, p99 = self.output.lateness.percentiles(0.5, 0.99)
        values = {
            'state': sm.state.value,
            'emergency_stopped': sm.estopped,
            'reason': sm.reason,
            'trips': sm.trips,
            'tripped': sm.tripped,
            'estops': sm.estops,
            'on_timeout': sm.on_timeout,
            'action_timeout_ms': self.action_timeout_ms,
            'chunk_rows_skipped_stale': self.counts().get('chunk_rows_skipped', 0),
            'chunk_rows_skipped_late_tick': sm.rows_skipped,
            'tick_lateness_us_p50': p50,
            'tick_lateness_us_p99': p99,
        }
        if sm.estopped:
            return ERROR, f'EMERGENCY STOP latched: {sm.estop_reason}', values
        if sm.tripped:
            return WARN, sm.reason, values
        if sm.state is SafetyState.DRIVING:
            return OK, 'actions flowing', values
        return OK, 'no active operator' if self.robot.active_operator() is None else 'waiting for actions', values

    def _check_inputs(self) -> None:
        """Once a second: publishers and message age of every input; one log line per change."""
        now = time.monotonic()
        if now - self._inputs_since < _INPUT_GRACE_S:  # discovery of the publishers takes a moment
            return
        publishers = {name: self.count_publishers(self.inputs.topic(name)) for name in self.inputs.names}
        self._input_statuses, changed = self.inputs.evaluate(now, publishers)
        for status in changed:
            if status.healthy:
                self.get_logger().info(f'input {status.name}: {status.topic} delivering again')
            else:
                self.get_logger().warning(f'input {status.describe()} (see /diagnostics, inputs)')

    def _diag_inputs(self):
        statuses = self._input_statuses
        values = {f'{s.name}.state': s.state for s in statuses}
        values.update({f'{s.name}.age_s': -1.0 if s.age_s is None else round(s.age_s, 3) for s in statuses})
        values.update({f'{s.name}.publishers': s.publishers for s in statuses})
        if not statuses:
            return OK, 'checking inputs', values
        any_bad, all_bad, text = input_summary(statuses)
        if all_bad:
            return ERROR, f'the robot sends nothing: {text}', values
        return (WARN if any_bad else OK), text, values

    def _diag_conversion(self):
        """WARN for inputs dropped as bad; values changed to fit (clamped) are counted but are not an error."""
        counts = self.counts()
        adjusted = {k: v for k, v in counts.items() if k in _ADJUSTED}
        rejected = {k: v for k, v in counts.items() if k not in _BENIGN and k not in _ADJUSTED}
        level = WARN if rejected else OK
        if counts.get('connect_failed') and not self.robot.is_connected:
            level = ERROR
        parts = []
        if rejected:
            parts.append(f'{sum(rejected.values())} inputs rejected ({", ".join(sorted(rejected))})')
        if adjusted:
            parts.append(f'{sum(adjusted.values())} adjusted ({", ".join(sorted(adjusted))})')
        return level, '; '.join(parts) or 'no conversion errors', counts


def main(args: Optional[Sequence[str]] = None) -> int:
    # The safety clock, the LiveKit loop and the camera workers are threads of one interpreter; a
    # thread that wakes up waits for the GIL up to the switch interval (5 ms by default) per
    # hand-over, several times over under image load. 1 ms keeps the clock's wake-ups prompt
    # (docs/benchmarks.md, safety clock under image load).
    sys.setswitchinterval(SWITCH_INTERVAL_S)
    return run_node(RobotBridge, args)


if __name__ == '__main__':
    sys.exit(main())
