"""What every benchmark case shares: one livekit-server, the two ROS domains, rooms and contracts."""

from __future__ import annotations

import os
from pathlib import Path
import tempfile
import time
from typing import Any, Callable

from .harness import JOINTS, Domain, Processes, contract_yaml, start_server

__all__ = ['Bench', 'Emit']

Emit = Callable[[str], None]


class Bench:
    """The shared setup of a benchmark run; cases are functions of it (``case_*.py``)."""

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

    def close(self) -> None:
        self.robot_side.close()
        self.operator_side.close()
        self.server.stop()

    def latency_probes(self, **probes: str) -> dict[str, Any]:
        """p50 and p95 (as ``key`` and ``key_p95``) of bridge latency probes, e.g. ``x='robot:state_bridge'``.

        Read from the ``latency`` diagnostics task of robot_bridge (``robot:``) or operator_bridge.
        """
        self.fresh_diagnostics()
        out: dict[str, Any] = {}
        for key, where in probes.items():
            side, probe = where.split(':')
            domain, node = (
                (self.robot_side, 'robot_bridge') if side == 'robot' else (self.operator_side, 'operator_bridge')
            )
            out[key] = domain.probe(f'{node}: latency', f'{probe}_us_p50')
            out[f'{key}_p95'] = domain.probe(f'{node}: latency', f'{probe}_us_p95')
        return out
