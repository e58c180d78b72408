"""A real ``livekit-server --dev`` on loopback for tests and benchmarks.

Ports are chosen free by the OS (bind to port 0, read the port back, release), the server is
polled until it answers HTTP, and it is stopped (SIGTERM, then SIGKILL) afterwards. The binary is
the one ``make setup`` built from the pinned Go module.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
import signal
import socket
import subprocess
import tempfile
import time
from typing import Optional
import urllib.request

from .child_process import spawn

API_KEY = 'devkey'
API_SECRET = 'secret'


def free_port(kind: int = socket.SOCK_STREAM) -> int:
    with socket.socket(socket.AF_INET, kind) as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]


def free_ports() -> tuple[int, int, int]:
    """Signal (TCP), RTC TCP and RTC UDP ports, all distinct: the probe sockets stay open
    until all three are chosen, so the OS cannot hand out the same port twice."""
    socks = [
        socket.socket(socket.AF_INET, kind) for kind in (socket.SOCK_STREAM, socket.SOCK_STREAM, socket.SOCK_DGRAM)
    ]
    try:
        for s in socks:
            s.bind(('127.0.0.1', 0))
        return tuple(s.getsockname()[1] for s in socks)  # type: ignore[return-value]
    finally:
        for s in socks:
            s.close()


def server_binary() -> Optional[str]:
    """The server the tests use, found like demo.launch.py finds it (None when there is none)."""
    from portal_bridge.ros.launch_helpers import find_livekit_server

    return find_livekit_server(Path(__file__).resolve())


@dataclass
class LiveKitServer:
    """A running server; ``url`` is its ws:// signal address."""

    process: subprocess.Popen
    port: int
    udp_port: int
    tcp_port: int
    log_path: Path
    api_key: str = API_KEY
    api_secret: str = API_SECRET
    host: str = '127.0.0.1'

    @property
    def url(self) -> str:
        return f'ws://{self.host}:{self.port}'

    @property
    def http_url(self) -> str:
        return f'http://{self.host}:{self.port}'

    def alive(self) -> bool:
        return self.process.poll() is None

    def stop(self, timeout: float = 5.0) -> None:
        """Shut down: livekit-server drains on the first SIGTERM and exits on the second."""
        for wait in (0.3, timeout):
            if self.process.poll() is not None:
                return
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(wait)
            except subprocess.TimeoutExpired:
                pass
        self.kill()

    def kill(self) -> None:
        """Stop abruptly, like a crash."""
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()

    def log_tail(self, n: int = 40) -> str:
        try:
            return '\n'.join(self.log_path.read_text(errors='replace').splitlines()[-n:])
        except OSError:
            return ''


def config_body(port: int, tcp_port: int, udp_port: int, node_ip: str = '127.0.0.1') -> str:
    return (
        f'port: {port}\n'
        'rtc:\n'
        f'  tcp_port: {tcp_port}\n'
        f'  udp_port: {udp_port}\n'
        f'  node_ip: {node_ip}\n'
        '  use_external_ip: false\n'
        'logging:\n'
        '  level: info\n'
    )


def start_server(
    port: int | None = None,
    udp_port: int | None = None,
    tcp_port: int | None = None,
    bind: str = '127.0.0.1',
    timeout: float = 20.0,
    netns: str | None = None,
    attempts: int = 3,
    node_ip: str = '127.0.0.1',
    keys: tuple[str, str] = (API_KEY, API_SECRET),
) -> LiveKitServer:
    """Start a dev-mode server (optionally inside a network namespace) and wait until it answers.

    Ports not given are picked free; if the server dies while starting (a port taken in the
    meantime), it is started again on new ports. ``keys`` is the (API key, secret) pair it accepts.
    """
    fixed = port is not None
    for attempt in range(attempts):
        if not fixed:
            port, tcp_port, udp_port = free_ports()
        try:
            return _start_once(
                port,
                udp_port or free_port(socket.SOCK_DGRAM),
                tcp_port or free_port(),
                bind,
                timeout,
                netns,
                node_ip,
                keys,
            )
        except _EarlyExit as exc:
            if fixed or attempt == attempts - 1:
                raise RuntimeError(str(exc)) from None
    raise AssertionError('unreachable')


class _EarlyExit(RuntimeError):
    pass


def _start_once(
    port: int,
    udp_port: int,
    tcp_port: int,
    bind: str,
    timeout: float,
    netns: str | None,
    node_ip: str,
    keys: tuple[str, str],
) -> LiveKitServer:
    log_path = Path(tempfile.mkstemp(prefix='livekit-server-', suffix='.log')[1])
    binary = server_binary()
    if binary is None:
        raise RuntimeError('no livekit-server: set PORTAL_BRIDGE_LIVEKIT_SERVER, put one on PATH, or run `make setup`')
    cmd = [binary, '--dev', '--bind', bind, '--config-body', config_body(port, tcp_port, udp_port, node_ip)]
    cmd += ['--keys', f'{keys[0]}: {keys[1]}']
    if netns:
        cmd = ['ip', 'netns', 'exec', netns, *cmd]
    log = open(log_path, 'wb')  # noqa: SIM115 - the process owns it
    process = spawn(cmd, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    host = bind if bind != '0.0.0.0' else '127.0.0.1'
    server = LiveKitServer(process, port, udp_port, tcp_port, log_path, *keys, host=host)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise _EarlyExit(f'livekit-server exited with {process.returncode}:\n{server.log_tail()}')
        try:
            with urllib.request.urlopen(f'http://{host}:{port}/', timeout=0.5) as resp:
                if resp.status == 200:
                    return server
        except OSError:
            time.sleep(0.05)
    server.stop()
    raise RuntimeError(f'livekit-server did not answer within {timeout} s:\n{server.log_tail()}')
