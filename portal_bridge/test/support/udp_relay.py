"""A UDP relay that delays every packet by delay ± jitter, in both directions.

The kernel here has no netem, so WebRTC's UDP traffic to the LiveKit server is routed through this
relay (the server advertises the relay's address as its own). Each client gets an upstream socket
bound in a fixed port range, so a firewall rule can tell relayed packets from direct ones.

    python udp_relay.py --listen 10.201.0.1:7882 --target 10.201.0.2:7882 --delay-ms 30 --jitter-ms 10 \
        --upstream-ports 40000-40199 [--census FILE] [--trace FILE]

SRTP leaves RTP headers in the clear, so the relay can say what WebRTC sends without decrypting:
``--census`` keeps a JSON file of packet counts per direction (RTP, padding-only RTP, RTCP),
rewritten every half second; ``--trace`` writes one line per RTP/RTCP packet
(time, direction u/d, client port, ``rtp`` PT flags SSRC seq marker timestamp size, or
``rtcp`` PT count size) for offline analysis.
"""

from __future__ import annotations

import argparse
import asyncio
from collections import Counter
import json
import os
from pathlib import Path
import random
import socket
import time
from typing import Optional, TextIO

PADDING_BIT = 0x20


class Census:
    """Counts of the RTP/RTCP packets crossing the relay, by direction (u: to the server, d: from it)."""

    def __init__(self, path: Optional[str], trace: Optional[str]) -> None:
        self.path = Path(path) if path else None
        self.trace: Optional[TextIO] = open(trace, 'w') if trace else None  # noqa: SIM115 - open for the process's life
        self.counts: Counter = Counter()

    def see(self, direction: str, client: tuple[str, int], data: bytes) -> None:
        if len(data) < 12 or not 128 <= data[0] < 192:  # not RTP/RTCP (STUN, DTLS)
            return
        b0, b1 = data[0], data[1]
        if 192 <= b1 <= 223:
            self.counts[f'{direction}_rtcp'] += 1
            if self.trace:
                self.trace.write(f'{time.time():.4f} {direction} {client[1]} rtcp {b1} {b0 & 31} {len(data)}\n')
            return
        self.counts[f'{direction}_rtp'] += 1
        if b0 & PADDING_BIT:
            self.counts[f'{direction}_rtp_padding'] += 1
        if self.trace:
            ssrc, seq, ts = (int.from_bytes(data[a:b], 'big') for a, b in ((8, 12), (2, 4), (4, 8)))
            self.trace.write(
                f'{time.time():.4f} {direction} {client[1]} rtp {b1 & 127} {b0} {ssrc} {seq} {b1 >> 7} {ts} {len(data)}\n'
            )

    def flush(self) -> None:
        if self.path is not None:
            tmp = self.path.with_suffix('.tmp')
            tmp.write_text(json.dumps(dict(self.counts)))
            os.replace(tmp, self.path)
        if self.trace:
            self.trace.flush()


class _Upstream(asyncio.DatagramProtocol):
    def __init__(self, relay: Relay, client: tuple[str, int]) -> None:
        self.relay = relay
        self.client = client
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport) -> None:
        self.transport = transport

    def datagram_received(self, data: bytes, addr) -> None:  # server -> client
        self.relay.census.see('d', self.client, data)
        self.relay.later(self.relay.listen_transport.sendto, data, self.client)


class _Listen(asyncio.DatagramProtocol):
    def __init__(self, relay: Relay) -> None:
        self.relay = relay

    def datagram_received(self, data: bytes, addr) -> None:  # client -> server
        self.relay.census.see('u', addr, data)
        asyncio.ensure_future(self.relay.forward(data, addr))


class Relay:
    def __init__(
        self, target: tuple[str, int], delay: float, jitter: float, ports: range, bind_ip: str, census: Census
    ) -> None:
        self.census = census
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
    parser.add_argument('--census', help='JSON file of packet counts, rewritten every 0.5 s')
    parser.add_argument('--trace', help='one line per RTP/RTCP packet')
    args = parser.parse_args()
    lhost, lport = args.listen.rsplit(':', 1)
    thost, tport = args.target.rsplit(':', 1)
    first, last = (int(p) for p in args.upstream_ports.split('-'))
    census = Census(args.census, args.trace)
    relay = Relay(
        (thost, int(tport)), args.delay_ms / 1000, args.jitter_ms / 1000, range(first, last + 1), lhost, census
    )
    loop = asyncio.get_running_loop()
    relay.listen_transport, _ = await loop.create_datagram_endpoint(
        lambda: _Listen(relay), local_addr=(lhost, int(lport))
    )
    print('relay ready', flush=True)
    while True:
        census.flush()
        await asyncio.sleep(0.5)


if __name__ == '__main__':
    asyncio.run(main())
