"""robot_bridge: a ROS robot as the robot of a Portal session.

Cameras (``sensor_msgs/Image`` or ``CompressedImage``) and ``sensor_msgs/JointState`` go out
as Portal video and state, stamped from their headers. The active operator's actions come in as
commands for ros2_control (``Float64MultiArray``, ``JointTrajectory``, ``JointState`` or
``Twist``); action chunks play as one trajectory or one row per tick. One state machine
(:mod:`portal_bridge.control.safety`) owns the command output: a watchdog applies ``on_timeout`` when the
active operator goes quiet, an emergency stop latches a safe state until a local reset, NaN and
out-of-limit values never reach the controller, and only ``allowed_operators`` may take control.

Run: ``ros2 run portal_bridge robot_bridge --ros-args --params-file config/robot_arm.yaml``
"""

from __future__ import annotations

import sys
import time
from typing import Any, Optional, Sequence

from rclpy.qos import QoSProfile, ReliabilityPolicy
from std_msgs.msg import Bool
from std_srvs.srv import Trigger

from portal_bridge_msgs.srv import SetActiveOperator

from ..commands import COMMAND_INTERFACES, COMMANDS
from ..control.command_output import CommandOutput
from ..control.safety import TIMEOUT_POLICIES, CommandSafety
from ..portal import AccessPolicy, Robot
from ..portal.metrics import SampleRing
from ..portal.protocol import EMERGENCY_STOP_RPC
from ..ros.frame_worker import FrameWorker
from ..ros.input_health import InputHealth
from ..ros.joints import (
    CommandBuilder,
    MappingError,
    StateMapping,
)
from ..ros.native_stderr import filter_native_stderr
from ..ros.params import DynamicParameters
from ..ros.qos import QOS_MODES
from ..ros.service_host import ServiceHost
from ..ros.state_rate import FramePacedStates, StateRateLimiter
from .bridge_node import LATCHED, BridgeNode
from .node_main import run_node
from .robot_commands import RobotCommands
from .robot_diagnostics import RobotDiagnostics
from .robot_inputs import RobotInputs
from .robot_services import RobotServices

__all__ = ['RobotBridge', 'main']

_WATCHDOG_PERIOD_S = 0.02
SWITCH_INTERVAL_S = 0.001
_ESTOP_QOS = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE)


class RobotBridge(RobotInputs, RobotCommands, RobotServices, RobotDiagnostics, BridgeNode):
    """A ROS robot as the robot of a Portal session: parameters and wiring.

    Its parts are in one module each: robot_inputs, robot_commands, robot_services and
    robot_diagnostics.
    """

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
        self.state_pacing = p(
            'state_pacing',
            'camera' if c.videos else 'rate',
            'camera: forward one joint state per frame of the first camera, the one nearest to the frame '
            "(each observation gets a frame of its own); rate: at state_rate_hz. 'camera' falls back to the "
            'rate while that camera is silent.',
            choices=('camera', 'rate'),
        )
        if self.state_pacing == 'camera' and not c.videos:
            raise SystemExit(self._fatal('state_pacing camera needs a video track in the wire contract'))
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
        for method, service in zip(rpc_methods, rpc_services or [f'/{m}' for m in rpc_methods]):
            self._serve_rpc(method, service)
        self.robot.register_rpc_method(EMERGENCY_STOP_RPC, self._rpc_emergency_stop)

        # -- ROS interfaces --------------------------------------------------------------------------
        self.state_rate = StateRateLimiter(self.state_rate_hz)
        self.paced_states = FramePacedStates(1e6 / c.fps) if self.state_pacing == 'camera' else None
        self._last_state_stamp = -1
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
        # The command output: one state machine owns what reaches the controller (see control/safety.py).
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
            on_error=lambda exc: self.count('command-output-error', f'command output failed: {exc!r}'),
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
        self.add_diagnostics(
            policy=self._diag_policy, gate=self._diag_gate, safety=self._diag_safety, inputs=self._diag_inputs
        )
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


def main(args: Optional[Sequence[str]] = None) -> int:
    # The safety clock, the LiveKit loop and the camera workers are threads of one interpreter; a
    # thread that wakes up waits for the GIL up to the switch interval (5 ms by default) per
    # hand-over, several times over under image load. 1 ms keeps the clock's wake-ups prompt
    # (docs/benchmarks.md, safety clock under image load).
    sys.setswitchinterval(SWITCH_INTERVAL_S)
    filter_native_stderr()  # the H.264 encoder's start-up rate line (ros/native_stderr.py)
    return run_node(RobotBridge, args)


if __name__ == '__main__':
    sys.exit(main())
