"""A UDP relay that delays every packet by delay ± jitter, in both directions.

The kernel here has no netem, so WebRTC's UDP traffic to the LiveKit server is routed through this
relay (the server advertises the relay's address as its own). Each client gets an upstream socket
bound in a fixed port range, so a firewall rule can tell relayed packets from direct ones.

    python udp_relay.py --listen 10.201.0.1:7882 --target 10.201.0.2:7882 --delay-ms 30 --jitter-ms 10 \
        --upstream-ports 40000-40199
"""

from __future__ import annotations

import argparse
import asyncio
import random
import socket


class _Upstream(asyncio.DatagramProtocol):
    def __init__(self, relay: Relay, client: tuple[str, int]) -> None:
        self.relay = relay
        self.client = client
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport) -> None:
        self.transport = transport

    def datagram_received(self, data: bytes, addr) -> None:  # server -> client
        self.relay.later(self.relay.listen_transport.sendto, data, self.client)


class _Listen(asyncio.DatagramProtocol):
    def __init__(self, relay: Relay) -> None:
        self.relay = relay

    def datagram_received(self, data: bytes, addr) -> None:  # client -> server
        asyncio.ensure_future(self.relay.forward(data, addr))


class Relay:
    def __init__(self, target: tuple[str, int], delay: float, jitter: float, ports: range, bind_ip: str) -> None:
        self.target = target
        self.delay = delay
        self.jitter = jitter
        self.ports = iter(ports)
        self.bind_ip = bind_ip
        self.upstreams: dict[tuple[str, int], _Upstream] = {}
        self.pending: dict[tuple[str, int], asyncio.Future] = {}
        self.listen_transport: asyncio.DatagramTransport | None = None
        self.loop = asyncio.get_event_loop()

    def later(self, fn, *args) -> None:
        self.loop.call_later(max(0.0, self.delay + random.uniform(-self.jitter, self.jitter)), fn, *args)

    async def forward(self, data: bytes, client: tuple[str, int]) -> None:
        up = self.upstreams.get(client)
        if up is None:
            waiting = self.pending.get(client)
            if waiting is None:
                waiting = self.pending[client] = self.loop.create_future()
                sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
                sock.bind((self.bind_ip, next(self.ports)))
                _, up = await self.loop.create_datagram_endpoint(lambda: _Upstream(self, client), sock=sock)
                self.upstreams[client] = up
                waiting.set_result(up)
            else:
                up = await waiting
        self.later(up.transport.sendto, data, self.target)


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument('--listen', required=True)
    parser.add_argument('--target', required=True)
    parser.add_argument('--delay-ms', type=float, default=0.0)
    parser.add_argument('--jitter-ms', type=float, default=0.0)
    parser.add_argument('--upstream-ports', default='40000-40199')
    args = parser.parse_args()
    lhost, lport = args.listen.rsplit(':', 1)
    thost, tport = args.target.rsplit(':', 1)
    first, last = (int(p) for p in args.upstream_ports.split('-'))
    relay = Relay((thost, int(tport)), args.delay_ms / 1000, args.jitter_ms / 1000, range(first, last + 1), lhost)
    loop = asyncio.get_running_loop()
    relay.listen_transport, _ = await loop.create_datagram_endpoint(
        lambda: _Listen(relay), local_addr=(lhost, int(lport))
    )
    print('relay ready', flush=True)
    await asyncio.Event().wait()


if __name__ == '__main__':
    asyncio.run(main())
