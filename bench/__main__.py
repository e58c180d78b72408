"""make bench: latency, throughput and CPU of portal_bridge, the variants side by side in one run.

Every case starts the parts it compares as separate processes (as they are deployed) against one
local livekit-server, measures end-to-end numbers with a subscriber and takes per-hop numbers
from the bridges' own latency probes (their `latency` diagnostics task). This module holds the
cases' :class:`Bench` (server, ROS domains, cases 1-6), the report's sections and ``main``; the
harness (processes, ROS domains, machine line) is in ``harness.py``, case 7 in ``safety_clock.py``.

    python -m bench [--quick] [--out docs/benchmarks.md]
    python -m bench --only safety_clock       # one section (repeatable), printed with its run header
"""

from __future__ import annotations

import argparse
import datetime
import os
from pathlib import Path
import sys
import tempfile
import time
from typing import Any, Callable

from sensor_msgs.msg import Image, JointState
from std_msgs.msg import Float64MultiArray

from portal_bridge_msgs.msg import Observation

from .harness import JOINTS, RELIABLE, Domain, Processes, contract_yaml, machine, start_server
from .safety_clock import safety_clock, safety_clock_table
from .stats import fmt, summary, table


class Bench:
    def __init__(self, quick: bool) -> None:
        self.quick = quick
        self.server = start_server()
        self.base = int(os.environ.get('ROS_DOMAIN_ID', '40'))
        self.env = dict(os.environ, LIVEKIT_API_KEY=self.server.api_key, LIVEKIT_API_SECRET=self.server.api_secret)
        self.tmp = Path(tempfile.mkdtemp(prefix='bench-contracts-'))
        self.robot_side = Domain(self.base)
        self.operator_side = Domain(self.base + 1)
        self.rooms = 0
        self.sections: list[str] = []

    def seconds(self, full: float) -> float:
        return min(full, 4.0) if self.quick else full

    def room(self) -> str:
        self.rooms += 1
        return f'bench-{os.getpid()}-{self.rooms}'

    def contract(self, cameras: int, codec: str) -> str:
        path = self.tmp / f'c{cameras}_{codec}.yaml'
        path.write_text(contract_yaml(cameras, codec))
        return str(path)

    def bridges(self, procs: Processes, contract: str, room: str, **robot: Any) -> None:
        cams = {f'cameras.cam{i}.topic': f'/cam{i}/image_raw' for i in range(robot.pop('cameras', 0))}
        common = {'livekit_url': self.server.url, 'room': room, 'contract_file': contract}
        procs.bridge('robot_bridge', 'robot_bridge', self.base, **common, **cams, state_joints=JOINTS,
                     command_topic='/cmd', **robot)  # fmt: skip
        procs.bridge('operator_bridge', 'operator_bridge', self.base + 1, **common, identity='operator',
                     auto_claim='true', publish_camera_images='false')  # fmt: skip

    def fresh_diagnostics(self) -> None:
        """Forget diagnostics of earlier cases and wait for this case's next 1 Hz update."""
        for d in (self.robot_side, self.operator_side):
            d.diagnostics.clear()
        self.wait(lambda: self.robot_side.diagnostics and self.operator_side.diagnostics, 3.0)

    def wait(self, predicate, timeout: float = 30.0) -> bool:
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            if predicate():
                return True
            time.sleep(0.05)
        return False

    # -- 1 + 2 + 3: observation latency ----------------------------------------------------------
    def observation_latency(self, width: int, height: int, cameras: int, codec: str) -> dict[str, Any]:
        procs = Processes(self.env)
        room = self.room()
        got: list[tuple[float, int]] = []
        sub = self.operator_side.node.create_subscription(
            Observation, '/operator_bridge/observation', lambda m: got.append((time.time_ns() // 1000, m.timestamp_us)),
            RELIABLE,
        )  # fmt: skip
        try:
            self.bridges(procs, self.contract(cameras, codec), room, cameras=cameras)
            procs.start('publisher', ['-m', 'bench.ros_publisher', '--cameras', str(cameras), '--width', str(width),
                                      '--height', str(height), '--state-hz', '30'], self.base)  # fmt: skip
            if not self.wait(lambda: len(got) > 30, 60):
                return {'error': 'no observations'}
            time.sleep(2)  # warm-up: encoders ramp up their bitrate
            got.clear()
            seconds = self.seconds(8)
            cpu = procs.cpu(seconds)
            samples = [(recv - ts) / 1000.0 for recv, ts in got]
            self.fresh_diagnostics()
            r, o = self.robot_side, self.operator_side
            return {
                'total': summary(samples),
                'rate': len(got) / seconds,
                'ros_in': r.probe('robot_bridge: latency', 'state_delivery_us_p50'),
                'robot_bridge': r.probe('robot_bridge: latency', 'state_bridge_us_p50'),
                'robot_bridge_p95': r.probe('robot_bridge: latency', 'state_bridge_us_p95'),
                'frame_bridge': r.probe('robot_bridge: latency', 'frame_bridge_us_p50'),
                'frame_bridge_p95': r.probe('robot_bridge: latency', 'frame_bridge_us_p95'),
                'frame_codec': r.probe('robot_bridge: latency', 'frame_codec_us_p50'),
                'age_at_operator': o.probe('operator_bridge: latency', 'observation_age_us_p50'),
                'operator_bridge': o.probe('operator_bridge: latency', 'observation_bridge_us_p50'),
                'operator_bridge_p95': o.probe('operator_bridge: latency', 'observation_bridge_us_p95'),
                'cpu': cpu,
            }
        finally:
            self.operator_side.node.destroy_subscription(sub)
            procs.stop()

    def core_latency(self, width: int, height: int, cameras: int, codec: str) -> dict[str, Any]:
        import asyncio

        from portal_bridge.portal import Operator

        from .core_peer import contract

        procs = Processes(self.env)
        room = self.room()
        got: list[float] = []

        async def run() -> None:
            op = Operator(contract(cameras, codec))
            op.on_observation(lambda o: got.append((o.received_ns // 1000 - o.timestamp_us) / 1000.0))
            await op.connect(self.server.url, api_key='devkey', api_secret='secret', identity='op', room=room)
            procs.start('core_robot', ['-m', 'bench.core_peer', 'robot', '--url', self.server.url, '--room', room,
                                       '--cameras', str(cameras), '--width', str(width), '--height', str(height),
                                       '--codec', codec, '--duration', '60'], self.base)  # fmt: skip
            for _ in range(600):
                if len(got) > 30:
                    break
                await asyncio.sleep(0.1)
            await asyncio.sleep(2)
            got.clear()
            seconds = self.seconds(8)
            await asyncio.sleep(seconds)
            self._core_rate = len(got) / seconds
            self._core_samples = list(got)
            await op.disconnect()

        try:
            asyncio.run(run())
        finally:
            procs.stop()
        return {'total': summary(self._core_samples), 'rate': self._core_rate}

    def ros_floor(self, width: int, height: int) -> dict[str, Any]:
        procs = Processes(self.env)
        got: list[float] = []

        def on_image(msg: Image) -> None:
            s = msg.header.stamp
            got.append(time.time() * 1000.0 - (s.sec * 1000.0 + s.nanosec / 1e6))

        sub = self.robot_side.node.create_subscription(Image, '/cam0/image_raw', on_image, RELIABLE)
        try:
            procs.start('publisher', ['-m', 'bench.ros_publisher', '--cameras', '1', '--width', str(width),
                                      '--height', str(height)], self.base)  # fmt: skip
            self.wait(lambda: len(got) > 30, 30)
            got.clear()
            seconds = self.seconds(6)
            time.sleep(seconds)
            return {'total': summary(list(got)), 'rate': len(got) / seconds}
        finally:
            self.robot_side.node.destroy_subscription(sub)
            procs.stop()

    # -- 4: action path --------------------------------------------------------------------------
    def action_path(self, hz: float = 100.0) -> dict[str, Any]:
        procs = Processes(self.env)
        room = self.room()
        got: list[float] = []
        sub = self.robot_side.node.create_subscription(
            Float64MultiArray, '/cmd', lambda m: got.append((time.time() - m.data[1]) * 1000.0), RELIABLE
        )
        pub = self.operator_side.node.create_publisher(JointState, '/operator_bridge/action', 10)
        try:
            self.bridges(procs, self.contract(0, 'h264'), room, action_timeout_ms=5000)

            def send(n: int) -> None:
                pub.publish(JointState(name=['j0', 'j1'], position=[float(n), time.time()]))

            n = 0
            end = time.monotonic() + 60
            while not got and time.monotonic() < end:  # until the operator has claimed control
                send(n)
                n += 1
                time.sleep(0.05)
            got.clear()
            seconds = self.seconds(10)
            end = time.monotonic() + seconds
            next_t = time.monotonic()
            while time.monotonic() < end:
                send(n)
                n += 1
                next_t += 1 / hz
                time.sleep(max(0.0, next_t - time.monotonic()))
            time.sleep(0.5)
            self.fresh_diagnostics()
            r, o = self.robot_side, self.operator_side
            return {
                'total': summary(got),
                'rate': len(got) / seconds,
                'operator_bridge': o.probe('operator_bridge: latency', 'action_bridge_us_p50'),
                'operator_bridge_p95': o.probe('operator_bridge: latency', 'action_bridge_us_p95'),
                'robot_bridge': r.probe('robot_bridge: latency', 'command_bridge_us_p50'),
                'robot_bridge_p95': r.probe('robot_bridge: latency', 'command_bridge_us_p95'),
            }
        finally:
            self.robot_side.node.destroy_subscription(sub)
            self.operator_side.node.destroy_publisher(pub)
            procs.stop()

    # -- 5: sustained load -----------------------------------------------------------------------
    def sustained(self, seconds_full: float = 60.0) -> dict[str, Any]:
        procs = Processes(self.env)
        room = self.room()
        got: list[int] = []
        sub = self.operator_side.node.create_subscription(
            Observation, '/operator_bridge/observation', lambda m: got.append(m.timestamp_us), RELIABLE
        )
        try:
            self.bridges(procs, self.contract(3, 'h264'), room, cameras=3)
            procs.start('publisher', ['-m', 'bench.ros_publisher', '--cameras', '3', '--width', '1280', '--height',
                                      '720', '--state-hz', '100'], self.base)  # fmt: skip
            if not self.wait(lambda: len(got) > 30, 90):
                return {'error': 'no observations'}
            time.sleep(3)
            r = self.robot_side.diagnostics
            sent0 = int(r.get('robot_bridge: transport', {}).get('states_sent', 0))
            skipped0 = int(r.get('robot_bridge: transport', {}).get('states_skipped_rate', 0))
            got.clear()
            rss0 = procs.rss_mib()
            seconds = self.seconds(seconds_full)
            cpu = procs.cpu(seconds)
            time.sleep(1.5)  # let the last diagnostics arrive
            rss1 = procs.rss_mib()
            r = self.robot_side.diagnostics
            sent = int(r.get('robot_bridge: transport', {}).get('states_sent', 0)) - sent0
            skipped = int(r.get('robot_bridge: transport', {}).get('states_skipped_rate', 0)) - skipped0
            return {
                'seconds': seconds,
                'observations': len(got),
                'states_forwarded': sent,
                'states_published': sent + skipped,
                'cpu': cpu,
                'rss_growth': {k: rss1.get(k, 0) - v for k, v in rss0.items()},
            }
        finally:
            self.operator_side.node.destroy_subscription(sub)
            procs.stop()

    # -- 6: scale ----------------------------------------------------------------------------------
    def scale(self, operators: int) -> dict[str, Any]:
        procs = Processes(self.env)
        room = self.room()
        got: list[float] = []
        sub = self.robot_side.node.create_subscription(
            Float64MultiArray, '/cmd', lambda m: got.append((time.time() - m.data[1]) * 1000.0), RELIABLE
        )
        try:
            contract = self.contract(1, 'h264')
            common = {'livekit_url': self.server.url, 'room': room, 'contract_file': contract}
            procs.bridge('robot_bridge', 'robot_bridge', self.base, **common, state_joints=JOINTS, command_topic='/cmd',
                         **{'cameras.cam0.topic': '/cam0/image_raw'}, action_timeout_ms=5000)  # fmt: skip
            procs.start('publisher', ['-m', 'bench.ros_publisher', '--cameras', '1'], self.base)
            time.sleep(1.0)
            # the driving operator has a process of its own; the others (watching the video) share one
            procs.start('driver', ['-m', 'bench.core_peer', 'operators', '--url', self.server.url, '--room', room,
                                   '--count', '1', '--duration', '120'], self.base + 1)  # fmt: skip
            if operators > 1:
                watchers = ['--count', str(operators - 1), '--duration', '120']
                procs.start('watchers', ['-m', 'bench.core_peer', 'watchers', '--url', self.server.url, '--room', room,
                                         *watchers], self.base + 1)  # fmt: skip
            if not self.wait(lambda: len(got) > 50, 90):
                return {'error': 'no actions'}
            time.sleep(1)
            got.clear()
            seconds = self.seconds(8)
            cpu = procs.cpu(seconds)
            return {'total': summary(list(got)), 'rate': len(got) / seconds, 'cpu': cpu}
        finally:
            self.robot_side.node.destroy_subscription(sub)
            procs.stop()

    def close(self) -> None:
        self.robot_side.close()
        self.operator_side.close()
        self.server.stop()


Emit = Callable[[str], None]


def section_observation(b: Bench, emit: Emit) -> None:
    emit('## 1-3. Observation latency (robot-side Image + JointState publish -> operator-side Observation)\n')
    sizes = [(640, 480)] if b.quick else [(640, 480), (1280, 720)]
    cams = [1] if b.quick else [1, 3]
    codecs = ['h264'] if b.quick else ['h264', 'mjpeg']
    rows, floor_rows = [], []
    for w, h in sizes:
        for n in cams:
            for codec in codecs:
                r = b.observation_latency(w, h, n, codec)
                c = b.core_latency(w, h, n, codec)
                t = r.get('total', {})
                robot_ms = (r.get('robot_bridge') or 0) + (r.get('frame_bridge') or 0) + (r.get('frame_codec') or 0)
                rows.append([f'{w}x{h}', str(n), codec, t.get('p50'), t.get('p95'), t.get('p99'), r.get('rate'),
                             r.get('ros_in'), r.get('robot_bridge'), r.get('frame_bridge'), r.get('frame_codec'),
                             (r.get('age_at_operator') or 0) - (r.get('ros_in') or 0) - robot_ms,
                             (t.get('p50') or 0) - (r.get('age_at_operator') or 0), r.get('operator_bridge'),
                             c['total']['p50'], c['total']['p95'], c['total']['p99'], c['rate'],
                             (t.get('p50') or 0) - (c['total']['p50'] or 0)])  # fmt: skip
                b.__dict__.setdefault('internal', []).append((f'{w}x{h} x{n} {codec}', r))
        floor = b.ros_floor(w, h)['total']
        floor_rows.append([f'{w}x{h}', floor['n'], floor['p50'], floor['p95'], floor['p99']])
    emit(table(['size', 'cams', 'codec', 'p50 ms', 'p95 ms', 'p99 ms', 'obs/s', 'ROS->robot_bridge p50',
                'robot_bridge state p50', 'robot_bridge frame p50', 'frame codec p50',
                'robot_bridge->SFU->operator core p50',
                'core->ROS subscriber p50', 'operator_bridge publish p50', 'core only p50', 'core only p95',
                'core only p99', 'core obs/s', 'ROS layer cost p50'], rows))  # fmt: skip
    emit('\nPlain ROS 2 between two processes on this host (the floor for one ROS hop, rgb8 Image, 30 fps):\n')
    emit(table(['size', 'n', 'p50 ms', 'p95 ms', 'p99 ms'], floor_rows))
    emit('\nBridge-internal time (our code only, no codec: ROS callback -> handed to LiveKit on the robot; '
         'observation emitted -> published on the operator), p50 / p95 ms:\n')  # fmt: skip
    emit(table(['case', 'robot state', 'robot frame', 'operator observation'],
               [[name, f"{fmt(r.get('robot_bridge'))} / {fmt(r.get('robot_bridge_p95'))}",
                 f"{fmt(r.get('frame_bridge'))} / {fmt(r.get('frame_bridge_p95'))}",
                 f"{fmt(r.get('operator_bridge'))} / {fmt(r.get('operator_bridge_p95'))}"]
                for name, r in b.internal]))  # fmt: skip
    cpu_rows = [[name, *(fmt(r.get('cpu', {}).get(p), 0) for p in ('publisher', 'robot_bridge', 'operator_bridge'))]
                for name, r in b.internal]  # fmt: skip
    emit('\nCPU % of one core during those runs:\n')
    emit(table(['case', 'camera publisher', 'robot_bridge', 'operator_bridge'], cpu_rows))


def section_action_path(b: Bench, emit: Emit) -> None:
    emit('\n## 4. Action path (operator `~/action` publish -> robot command topic received, 100 Hz)\n')
    a = b.action_path()
    emit(table(['p50 ms', 'p95 ms', 'p99 ms', 'actions/s', 'operator_bridge p50 / p95', 'robot_bridge p50 / p95'],
               [[a['total']['p50'], a['total']['p95'], a['total']['p99'], a['rate'],
                 f"{fmt(a['operator_bridge'])} / {fmt(a['operator_bridge_p95'])}",
                 f"{fmt(a['robot_bridge'])} / {fmt(a['robot_bridge_p95'])}"]]))  # fmt: skip


def section_sustained(b: Bench, emit: Emit) -> None:
    emit('\n## 5. Sustained load (3 x 1280x720 H264 at 30 fps + 100 Hz joint states)\n')
    s = b.sustained(60.0)
    if 'error' in s:
        emit(f'error: {s["error"]}')
    else:
        emit(table(['seconds', 'states published', 'states forwarded', 'observations',
                    'observations / forwarded', 'CPU % publisher', 'CPU % robot_bridge', 'CPU % operator_bridge',
                    'RSS growth MiB robot / operator'],
                   [[s['seconds'], s['states_published'], s['states_forwarded'], s['observations'],
                     s['observations'] / max(s['states_forwarded'], 1),
                     s['cpu'].get('publisher'), s['cpu'].get('robot_bridge'), s['cpu'].get('operator_bridge'),
                     f"{fmt(s['rss_growth'].get('robot_bridge'))} / "
                     f"{fmt(s['rss_growth'].get('operator_bridge'))}"]]))  # fmt: skip


def section_scale(b: Bench, emit: Emit) -> None:
    emit('\n## 6. Scale (operators in the room; one drives at 100 Hz; robot has one 640x480 H264 camera)\n')
    scale_rows = []
    for n in [1, 2] if b.quick else [1, 2, 4, 8]:
        r = b.scale(n)
        if 'error' in r:
            scale_rows.append([str(n), r['error'], '', '', '', ''])
            continue
        scale_rows.append([str(n), r['total']['p50'], r['total']['p95'], r['total']['p99'], r['rate'],
                           r['cpu'].get('robot_bridge'), r['cpu'].get('watchers')])  # fmt: skip
    emit(table(['operators', 'action p50 ms', 'p95 ms', 'p99 ms', 'actions/s', 'robot_bridge CPU %',
                'watchers CPU %'], scale_rows))  # fmt: skip


def section_safety_clock(b: Bench, emit: Emit) -> None:
    emit('\n## 7. Safety clock under image load (3 PNG cameras 640x480 @ 30 fps)\n')
    emit(safety_clock_table(safety_clock(b, b.seconds(30.0))))


SECTIONS: dict[str, Callable[[Bench, Emit], None]] = {
    'observation': section_observation,
    'action_path': section_action_path,
    'sustained': section_sustained,
    'scale': section_scale,
    'safety_clock': section_safety_clock,
}


def main() -> int:
    parser = argparse.ArgumentParser(prog='bench')
    parser.add_argument('--quick', action='store_true', help='short runs and a reduced matrix (harness smoke test)')
    parser.add_argument('--out', default=None, help='write the markdown report here')
    parser.add_argument('--only', action='append', choices=list(SECTIONS), default=None,
                        help='run only this section (repeatable); prints the run header, writes no report')  # fmt: skip
    args = parser.parse_args()
    if args.only and args.out:
        parser.error('--only prints its sections; --out writes the whole report (use one of them)')
    b = Bench(args.quick)
    started = datetime.datetime.now().astimezone()
    out: list[str] = []

    def emit(text: str) -> None:
        print(text, flush=True)
        out.append(text)

    try:
        if args.only:
            command = ' '.join(['python -m bench', *sys.argv[1:]])
            emit(f'Produced by `{command}` on {started:%Y-%m-%d %H:%M %Z}.\n{machine()}')
        for name, section in SECTIONS.items():
            if not args.only or name in args.only:
                section(b, emit)
    finally:
        b.close()
    if args.out:
        header = (
            '# Benchmarks\n\n'
            f'Produced by `make bench` (`python -m bench --out docs/benchmarks.md`) on {started:%Y-%m-%d %H:%M %Z}.\n'
            f'{machine()}'
            '- setup: one local `livekit-server --dev` on loopback; robot side and operator side on two ROS domains '
            '(so all traffic crosses LiveKit); every bridge, publisher and peer is its own process; Fast DDS with '
            '`config/fastdds_localhost.xml`. Latencies are wall-clock differences on this one host.\n\n'
        )
        notes = (Path(__file__).parent / 'notes.md').read_text()
        Path(args.out).write_text(header + '\n'.join(out) + '\n\n' + notes)
        print(f'wrote {args.out}')
    return 0


if __name__ == '__main__':
    code = main()
    sys.stdout.flush()
    os._exit(code)  # the LiveKit FFI threads must not outlive interpreter finalization
