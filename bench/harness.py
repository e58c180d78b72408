"""The benchmark harness: what every case uses to run its processes and read the bridges' numbers.

- :class:`Domain`: a private rclpy context on one ROS domain (the bench's own nodes), which keeps
  the latest ``/diagnostics`` values per status and can record every update of chosen statuses;
- :class:`Processes`: a case's child processes (bridges, publishers, peers), CPU and memory;
- :func:`contract_yaml`, :data:`JOINTS`, :data:`RELIABLE`: the wire contract and QoS of the cases;
- :func:`machine`: the machine and software line of the report;
- ``start_server`` (re-exported from the test support): the local livekit-server.
"""

from __future__ import annotations

import os
from pathlib import Path
import platform
import subprocess
import sys
import tempfile
import threading
import time
from typing import Any, Optional

from diagnostic_msgs.msg import DiagnosticArray
import psutil
import rclpy
from rclpy.executors import SingleThreadedExecutor
from rclpy.node import Node
from rclpy.qos import QoSProfile, ReliabilityPolicy

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / 'portal_bridge' / 'test'))

from support.child_process import spawn  # noqa: E402
from support.livekit_server import start_server  # noqa: E402

__all__ = ['JOINTS', 'RELIABLE', 'ROOT', 'Domain', 'Processes', 'contract_yaml', 'machine', 'start_server']

RELIABLE = QoSProfile(depth=50, reliability=ReliabilityPolicy.RELIABLE)
JOINTS = [f'j{i}' for i in range(6)]


def contract_yaml(cameras: int, codec: str) -> str:
    videos = ', '.join(f'{{ name: cam{i}, codec: {codec} }}' for i in range(cameras))
    fields = ', '.join(f'{{ name: {j}, dtype: f64 }}' for j in JOINTS)
    return f'version: 1\nfps: 30\nslack: 10\nvideos: [{videos}]\nstate: [{fields}]\naction: [{fields}]\n'


class Domain:
    """A private rclpy context on one ROS domain, spun in a thread, for the bench's own nodes."""

    def __init__(self, domain_id: int) -> None:
        self.context = rclpy.Context()
        rclpy.init(context=self.context, domain_id=domain_id)
        self.node = Node(f'bench_{domain_id}', context=self.context)
        self.executor = SingleThreadedExecutor(context=self.context)
        self.executor.add_node(self.node)
        self.diagnostics: dict[str, dict[str, str]] = {}
        self.spin_errors = 0
        # status name -> every update since record() was called: (monotonic receive time, values)
        self.history: dict[str, list[tuple[float, dict[str, str]]]] = {}
        self.node.create_subscription(DiagnosticArray, '/diagnostics', self._on_diag, 10)
        self._thread = threading.Thread(target=self._spin, daemon=True)
        self._thread.start()

    def _spin(self) -> None:
        # Cases create and destroy subscriptions while this thread spins; an error from one wait must
        # not end the thread, or every later case waits in vain for diagnostics (the likely cause of
        # one run's "safety state None" in both safety-clock rows; the first errors are printed).
        while self.context.ok():
            try:
                self.executor.spin_once(timeout_sec=0.05)
            except Exception as exc:
                if not self.context.ok():
                    return
                self.spin_errors += 1
                if self.spin_errors <= 3:
                    print(f'[bench] executor error on {self.node.get_name()} (spinning on): {exc!r}', file=sys.stderr)

    def _on_diag(self, msg: DiagnosticArray) -> None:
        now = time.monotonic()
        for s in msg.status:
            values = {kv.key: kv.value for kv in s.values}
            self.diagnostics[s.name] = values
            if s.name in self.history:
                self.history[s.name].append((now, values))

    def probe(self, name: str, key: str) -> Optional[float]:
        value = self.diagnostics.get(name, {}).get(key, '')
        return float(value) / 1000.0 if value not in ('', None) else None  # µs -> ms

    def record(self, *names: str) -> None:
        """From now on keep every update of these statuses in :attr:`history` (restarts them)."""
        for name in names:
            self.history[name] = []

    def close(self) -> None:
        self.node.destroy_node()
        rclpy.shutdown(context=self.context)
        self._thread.join(2)


class Processes:
    """Child processes of one case; CPU and memory sampled with psutil."""

    def __init__(self, env: dict[str, str]) -> None:
        self.env = env
        self.procs: dict[str, subprocess.Popen] = {}
        self.logs = Path(tempfile.mkdtemp(prefix='bench-'))

    def start(self, name: str, args: list[str], domain: int) -> None:
        env = dict(self.env, ROS_DOMAIN_ID=str(domain))
        log = open(self.logs / f'{name}.log', 'wb')  # noqa: SIM115
        self.procs[name] = spawn([sys.executable, *args], env=env, stdout=log, stderr=subprocess.STDOUT)

    def bridge(self, name: str, kind: str, domain: int, **params: Any) -> None:
        args = ['-m', f'portal_bridge.nodes.{kind}', '--ros-args']
        for k, v in params.items():
            if isinstance(v, (list, tuple)):
                v = '[' + ','.join(str(x) for x in v) + ']'
            args += ['-p', f'{k}:={v}']
        self.start(name, args, domain)

    def cpu(self, seconds: float) -> dict[str, float]:
        """Average CPU % (of one core) of each process over ``seconds``."""
        ps = {n: psutil.Process(p.pid) for n, p in self.procs.items() if p.poll() is None}
        for p in ps.values():
            p.cpu_percent(None)
        time.sleep(seconds)
        return {n: p.cpu_percent(None) for n, p in ps.items()}

    def rss_mib(self) -> dict[str, float]:
        return {n: psutil.Process(p.pid).memory_info().rss / 2**20 for n, p in self.procs.items() if p.poll() is None}

    def stop(self) -> None:
        for p in self.procs.values():
            if p.poll() is None:
                p.send_signal(2)
        for p in self.procs.values():
            try:
                p.wait(10)
            except subprocess.TimeoutExpired:
                p.kill()


def machine() -> str:
    cpu = platform.processor() or ''
    try:
        for line in Path('/proc/cpuinfo').read_text().splitlines():
            if line.startswith('model name'):
                cpu = line.split(':', 1)[1].strip()
                break
    except OSError:
        pass
    import livekit.rtc

    server = subprocess.run([str(ROOT / '.tools' / 'bin' / 'livekit-server'), '--version'], capture_output=True,
                            text=True).stdout.strip()  # fmt: skip
    return (
        f'- machine: {cpu}, {psutil.cpu_count()} cores, {psutil.virtual_memory().total / 2**30:.0f} GiB RAM, '
        f'{platform.system()} {platform.release()}\n'
        f'- software: Python {platform.python_version()}, rclpy {_version("ros-rclpy")}, '
        f'livekit {livekit.rtc.__version__}, {server}, RMW {os.environ.get("RMW_IMPLEMENTATION", "default")}\n'
    )


def _version(dist: str) -> str:
    from importlib.metadata import version

    try:
        return version(dist)
    except Exception:
        return '?'
