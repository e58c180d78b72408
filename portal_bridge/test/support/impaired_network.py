"""A livekit-server behind an impaired link: loss, delay with jitter, a bandwidth cap.

The server runs in its own network namespace joined to this one by a veth pair. Loss comes from
nftables `numgen random` drop rules on UDP (both directions), the bandwidth cap from `tbf` on both
ends of the veth, delay and jitter from a userspace UDP relay (the kernel here has no netem): the
server advertises the relay's address, and a firewall rule drops WebRTC traffic that tries to reach
the server directly, so every media and data packet crosses the relay. Needs root, `ip`, `tc`, `nft`.
"""

from __future__ import annotations

from dataclasses import dataclass
import itertools
import json
import os
from pathlib import Path
import shutil
import subprocess
import sys
import tempfile
from typing import Optional

from .child_process import spawn
from .livekit_server import LiveKitServer, start_server

RELAY_PORTS = (40000, 40199)
_instances = itertools.count()


@dataclass(frozen=True)
class Profile:
    name: str
    loss_pct: float
    delay_ms: float
    jitter_ms: float
    rate_kbit: Optional[int] = None


# foxglove's remote-access profiles (Starlink-like and "WiFi through walls")
PROFILE_1 = Profile('2% loss, 30±10 ms', 2, 30, 10)
PROFILE_2 = Profile('8% loss, 15±10 ms, 2 Mbit/s', 8, 15, 10, 2000)


def _run(*cmd: str, input: Optional[str] = None) -> None:
    subprocess.run(cmd, check=True, input=input, text=True, capture_output=True)


def missing_tools() -> list[str]:
    return [t for t in ('ip', 'tc', 'nft') if shutil.which(t) is None] + ([] if os.geteuid() == 0 else ['root'])


def _free_subnet(start: int) -> int:
    """The first k from ``start`` whose 10.(200+k).0.0/24 no interface of this host uses.

    A run killed mid-test (SIGKILL, a CI timeout) leaves its namespace and veth behind; reusing
    their subnet would route the new test's traffic into the dead one.
    """
    used = subprocess.run(['ip', '-o', '-4', 'addr'], capture_output=True, text=True).stdout
    for i in range(50):
        k = (start + i) % 50
        if f' 10.{200 + k}.0.' not in used:
            return k
    raise RuntimeError('no free 10.200-249.0.0/24 subnet for an impaired network: stale pbimp* namespaces?')


class ImpairedNetwork:
    def __init__(self, profile: Profile) -> None:
        missing = missing_tools()
        if missing:
            raise RuntimeError(f'impaired network needs {", ".join(missing)} (make setup installs nftables as root)')
        self.profile = profile
        k = _free_subnet((os.getpid() + next(_instances)) % 50)
        self.ns = f'pbimp{os.getpid() % 10000}x{k}'
        self.host_if, self.ns_if = f'pbh{os.getpid() % 10000}{k}', f'pbn{os.getpid() % 10000}{k}'
        self.host_ip, self.server_ip = f'10.{200 + k}.0.1', f'10.{200 + k}.0.2'
        self.port, self.tcp_port, self.udp_port = 7880, 7881, 7882
        self.relay: Optional[subprocess.Popen] = None
        self._census = Path(tempfile.mkstemp(prefix='relay-census-', suffix='.json')[1])
        self.server: Optional[LiveKitServer] = None

    def __enter__(self) -> ImpairedNetwork:
        try:
            self._setup()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _setup(self) -> None:
        subprocess.run(['ip', 'netns', 'del', self.ns], capture_output=True)
        subprocess.run(['ip', 'link', 'del', self.host_if], capture_output=True)
        _run('ip', 'netns', 'add', self.ns)
        _run('ip', 'link', 'add', self.host_if, 'type', 'veth', 'peer', 'name', self.ns_if)
        _run('ip', 'link', 'set', self.ns_if, 'netns', self.ns)
        _run('ip', 'addr', 'add', f'{self.host_ip}/24', 'dev', self.host_if)
        _run('ip', 'link', 'set', self.host_if, 'up')
        ns = ('ip', 'netns', 'exec', self.ns)
        _run(*ns, 'ip', 'addr', 'add', f'{self.server_ip}/24', 'dev', self.ns_if)
        _run(*ns, 'ip', 'link', 'set', self.ns_if, 'up')
        _run(*ns, 'ip', 'link', 'set', 'lo', 'up')
        p = self.profile
        loss = f'meta l4proto udp numgen random mod 100 < {int(p.loss_pct)} drop' if p.loss_pct else ''
        first, last = RELAY_PORTS
        _run(
            *ns,
            'nft',
            '-f',
            '-',
            input=f"""
table inet portal_bridge_impair {{
  chain input {{
    type filter hook input priority 0; policy accept;
    udp dport {self.udp_port} udp sport != {first}-{last} drop
    tcp dport {self.tcp_port} drop
    {loss}
  }}
  chain output {{
    type filter hook output priority 0; policy accept;
    {loss}
  }}
}}
""",
        )
        if p.rate_kbit:
            tbf = ('tbf', 'rate', f'{p.rate_kbit}kbit', 'burst', '32kbit', 'latency', '400ms')
            _run('tc', 'qdisc', 'add', 'dev', self.host_if, 'root', *tbf)
            _run(*ns, 'tc', 'qdisc', 'add', 'dev', self.ns_if, 'root', *tbf)
        relay = Path(__file__).with_name('udp_relay.py')
        self.relay = spawn(
            [sys.executable, str(relay), '--listen', f'{self.host_ip}:{self.udp_port}',
             '--target', f'{self.server_ip}:{self.udp_port}', '--delay-ms', str(p.delay_ms),
             '--jitter-ms', str(p.jitter_ms), '--upstream-ports', f'{first}-{last}', '--census', str(self._census)]
            + (['--trace', os.environ['PORTAL_BRIDGE_RELAY_TRACE']] if os.environ.get('PORTAL_BRIDGE_RELAY_TRACE') else []),
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        )  # fmt: skip
        line = self.relay.stdout.readline()
        if 'relay ready' not in line:
            raise RuntimeError(f'UDP relay did not start: {line}')
        self.start_server()

    def census(self) -> dict[str, int]:
        """Packets the relay has carried so far (``u_rtp``, ``u_rtp_padding``, ``d_rtcp``, ...; u = to the server).

        Up to half a second old. ``u_rtp_padding`` counts the publisher's padding-only packets: the
        bandwidth probes libwebrtc sends on the media SSRC when RTX is not negotiated.
        """
        try:
            return json.loads(self._census.read_text() or '{}')
        except (OSError, ValueError):
            return {}

    def start_server(self) -> LiveKitServer:
        self.server = start_server(
            port=self.port, udp_port=self.udp_port, tcp_port=self.tcp_port, bind=self.server_ip,
            netns=self.ns, node_ip=self.host_ip,
        )  # fmt: skip
        return self.server

    def close(self) -> None:
        if self.server is not None:
            self.server.stop()
        if self.relay is not None:
            self.relay.kill()
            self.relay.wait()
        subprocess.run(['ip', 'netns', 'del', self.ns], capture_output=True)
        subprocess.run(['ip', 'link', 'del', self.host_if], capture_output=True)
        self._census.unlink(missing_ok=True)
