"""Faults against the real server: impaired links, a server restart, a dead operator, a robot restart.

Figures are written to .ws/reliability/*.json; docs/reliability.md records them.
"""

import json
import os
from pathlib import Path
import signal
import subprocess
import sys
import time

from diagnostic_msgs.msg import DiagnosticArray
from geometry_msgs.msg import Twist
import pytest
from sensor_msgs.msg import Image, JointState
from std_msgs.msg import Float64MultiArray
from support.child_process import spawn
from support.impaired_network import PROFILE_1, PROFILE_2, ImpairedNetwork
from support.livekit_server import free_ports, start_server
from support.ros_world import RELIABLE, BridgeWorld
from support.traffic import Publisher, numbered_actions, percentile, robot_traffic
from support.waiting import wait_for_sync

from portal_bridge.portal import now_us
from portal_bridge.ros.stamps import stamp_to_us
from portal_bridge_msgs.msg import ExecutedAction, Observation

pytestmark = [pytest.mark.livekit, pytest.mark.ros, pytest.mark.slow]

RESULTS = Path(__file__).resolve().parents[2] / '.ws' / 'reliability'


def contract(tolerance: float = 1.5) -> str:
    return f"""
version: 1
fps: 30
tolerance: {tolerance}
videos: [ {{ name: cam, codec: h264, max_bitrate_kbps: 1000 }} ]
state: [ {{ name: j1, dtype: f64 }}, {{ name: j2, dtype: f64 }} ]
action: [ {{ name: j1, dtype: f64 }}, {{ name: j2, dtype: f64 }} ]
"""


BASE_CONTRACT = """
version: 1
state: [ { name: j1, dtype: f64 } ]
action: [ { name: linear_x, dtype: f32 } ]
"""


def record(name: str, figures: dict) -> None:
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / f'{name}.json').write_text(json.dumps(figures, indent=2))
    print(f'\n[reliability] {name}: {figures}')


def diagnostics_value(domain, name: str, key: str):
    got = domain.collect(DiagnosticArray, '/diagnostics')
    wait_for_sync(lambda: any(s.name == name for d in got for s in d.status), timeout=5)
    status = [s for d in got for s in d.status if s.name == name][-1]
    return {kv.key: kv.value for kv in status.values}.get(key), status


# -- network impairment ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ('profile', 'tolerance', 'slack'),
    [(PROFILE_1, 1.5, 60), (PROFILE_1, 1.5, 5), (PROFILE_1, 0.5, 60), (PROFILE_2, 1.5, 60), (PROFILE_2, 0.5, 60)],
    ids=['profile1-tol1.5', 'profile1-tol1.5-slack5', 'profile1-tol0.5', 'profile2-tol1.5', 'profile2-tol0.5'],
)
def test_impaired_link(profile, tolerance, slack, room_name, tmp_path):
    """States emitted, observation latency and action delivery over an impaired link.

    ``slack`` (operator-local) must cover the extra video delay of retransmissions: at 30 fps the
    default 5 ticks is 167 ms, which 2 % loss at 30±10 ms per leg exceeds often; a frame repaired by
    a second NACK round arrives some 2 RTT (~300 ms here) late, and reliable states now and then
    stall behind an SCTP retransmission timeout (1 s or more) while their frames wait in a buffer
    of the same depth, so the measured cases use 60 ticks (2 s). What remains lost is video the
    receiver never got (``frames_sent - frames_received``): WebRTC's NACK/keyframe recovery on this
    link loses 0-2 % of frames in most runs and, after a lost keyframe, seconds of video in some.
    """
    seconds = 15.0
    with ImpairedNetwork(profile) as net:
        world = BridgeWorld(net.server, room_name, tmp_path)
        try:
            c = world.contract(contract(tolerance))
            robot = world.robot_bridge(c, command_topic='/cmd', action_timeout_ms=5000)
            op = world.operator_bridge(c, auto_claim=True, sync_slack=slack)
            wait_for_sync(lambda: op.operator.active_operator() == 'operator', 20)
            observations = []
            world.operator_side.node('sub').create_subscription(
                Observation, '/operator_bridge/observation', lambda m: observations.append((now_us(), m.timestamp_us)),
                RELIABLE)  # fmt: skip
            # When the operator received each frame and each state (frame and state share a stamp): it
            # publishes per-camera images and joint states as they arrive, before the sync.
            frame_seen, state_seen = {}, {}
            world.operator_side.node('viewer').create_subscription(
                Image, '/operator_bridge/cam/image_raw',
                lambda m: frame_seen.setdefault(stamp_to_us(m.header.stamp), time.monotonic()), RELIABLE)  # fmt: skip
            world.operator_side.node('viewer').create_subscription(
                JointState, '/operator_bridge/joint_states',
                lambda m: state_seen.setdefault(stamp_to_us(m.header.stamp), time.monotonic()), RELIABLE)  # fmt: skip
            commands = world.robot_side.collect(Float64MultiArray, '/cmd')
            robot_pub = robot_traffic(world.robot_side.node('drivers'), camera='/cam/image_raw')
            actions = numbered_actions(world.operator_side.node('policy'), '/operator_bridge/action', 1.0)
            robot_pub.start()
            wait_for_sync(lambda: observations, 30)
            time.sleep(2)  # warm-up: encoder and congestion control settle
            r0, o0, c0 = robot.robot.metrics(), op.operator.metrics(), net.census()
            window_start = now_us()  # count states forwarded, and observations of states stamped, from here
            actions.start()
            time.sleep(seconds)
            actions.stop()
            robot_pub.stop()
            time.sleep(1.5)  # let the last packets in flight arrive (and the relay's census catch up)
            r1, o1, c1 = robot.robot.metrics(), op.operator.metrics(), net.census()
            frame_drops = {
                k: v - o0.transport.dropped.get(k, 0)
                for k, v in o1.transport.dropped.items()
                if k in ('recv-overflow', 'no-timestamp') and v > o0.transport.dropped.get(k, 0)
            }
            forwarded = r1.transport.states_sent - r0.transport.states_sent
            received = {int(m.data[0]) for m in commands}
            observations = [(recv, ts) for recv, ts in observations if ts >= window_start]
            stamps = [ts for _, ts in observations]
            latency = [(recv - ts) / 1000 for recv, ts in observations]
            figures = {
                'profile': profile.name, 'tolerance': tolerance, 'slack': slack, 'seconds': seconds,
                'states_forwarded': forwarded, 'observations': len(observations),
                'emitted_fraction': round(len(set(stamps)) / max(forwarded, 1), 4),
                'duplicate_observations': len(stamps) - len(set(stamps)),
                'frames_sent': r1.transport.frames_sent['cam'] - r0.transport.frames_sent['cam'],
                'frames_received': o1.transport.frames_received['cam'] - o0.transport.frames_received['cam'],
                'states_received': o1.transport.states_received - o0.transport.states_received,
                'sync_states_dropped': o1.sync.states_dropped - o0.sync.states_dropped,
                'states_dropped_overflow': o1.sync.states_dropped_overflow - o0.sync.states_dropped_overflow,
                'frame_evictions': sum(o1.buffers.evictions.values()) - sum(o0.buffers.evictions.values()),
                'observation_latency_ms_p50': round(percentile(latency, 50), 1),
                'observation_latency_ms_p95': round(percentile(latency, 95), 1),
                'actions_sent': actions.count, 'actions_delivered': len(received),
                'rtt_ms': (op.operator.metrics().rtt.rtt_us_mean or 0) / 1000,
                'operator_frame_drops': frame_drops,
                # padding-only RTP the robot's publisher sent on its media SSRC (bandwidth probes;
                # ~50 at connect is normal): a lost one leaves a hole no NACK can fill, and an H264
                # receiver then holds every frame back until the next keyframe (docs/reliability.md)
                'publisher_padding_packets': c1.get('u_rtp_padding', 0) - c0.get('u_rtp_padding', 0),
            }  # fmt: skip
            # Actions are reliable: every one arrives, though not always within the 1.5 s above. On
            # this link an SCTP retransmission timeout (backed off to seconds under 8 % loss) can
            # hold the last few back (seen: 444 of 451 after 1.5 s); wait for them, bounded, and
            # record how long it took and where any missing one was lost.
            waited = time.monotonic()
            while len({int(m.data[0]) for m in commands}) < actions.count and time.monotonic() - waited < 20:
                time.sleep(0.1)
            received = {int(m.data[0]) for m in commands}
            r2, o2 = robot.robot.metrics(), op.operator.metrics()
            figures['actions_delivered'] = len(received)
            figures['actions_complete_after_s'] = round(time.monotonic() - waited, 1)
            figures['actions_queued_by_operator'] = o2.transport.actions_sent - o0.transport.actions_sent
            figures['actions_received_by_robot'] = r2.transport.actions_received - r0.transport.actions_received
            # States that reached the operator within half the sync's slack of their frame (the
            # other half is left for this test's own subscribers' delay), and how many of those the
            # bridge lost: not emitted, or a decoded frame dropped in its queue.
            margin_s = 0.5 * slack / 30
            paired = {
                ts for ts, t in state_seen.items()
                if ts >= window_start and ts in frame_seen and abs(frame_seen[ts] - t) < margin_s
            }  # fmt: skip
            lost_in_bridge = len(paired - set(stamps)) + frame_drops.get('recv-overflow', 0)
            figures['paired_in_time'], figures['lost_in_bridge'] = len(paired), lost_in_bridge
            record(f'impaired-{profile.name[:2].strip("%")}-tol{tolerance}-slack{slack}', figures)
            assert len(received) == actions.count, figures
            assert figures['duplicate_observations'] == 0, figures
            # Observations flowed before the window (waited for above); within it, the video may
            # freeze for seconds (profile 1) or the whole window (profile 2, 0-38 % emitted).
            if profile is PROFILE_1 and slack == 60:
                # The bridge's share of the target: every state that reached the operator within the
                # sync's slack of its frame is emitted, and frames the SDK decoded are not lost in the
                # bridge's queues (2 % for states still in flight at the end). What the transport
                # delivered later than that (an SCTP retransmission timeout backs off to seconds on a
                # slow host), or never (frames_sent - frames_received), caps emitted_fraction from
                # outside the bridge: the sync drops such a state, counted and logged.
                assert lost_in_bridge <= 0.02 * forwarded, json.dumps(figures)
        finally:
            world.close()


# -- server restart ---------------------------------------------------------------------------------


def test_server_restart_both_bridges_reconnect(room_name, tmp_path):
    port, tcp_port, udp_port = free_ports()
    server = start_server(port=port, tcp_port=tcp_port, udp_port=udp_port)
    world = BridgeWorld(server, room_name, tmp_path)
    try:
        c = world.contract(contract())
        robot = world.robot_bridge(c)
        op = world.operator_bridge(c, auto_claim=True)
        wait_for_sync(lambda: robot.robot.active_operator() == 'operator', 20)
        observations = world.operator_side.collect(Observation, '/operator_bridge/observation')
        traffic = robot_traffic(world.robot_side.node('drivers'))
        traffic.start()
        wait_for_sync(lambda: len(observations) > 10, 20)
        server.kill()  # a crash, not a clean shutdown
        time.sleep(4)
        server = start_server(port=port, tcp_port=tcp_port, udp_port=udp_port)
        back = time.monotonic()
        n = len(observations)
        wait_for_sync(lambda: len(observations) > n + 5, 30, what='observations after the restart')
        resumed_s = time.monotonic() - back
        traffic.stop()
        reconnects, status = diagnostics_value(world.operator_side, 'operator_bridge: connection', 'reconnect_count')
        robot_reconnects = robot.robot.reconnect_count
        record('server-restart', {'observations_resumed_after_s': round(resumed_s, 2),
                                  'operator_reconnect_count': int(reconnects), 'robot_reconnect_count': robot_reconnects,
                                  'active_operator_after': robot.robot.active_operator()})  # fmt: skip
        assert resumed_s < 5.0
        assert robot.robot.active_operator() == 'operator' and op.operator.active_operator() == 'operator'
        assert int(reconnects) >= 1 and robot_reconnects >= 1 and status.level == bytes([0])
    finally:
        world.close()
        server.stop()


# -- the active operator's process dies ---------------------------------------------------------------


def test_killed_operator_process_trips_the_watchdog(livekit_server, room_name, tmp_path):
    world = BridgeWorld(livekit_server, room_name, tmp_path)
    proc = None
    try:
        c = world.contract(BASE_CONTRACT)
        robot = world.robot_bridge(c, command_type='twist', on_timeout='zero', action_timeout_ms=300)
        stamps = []
        world.robot_side.node('base').create_subscription(
            Twist, '/cmd_vel', lambda m: stamps.append((time.monotonic(), m.linear.x)), 50
        )
        env = dict(os.environ, ROS_DOMAIN_ID=str(world.operator_side.domain_id),
                   LIVEKIT_API_KEY=livekit_server.api_key, LIVEKIT_API_SECRET=livekit_server.api_secret)  # fmt: skip
        proc = spawn(
            [sys.executable, '-m', 'portal_bridge.nodes.operator_bridge', '--ros-args', '-p', f'livekit_url:={livekit_server.url}',
             '-p', f'room:={room_name}', '-p', f'contract_file:={c}', '-p', 'identity:=pilot', '-p', 'auto_claim:=true'],
            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
        wait_for_sync(lambda: robot.robot.active_operator() == 'pilot', 30)
        pub = world.operator_side.node('teleop').create_publisher(JointState, '/operator_bridge/action', 10)
        sender = Publisher(lambda i: pub.publish(JointState(name=['linear_x'], position=[0.5])), 30)
        sender.start()
        wait_for_sync(lambda: sum(v == 0.5 for _, v in stamps) > 10, 20)
        proc.send_signal(signal.SIGKILL)
        killed = time.monotonic()
        wait_for_sync(lambda: any(v == 0.0 and t > killed for t, v in stamps), 5, what='zero Twist')
        sender.stop()
        last_move = max(t for t, v in stamps if v == 0.5)
        zero_at = min(t for t, v in stamps if v == 0.0 and t > last_move)
        reason, status = diagnostics_value(world.robot_side, 'robot_bridge: safety', 'reason')
        record('operator-killed', {'zero_command_after_last_action_ms': round((zero_at - last_move) * 1000, 1),
                                   'action_timeout_ms': 300, 'diagnostics_reason': reason})  # fmt: skip
        assert zero_at - last_move < 0.3 + 0.1
        assert "no action from active operator 'pilot'" in reason and status.level == bytes([1])
        assert robot.robot.active_operator() == 'pilot'  # pinned: the same identity may come back
    finally:
        if proc is not None and proc.poll() is None:
            proc.kill()
        world.close()


# -- the robot bridge restarts ------------------------------------------------------------------------


def test_robot_bridge_restart_operator_resumes(livekit_server, room_name, tmp_path):
    world = BridgeWorld(livekit_server, room_name, tmp_path)
    try:
        c = world.contract(contract())
        robot = world.robot_bridge(c)
        op = world.operator_bridge(c, auto_claim=True)
        observations = world.operator_side.collect(Observation, '/operator_bridge/observation')
        traffic = robot_traffic(world.robot_side.node('drivers'))
        traffic.start()
        wait_for_sync(lambda: len(observations) > 10, 20)
        robot.shutdown()
        world.robot_side.executor.remove_node(robot)
        robot.destroy_node()
        wait_for_sync(lambda: op.operator.robot_identity() is None, 10)
        restarted = time.monotonic()
        robot2 = world.robot_bridge(c)
        n = len(observations)
        wait_for_sync(lambda: len(observations) > n + 5, 20, what='observations from the restarted robot')
        wait_for_sync(lambda: robot2.robot.active_operator() == 'operator', 10, what='control re-claimed')
        record('robot-restart', {'observations_resumed_after_s': round(time.monotonic() - restarted, 2)})
        traffic.stop()
        assert op.operator.is_connected and op.operator.reconnect_count == 0  # the operator never restarted
    finally:
        world.close()


# -- recording integrity under impairment -------------------------------------------------------------


def test_recording_integrity_across_handoffs_under_profile_1(room_name, tmp_path):
    with ImpairedNetwork(PROFILE_1) as net:
        world = BridgeWorld(net.server, room_name, tmp_path)
        try:
            c = world.contract(contract())
            world.robot_bridge(c, command_topic='/cmd', action_timeout_ms=5000)
            world.operator_bridge(c, 'policy', namespace='policy')
            world.operator_bridge(c, 'human', namespace='human')
            world.operator_bridge(c, 'recorder', namespace='recorder', action_subscription=True)
            executed = world.operator_side.collect(ExecutedAction, '/recorder/operator_bridge/executed_actions')
            commands = world.robot_side.collect(Float64MultiArray, '/cmd')
            node = world.operator_side.node('pilots')
            p_send = numbered_actions(node, '/policy/operator_bridge/action', 1.0)
            h_send = numbered_actions(node, '/human/operator_bridge/action', 2.0)
            from std_srvs.srv import Trigger

            def claim(ns: str) -> None:
                client = node.create_client(Trigger, f'/{ns}/operator_bridge/claim_control')
                assert client.wait_for_service(10)
                future = client.call_async(Trigger.Request())
                wait_for_sync(future.done, 20)
                assert future.result().success, future.result().message

            claim('policy')
            p_send.start()
            h_send.start()
            for ns in ('human', 'policy', 'human', 'policy'):  # policy -> human -> policy, twice
                time.sleep(2.0)
                claim(ns)
            time.sleep(2.0)
            p_send.stop()
            h_send.stop()
            # Actions still in flight reach the robot, and their echoes the recorder, over the impaired
            # link; both are reliable but can stall behind an SCTP retransmission timeout (seconds on
            # a slow host). Wait until neither count has moved for 3 s with every command echoed
            # (bounded), and record how long it took.
            waited = time.monotonic()
            last, still_since = None, time.monotonic()
            while time.monotonic() - waited < 40:
                now = (len(commands), len(executed))
                if now != last:
                    last, still_since = now, time.monotonic()
                elif now[1] >= now[0] and time.monotonic() - still_since >= 3.0:
                    break
                time.sleep(0.1)

            def key(values) -> tuple[int, int]:
                return int(values[1]), int(values[0])  # (who, sequence)

            accepted = [key(m.data) for m in commands]
            recorded = [key(m.values) for m in executed]
            senders = {1: 'policy', 2: 'human'}
            record('recording-integrity', {'profile': PROFILE_1.name, 'accepted': len(accepted),
                                           'recorded': len(recorded), 'handoffs': 4,
                                           'recorded_after_s': round(time.monotonic() - waited, 1)})  # fmt: skip
            assert len(set(accepted)) == len(accepted)  # the robot executed nothing twice
            missing, extra = sorted(set(accepted) - set(recorded)), sorted(set(recorded) - set(accepted))
            assert sorted(recorded) == sorted(accepted), (len(accepted), len(recorded), missing[:10], extra[:10])
            assert all(senders[int(m.values[1])] == m.sender for m in executed)  # labelled with its sender
            assert {who for who, _ in accepted} == {1, 2}
        finally:
            world.close()
