"""operator_bridge: a ROS graph as an operator of a Portal session.

Publishes synchronized ``~/observation`` messages, per-camera ``~/<camera>/image_raw`` and
``~/joint_states`` for rviz, the active operator, and (with action subscription) every executed
action with its sender. Takes actions on ``~/action`` and chunks on ``~/action_chunk``; an action
whose header stamp equals an observation's stamp is sent as the answer to that observation, so
the robot measures true end-to-end policy latency. Handoff and RPC through services.

Run: ``ros2 run portal_bridge operator_bridge --ros-args --params-file config/operator.yaml``
"""

from __future__ import annotations

import asyncio
from collections import deque
import math
import threading
import time
from typing import Any, Optional, Sequence

from sensor_msgs.msg import Image, JointState
from std_msgs.msg import Float64MultiArray
from std_srvs.srv import Trigger
from trajectory_msgs.msg import JointTrajectory

from portal_bridge_msgs.msg import ExecutedAction, Observation
from portal_bridge_msgs.srv import CallRpc, SetActiveOperator

from ..portal import (
    Action,
    ActionChunk,
    Operator,
    StallPolicy,
    State,
    VideoFrame,
)
from ..portal import (
    Observation as PortalObservation,
)
from ..portal.errors import NoPeer, PortalError, RpcCallError
from ..portal.metrics import SampleRing
from ..portal.peer_settings import PeerSettings
from ..ros.cdr_observation import image_to_cdr, observation_to_cdr
from ..ros.counters import reason_of
from ..ros.diagnostics import OK, WARN
from ..ros.observation_msgs import (
    executed_action,
    executed_chunk,
    frame_to_image,
    observation_to_msg,
    state_to_joint_state,
)
from ..ros.qos import QOS_MODES, subscription_qos
from ..ros.stamps import stamp_to_us
from .bridge_node import BridgeNode
from .node_main import run_node
from .operator_inputs import OperatorInputs

__all__ = ['OperatorBridge', 'main']

_RECENT_OBSERVATIONS = 512
_ACTION_TYPES = ('joint_state', 'float64_multi_array')
ACTION_QUEUE_DEPTH = 100  # reader queue of ~/action and ~/action_chunk: ~3 s of a 30 Hz policy


class OperatorBridge(OperatorInputs, BridgeNode):
    def __init__(self, **kwargs: Any) -> None:
        super().__init__('operator_bridge', default_identity='operator', **kwargs)
        p = self.param
        self.action_type = p('action_type', 'joint_state', f'~/action message: {", ".join(_ACTION_TYPES)}.')
        chunks = self.contract.action_chunks
        self.chunk_name = p('action_chunk_name', chunks[0].name if chunks else '', 'Chunk that ~/action_chunk sends.')
        self.auto_claim = p('auto_claim', False, 'Take control once connected and the robot is in the room.')
        stall_ms = p(
            'stall_max_lag_ms',
            0.0,
            "Emit observations without a camera that sent nothing for this long (ms); 0 keeps Portal's "
            'behaviour of waiting for every camera.',
        )
        subscribe = p(
            'action_subscription',
            self.contract.action_subscription,
            'Receive the executed actions of the active operator (recorders); default from the contract.',
        )
        expected_robot = p(
            'robot_identity',
            '',
            'Identity of the robot to accept. Empty: the first participant with the robot role (others claiming '
            'it meanwhile are ignored and counted).',
        )
        sync_slack = p(
            'sync_slack',
            0,
            "Depth of the sync buffers in ticks (0: the contract's slack). Local to this operator, so it can be "
            'raised for a lossy link: states wait for frames delayed by retransmissions up to slack / fps.',
        )
        self.publish_camera_images = p('publish_camera_images', True, 'Publish ~/<camera>/image_raw for rviz.')
        self.publish_serialized = p(
            'publish_serialized',
            True,
            'Publish ~/observation and ~/<camera>/image_raw as CDR bytes built straight from the Portal records '
            '(one copy of each frame); false builds the Python messages first (same messages on the wire, slower).',
        )
        input_timeout_ms = p(
            'input_timeout_ms',
            1000,
            'A robot camera track or its state with nothing for this long is reported silent in /diagnostics '
            '(inputs task) and in one log line; checked once a second (ms).',
            value_range=(10, 600000),
        )
        qos_mode = p('qos_reliability', 'auto', f'Input subscription reliability: {", ".join(QOS_MODES)}.')
        self.joint_state_names = self.list_param(
            'joint_state_names',
            'Names for ~/joint_states, one per state field. Default: the state field names.',
        ) or [f.name for f in self.contract.state]
        problems = []
        if self.action_type not in _ACTION_TYPES:
            problems.append(f"action_type '{self.action_type}' must be one of {', '.join(_ACTION_TYPES)}")
        if self.chunk_name and self.contract.chunk(self.chunk_name) is None:
            problems.append(f"action_chunk_name '{self.chunk_name}' is not an action chunk of the wire contract")
        if len(self.joint_state_names) != len(self.contract.state):
            problems.append(f'joint_state_names needs {len(self.contract.state)} names (one per state field)')
        if stall_ms < 0:
            problems.append('stall_max_lag_ms must be >= 0')
        if sync_slack < 0:
            problems.append('sync_slack must be >= 0')
        if qos_mode not in QOS_MODES:
            problems.append(f"qos_reliability '{qos_mode}' must be one of {', '.join(QOS_MODES)}")
        if problems:
            raise SystemExit(self._fatal('; '.join(problems))) from None

        settings = PeerSettings.of(self.contract, action_subscription=bool(subscribe), slack=sync_slack or None)
        self.operator = Operator(
            self.contract,
            settings=settings,
            label=self.room,
            e2ee_key=self.e2ee_key,
            stall_policy=StallPolicy(stall_ms) if stall_ms > 0 else None,
        )
        self.operator.expected_robot = expected_robot or None
        self.track_order = self.contract.track_order
        self.action_fields = [f.name for f in self.contract.action]
        # Threads: _recent_obs/_recent_set are filled on the LiveKit thread (_on_observation) and
        # looked up on the ROS executor (_reply_to); _recent_lock guards both, so the set always
        # holds exactly the deque's timestamps. The published counters are written only on the
        # LiveKit thread and read by diagnostics (single writer). _claimed lives on the LiveKit
        # thread (on_connected, _auto_claim_loop). The latency rings lock themselves.
        self._recent_lock = threading.Lock()
        self._recent_obs: deque[int] = deque(maxlen=_RECENT_OBSERVATIONS)
        self._recent_set: set[int] = set()
        self._claimed = False
        self.observations_published = 0
        self.executed_published = 0
        # Latency probes (µs), reported in the `latency` diagnostics task: observation = emitted by the
        # sync buffer -> published; action = ~/action callback -> handed to LiveKit.
        # observation_age = robot state stamp -> observation emitted here (robot side, LiveKit and sync).
        self.latency = {
            'observation_age': SampleRing(),
            'observation_bridge': SampleRing(),
            'action_bridge': SampleRing(),
        }

        # -- outputs ------------------------------------------------------------------------------
        self.observation_pub = self.create_publisher(Observation, '~/observation', 10)
        self.joint_state_pub = self.create_publisher(JointState, '~/joint_states', 10)
        self.image_pubs = {}
        if self.publish_camera_images:
            for name in self.track_order:
                self.image_pubs[name] = self.create_publisher(Image, f'~/{name}/image_raw', 5)
        self.executed_pub = self.create_publisher(ExecutedAction, '~/executed_actions', 100) if subscribe else None

        # -- session callbacks (LiveKit thread) -------------------------------------------------------
        op = self.operator
        op.on_observation(self._on_observation)
        op.on_state(self._on_state)
        for name in self.image_pubs:
            op.on_video_frame(name, self._on_frame)
        if subscribe:
            op.on_action(self._on_executed_action)
            for chunk in self.contract.action_chunks:
                op.on_action_chunk(chunk.name, self._on_executed_chunk)

        # -- inputs ---------------------------------------------------------------------------------
        action_msg = JointState if self.action_type == 'joint_state' else Float64MultiArray
        handler = self._on_action_joint_state if self.action_type == 'joint_state' else self._on_action_array
        # Actions travel reliably and in order once sent; a short reader queue would drop a policy's
        # actions silently whenever this executor falls a third of a second behind (seen under CPU
        # contention: 442 of 451 reached the robot), so hold ACTION_QUEUE_DEPTH (~3 s at 30 Hz).
        qos = subscription_qos(self, '~/action', qos_mode, ACTION_QUEUE_DEPTH, ACTION_QUEUE_DEPTH)
        self.create_subscription(action_msg, '~/action', self.guarded(handler), qos)
        if self.chunk_name:
            qos = subscription_qos(self, '~/action_chunk', qos_mode, ACTION_QUEUE_DEPTH, ACTION_QUEUE_DEPTH)
            self.create_subscription(JointTrajectory, '~/action_chunk', self.guarded(self._on_action_chunk), qos)
        srv = self.service_host
        srv.create_service(SetActiveOperator, '~/set_active_operator', self._srv_set_active_operator)
        srv.create_service(Trigger, '~/claim_control', self._srv_claim)
        srv.create_service(Trigger, '~/release_control', self._srv_release)
        srv.create_service(CallRpc, '~/call_rpc', self._srv_call_rpc)
        if self.auto_claim:
            self.loop.submit(self._auto_claim_loop())
        self._init_inputs(input_timeout_ms / 1000.0)
        self.add_diagnostics(sync=self._diag_sync, gate=self._diag_gate, inputs=self._diag_inputs)
        self.start_session(op)

    # -- outputs (published from the LiveKit thread) ----------------------------------------------
    def _robot(self) -> str:
        return self.operator.robot_identity() or ''

    def _on_observation(self, obs: PortalObservation) -> None:
        self._remember(obs.timestamp_us)
        self.latency['observation_age'].add(obs.received_ns // 1000 - obs.timestamp_us)
        if self.observation_pub.get_subscription_count() == 0:
            return
        # Published right here on the LiveKit thread: handing it to another thread cost ~4 ms of GIL
        # handoff (measured). The CDR bytes cost 0.07 ms to build at 640x480 and 0.4 ms at 3 x 1280x720,
        # the Python message 1.4 and 5.7 ms (bench.serialized_publish); subscribers get the same message.
        convert = observation_to_cdr if self.publish_serialized else observation_to_msg
        self.observation_pub.publish(convert(obs, self.track_order, self.joint_state_names, self._robot()))
        self.observations_published += 1
        self.latency['observation_bridge'].add((time.time_ns() - obs.received_ns) // 1000)

    def _remember(self, ts: int) -> None:
        """Keep the last observation stamps for ``_reply_to`` (LiveKit thread)."""
        with self._recent_lock:
            if ts in self._recent_set:  # a repeated stamp: a second deque entry would evict it early
                return
            if len(self._recent_obs) == self._recent_obs.maxlen:
                self._recent_set.discard(self._recent_obs[0])
            self._recent_obs.append(ts)
            self._recent_set.add(ts)

    def _on_state(self, state: State) -> None:
        if self.joint_state_pub.get_subscription_count():
            self.joint_state_pub.publish(state_to_joint_state(state, self.joint_state_names, self._robot()))

    def _on_frame(self, track: str, frame: VideoFrame) -> None:
        pub = self.image_pubs[track]
        if pub.get_subscription_count():
            pub.publish(image_to_cdr(frame, track) if self.publish_serialized else frame_to_image(frame, track))

    def _on_executed_action(self, action: Action) -> None:
        self.executed_pub.publish(executed_action(action, self._robot()))
        self.executed_published += 1

    def _on_executed_chunk(self, chunk: ActionChunk) -> None:
        self.executed_pub.publish(executed_chunk(chunk, self._robot()))
        self.executed_published += 1

    # -- inputs (executor threads) -----------------------------------------------------------------
    def _reply_to(self, stamp) -> Optional[int]:
        if stamp is None:
            return None
        ts = stamp_to_us(stamp)
        with self._recent_lock:  # executor thread; _remember writes on the LiveKit thread
            return ts if ts in self._recent_set else None

    def _send_action(self, values: dict[str, float], stamp, start: int = 0) -> None:
        bad = [k for k, v in values.items() if math.isnan(v)]
        if bad:
            self.count('nan-action', f'~/action with NaN in {bad} dropped')
            return
        try:
            self.operator.send_action(values, in_reply_to_ts_us=self._reply_to(stamp), check_types=False)
            if start:
                self.latency['action_bridge'].add((time.perf_counter_ns() - start) // 1000)
        except PortalError as exc:
            self.count('not-connected' if 'not connected' in str(exc) else reason_of(exc), f'~/action: {exc}')

    def _on_action_joint_state(self, msg: JointState) -> None:
        start = time.perf_counter_ns()
        fields = self.action_fields
        values, unknown = {}, []
        for name, value in zip(msg.name, msg.position):
            if name in fields:
                values[name] = float(value)
            else:
                unknown.append(name)
        if unknown:
            self.count('unknown-joints', f'~/action names joints {unknown} that are not action fields {fields}')
        if len(msg.position) < len(msg.name):
            self.count('missing-positions', '~/action has fewer positions than names')
        if values:
            self._send_action(values, msg.header.stamp, start)

    def _on_action_array(self, msg: Float64MultiArray) -> None:
        if len(msg.data) != len(self.action_fields):
            self.count(
                'wrong-length',
                f'~/action has {len(msg.data)} values; the contract has {len(self.action_fields)} fields',
            )
            return
        start = time.perf_counter_ns()
        self._send_action(dict(zip(self.action_fields, (float(v) for v in msg.data))), None, start)

    def _on_action_chunk(self, msg: JointTrajectory) -> None:
        spec = self.contract.chunk(self.chunk_name)
        index = {name: i for i, name in enumerate(msg.joint_names)}
        missing = [f.name for f in spec.fields if f.name not in index]
        if missing:
            self.count('chunk-missing-joints', f'~/action_chunk lacks joints {missing} of chunk {spec.name!r}')
            return
        if len(msg.points) != spec.horizon:
            self.count(
                'horizon-mismatch',
                f'~/action_chunk has {len(msg.points)} points; chunk {spec.name!r} has horizon {spec.horizon}',
            )
            return
        try:
            columns = {f.name: [float(pt.positions[index[f.name]]) for pt in msg.points] for f in spec.fields}
        except IndexError:
            self.count('missing-positions', '~/action_chunk has points with fewer positions than joint_names')
            return
        if any(math.isnan(v) for col in columns.values() for v in col):
            self.count('nan-action', '~/action_chunk with NaN dropped')
            return
        try:
            self.operator.send_action_chunk(
                self.chunk_name, columns, in_reply_to_ts_us=self._reply_to(msg.header.stamp)
            )
        except PortalError as exc:
            self.count(reason_of(exc), f'~/action_chunk: {exc}')

    # -- control ---------------------------------------------------------------------------------
    def _set_active(self, identity: Optional[str]) -> tuple[bool, str]:
        try:
            self.run_on_loop(self.operator.set_active_operator(identity), 20.0)
        except RpcCallError as exc:
            return False, f'robot refused: {exc.message} (code {exc.code})'
        except NoPeer as exc:
            return False, str(exc)
        except (PortalError, TimeoutError) as exc:
            return False, f'could not reach the robot: {exc}'
        deadline = time.monotonic() + 2.0  # let the robot's attribute reach our mirror
        while self.operator.active_operator() != identity and time.monotonic() < deadline:
            time.sleep(0.01)
        return True, f'active operator: {identity or "(none)"}'

    def _srv_set_active_operator(self, request, response):
        response.previous = self.operator.active_operator() or ''
        response.success, response.message = self._set_active(request.identity or None)
        response.active = self.operator.active_operator() or ''
        return response

    def _srv_claim(self, request, response):
        response.success, response.message = self._set_active(self.identity)
        return response

    def _srv_release(self, request, response):
        if self.operator.active_operator() != self.identity:
            response.success, response.message = True, 'not in control; nothing to release'
            return response
        response.success, response.message = self._set_active(None)
        return response

    def _srv_call_rpc(self, request, response):
        timeout_ms = int(request.timeout_s * 1000) if request.timeout_s > 0 else None
        coro = self.operator.perform_rpc(request.method, request.payload, request.destination or None, timeout_ms)
        try:
            response.response = self.run_on_loop(coro, (timeout_ms or 15000) / 1000.0 + 5.0)
            response.success, response.error_code = True, 0
        except RpcCallError as exc:
            response.success, response.error_code, response.response = False, exc.code, exc.message
        except (PortalError, TimeoutError) as exc:
            response.success, response.error_code, response.response = False, 0, str(exc)
        return response

    def on_connected(self) -> None:
        self._claimed = False

    async def _auto_claim_loop(self) -> None:
        """Claim once per connection when the robot is there; again when a robot (re)joins with nobody in control."""
        op = self.operator
        arrivals = op.robot_arrivals
        while True:
            await asyncio.sleep(0.2)
            if not op.is_connected or op.robot_identity() is None:
                continue
            if op.robot_arrivals != arrivals:
                arrivals = op.robot_arrivals
                if op.active_operator() is None:
                    self._claimed = False  # the robot restarted with nobody in control
            if self._claimed:
                continue
            self._claimed = True
            try:
                await op.claim_control()
                self.get_logger().info(f"auto_claim: '{self.identity}' is the active operator")
            except PortalError as exc:
                self._claimed = False
                self.get_logger().warning(f'auto_claim failed: {exc}; retrying')
                await asyncio.sleep(1.0)

    # -- diagnostics -----------------------------------------------------------------------------
    def _diag_sync(self):
        s = self.operator.metrics().sync
        rate = self.rates('sync', {'observations': s.observations_emitted})['observations']
        values = {
            'observations_per_s': rate,
            'observations_emitted': s.observations_emitted,
            'states_dropped': s.states_dropped,
            'states_dropped_overflow': s.states_dropped_overflow,
            'stale_observations': s.stale_observations_emitted,
            'match_delta_us_p50': s.match_delta_us_p50,
            'match_delta_us_p95': s.match_delta_us_p95,
            'stalled_tracks': s.stalled_tracks,
            'last_blocker_track': s.last_blocker_track or '',
            'observations_published': self.observations_published,
        }
        if s.stalled_tracks:
            return WARN, f'stalled: {", ".join(s.stalled_tracks)}', values
        return OK, f'{rate:.1f} observations/s', values

    def _diag_transport(self):
        t = self.operator.metrics().transport
        scalars = ('states_received', 'state_jitter_us', 'actions_sent', 'action_chunks_sent')
        per_track = {'frames_received': 'frames_received', 'frame_jitter_us': 'jitter_us'}
        values = self.transport_values('frames_received', per_track, scalars)
        return OK, f'{t.states_received} states received', values

    def _diag_gate(self):
        active = self.operator.active_operator()
        t = self.operator.metrics().transport
        values = {
            'active_operator': active or '',
            'in_control': active == self.identity,
            'robot': self._robot(),
            'executed_actions_published': self.executed_published,
            'executed_actions_dropped': t.dropped.get('gate', 0),
        }
        return OK, f'active operator: {active or "(none)"}', values


def main(args: Optional[Sequence[str]] = None) -> int:
    return run_node(OperatorBridge, args)


if __name__ == '__main__':
    import sys

    sys.exit(main())
