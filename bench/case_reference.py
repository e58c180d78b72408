"""Case 10: side by side with the reference Portal implementation (livekit-portal), one run.

For each camera set-up, the same camera-like frames and 6-joint state at 30 fps go through four
sender/receiver pairs of bare Portal peers, each peer its own process (``bench.portal_pair``):
livekit-portal Robot -> livekit-portal Operator, livekit-portal -> ours, ours -> livekit-portal,
ours -> ours; then through the full ROS path (camera publisher -> robot_bridge -> operator_bridge
-> ``Observation`` subscriber, case 1-3's measurement with the same kind of frames). One table per
set-up: observations/s, latency p50/p95/p99 (send stamp -> observation callback, or -> the ROS
subscriber), CPU % of one core per process over the counted window.
"""

from __future__ import annotations

import json
from pathlib import Path
import time
from typing import Any, Optional

from .case_observation import observation_latency
from .harness import JOINTS, Processes
from .runner import Bench, Emit
from .stats import fmt, summary, table

PAIRS = [('ref', 'ref'), ('ref', 'ours'), ('ours', 'ref'), ('ours', 'ours')]
NAMES = {'ref': 'livekit-portal', 'ours': 'portal_bridge core'}
MJPEG_QUALITY = 90


def reference_available() -> Optional[str]:
    """None when livekit-portal imports, else why not (the case is then reported as not run)."""
    try:
        from livekit import portal  # noqa: F401
    except ImportError as exc:
        return f'livekit-portal is not installed in this environment ({exc})'
    return None


def contract_text(cameras: int, codec: str) -> str:
    quality = f', quality: {MJPEG_QUALITY}' if codec == 'mjpeg' else ''
    videos = ', '.join(f'{{ name: cam{i}, codec: {codec}{quality} }}' for i in range(cameras))
    fields = ', '.join(f'{{ name: {j}, dtype: f64 }}' for j in JOINTS)
    return f'version: 1\nfps: 30\nslack: 10\nvideos: [{videos}]\nstate: [{fields}]\naction: [{fields}]\n'


def pair(b: Bench, contract: str, sender: str, receiver: str, w: int, h: int, cams: int) -> dict[str, Any]:
    procs = Processes(b.env)
    room = b.room()
    out = procs.logs / 'operator.json'
    seconds = b.seconds(10)
    common = ['--url', b.server.url, '--room', room, '--contract', contract]
    try:
        procs.start('operator', ['-m', 'bench.portal_pair', 'operator', '--impl', receiver, *common,
                                 '--seconds', str(seconds), '--out', str(out)], b.base)  # fmt: skip
        time.sleep(1.0)
        procs.start('robot', ['-m', 'bench.portal_pair', 'robot', '--impl', sender, *common, '--cameras', str(cams),
                              '--width', str(w), '--height', str(h), '--duration', '90'], b.base)  # fmt: skip
        if not b.wait(lambda: Path(f'{out}.measuring').exists() or out.exists(), 60):
            return {'error': 'no observation within 60 s'}
        cpu = procs.cpu(seconds * 0.9) if not out.exists() else {}
        if not b.wait(out.exists, seconds + 30):
            return {'error': 'the operator wrote no result'}
        result = json.loads(out.read_text())
        if not result['seconds']:
            return {'error': 'no observation'}
        lat = result['latencies_ms']
        return {'total': summary(lat), 'rate': len(lat) / result['seconds'], 'cpu': cpu}
    finally:
        procs.stop()


def setup_table(b: Bench, w: int, h: int, cams: int, codec: str) -> str:
    contract = b.tmp / f'reference_{cams}_{codec}.yaml'
    contract.write_text(contract_text(cams, codec))
    rows = []
    for sender, receiver in PAIRS:
        r = pair(b, str(contract), sender, receiver, w, h, cams)
        t, cpu = r.get('total', {}), r.get('cpu', {})
        note = f' (error: {r["error"]})' if 'error' in r else ''
        rows.append([f'{NAMES[sender]} -> {NAMES[receiver]}', t.get('n', 0), r.get('rate'), t.get('p50'),
                     t.get('p95'), t.get('p99'),
                     f"robot {fmt(cpu.get('robot'), 0)}, operator {fmt(cpu.get('operator'), 0)}{note}"])  # fmt: skip
    ros = observation_latency(b, w, h, cams, codec, contract=str(contract), pattern='camera')
    t, cpu = ros.get('total', {}), ros.get('cpu', {})
    rows.append(['full ROS path (publisher -> robot_bridge -> operator_bridge -> subscriber)', t.get('n', 0),
                 ros.get('rate'), t.get('p50'), t.get('p95'), t.get('p99'),
                 f"publisher {fmt(cpu.get('publisher'), 0)}, robot_bridge {fmt(cpu.get('robot_bridge'), 0)}, "
                 f"operator_bridge {fmt(cpu.get('operator_bridge'), 0)}"
                 + (f" (error: {ros['error']})" if 'error' in ros else '')])  # fmt: skip
    return table(['sender -> receiver', 'n', 'obs/s', 'p50 ms', 'p95 ms', 'p99 ms', 'CPU % of one core'], rows)


def section(b: Bench, emit: Emit) -> None:
    emit('\n## 10. Side by side with livekit-portal (camera-like frames, 30 fps, 6-joint state)\n')
    missing = reference_available()
    if missing:
        emit(f'Not run: {missing}.\n')
        return
    setups = [(640, 480, 1, 'h264')] if b.quick else [
        (640, 480, 1, 'h264'), (1280, 720, 1, 'h264'), (1280, 720, 3, 'h264'), (640, 480, 1, 'mjpeg')]  # fmt: skip
    for w, h, cams, codec in setups:
        quality = f' q{MJPEG_QUALITY}' if codec == 'mjpeg' else ''
        emit(f'\n{cams} x {w}x{h} {codec.upper()}{quality}:\n')
        emit(setup_table(b, w, h, cams, codec))
