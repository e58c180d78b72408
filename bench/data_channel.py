"""Case 11: what the LiveKit data channel carries, with the bare SDK (no Portal code at all).

    python -m bench.data_channel [--seconds 8]          # prints the table (also a section of make bench)

A sender and a receiver, each its own process, in one room of the local livekit-server. The
sender offers one byte stream per frame at 30 fps (random bytes of a camera JPEG's size: 640x480
and 1280x720 q90 camera-like frames are about 50 and 143 KB with Pillow), like the robot's frame-video
tracks: a drop-oldest queue of 4 frames, with 1, 2 or 4 streams in flight at once. The receiver
reads each stream to its end; the sender stays in the room until the receiver has every stream
it wrote or nothing more arrives for 5 s (the SDK accepts writes before it sends them). Reported:
frames and bytes per second delivered (over the time from the first frame offered to the last
one read), latency from queueing to the last byte read (p50/p95), and each process's CPU per
delivered megabyte. Why the ceiling sits where it does is in ``docs/wire_notes.md`` ("The data
channel's bytes per second").
"""

from __future__ import annotations

import argparse
import asyncio
from collections import deque
import json
import multiprocessing as mp
import os
import time
from typing import Any

import psutil

from .stats import summary, table

SIZES = {'640x480 q90 (50 KB)': 50_000, '1280x720 q90 (143 KB)': 143_000}
IN_FLIGHT = (1, 2, 4)
QUEUE = 4
TOPIC = 'bench.frames'


async def _receive(url: str, token: str, conn: Any) -> None:
    from livekit import rtc

    room = rtc.Room()
    done: dict[int, float] = {}
    nbytes = [0]

    def on_stream(reader: Any, _sender: str) -> None:
        async def read() -> None:
            size = 0
            try:
                async for chunk in reader:
                    size += len(chunk)
            except Exception:  # cut off (counted as not delivered)
                return
            done[int(reader.info.name)] = time.time()
            nbytes[0] += size

        asyncio.ensure_future(read())

    room.register_byte_stream_handler(TOPIC, on_stream)
    await room.connect(url, token)
    conn.send('ready')
    expected = await asyncio.get_running_loop().run_in_executor(None, conn.recv)  # streams the sender wrote
    # The SDK accepts writes before it sends them: wait for the backlog while it still moves.
    last, since = len(done), time.monotonic()
    while len(done) < expected and time.monotonic() - since < 5.0:
        await asyncio.sleep(0.1)
        if len(done) != last:
            last, since = len(done), time.monotonic()
    conn.send(json.dumps({'done': done, 'bytes': nbytes[0]}))
    await room.disconnect()


async def _send(url: str, token: str, conn: Any, size: int, in_flight: int, seconds: float) -> None:
    from livekit import rtc

    room = rtc.Room()
    await room.connect(url, token)
    conn.send('ready')
    await asyncio.get_running_loop().run_in_executor(None, conn.recv)  # the receiver is in the room
    payload = os.urandom(size)
    queue: deque[tuple[int, float]] = deque()
    queued: dict[int, float] = {}
    wake = asyncio.Event()
    dropped = 0
    offering = True

    async def drain() -> None:
        while True:
            while not queue:
                if not offering:
                    return
                wake.clear()
                await wake.wait()
            n, _ = queue.popleft()
            writer = await room.local_participant.stream_bytes(name=str(n), topic=TOPIC, total_size=size)
            await writer.write(payload)
            await writer.aclose()

    workers = [asyncio.ensure_future(drain()) for _ in range(in_flight)]
    start = time.monotonic()
    n = 0
    while time.monotonic() - start < seconds:
        if len(queue) >= QUEUE:
            queue.popleft()
            dropped += 1
        queue.append((n, time.time()))
        queued[n] = time.time()
        wake.set()
        n += 1
        await asyncio.sleep(max(0.0, start + n / 30 - time.monotonic()))
    offering = False
    wake.set()
    await asyncio.gather(*workers)  # every stream written (the SDK may still be sending them)
    conn.send(json.dumps({'queued': queued, 'dropped': dropped}))
    await asyncio.get_running_loop().run_in_executor(None, conn.recv)  # the receiver has what came
    await room.disconnect()


def _run(target: Any, *args: Any) -> None:
    asyncio.run(target(*args))
    os._exit(0)  # skip finalization with the LiveKit FFI's threads still around


def measure(url: str, api_key: str, api_secret: str, size: int, in_flight: int, seconds: float) -> dict[str, Any]:
    from portal_bridge.portal import mint_token

    room = f'data-channel-{os.getpid()}-{size}-{in_flight}-{time.monotonic_ns()}'
    ctx = mp.get_context('spawn')
    rx_conn, rx_child = ctx.Pipe()
    tx_conn, tx_child = ctx.Pipe()
    rx = ctx.Process(target=_run, args=(_receive, url, mint_token(api_key, api_secret, 'rx', room), rx_child))
    tx = ctx.Process(target=_run, args=(_send, url, mint_token(api_key, api_secret, 'tx', room), tx_child,
                                        size, in_flight, seconds))  # fmt: skip
    rx.start()
    tx.start()
    try:
        assert rx_conn.recv() == 'ready' and tx_conn.recv() == 'ready'
        procs = {'sender': psutil.Process(tx.pid), 'receiver': psutil.Process(rx.pid)}
        for p in procs.values():
            p.cpu_times()
        before = {k: sum(p.cpu_times()[:2]) for k, p in procs.items()}
        tx_conn.send('go')
        sent = json.loads(tx_conn.recv())
        rx_conn.send(len(sent['queued']) - sent['dropped'])
        got = json.loads(rx_conn.recv())
        cpu_s = {k: sum(p.cpu_times()[:2]) - before[k] for k, p in procs.items()}
        tx_conn.send('leave')
    finally:
        for p in (tx, rx):
            p.join(15)
            if p.is_alive():
                p.kill()
    queued = {int(k): v for k, v in sent['queued'].items()}
    done = {int(k): v for k, v in got['done'].items()}
    lat = [(t - queued[k]) * 1000 for k, t in done.items() if k in queued]
    mb = got['bytes'] / 1e6
    elapsed = max(seconds, max(done.values(), default=0.0) - min(queued.values(), default=0.0))
    return {
        'offered': len(queued),
        'delivered': len(done),
        'dropped': sent['dropped'],
        'fps': len(done) / elapsed,
        'mb_s': mb / elapsed,
        'latency': summary(lat),
        'cpu_per_mb': {k: (v / mb if mb else float('nan')) for k, v in cpu_s.items()},
    }


def data_channel_table(url: str, api_key: str, api_secret: str, seconds: float, quick: bool = False) -> str:
    rows = []
    sizes = list(SIZES.items())[:1] if quick else list(SIZES.items())
    for label, size in sizes:
        for k in (1, 2) if quick else IN_FLIGHT:
            r = measure(url, api_key, api_secret, size, k, seconds)
            lat = r['latency']
            rows.append([label, str(k), f"{r['delivered']} / {r['offered']}", r['fps'], r['mb_s'], lat['p50'],
                         lat['p95'], r['cpu_per_mb']['sender'], r['cpu_per_mb']['receiver']])  # fmt: skip
    return table(['frame', 'streams in flight', 'delivered / offered', 'frames/s', 'MB/s', 'p50 ms', 'p95 ms',
                  'sender CPU s per MB', 'receiver CPU s per MB'], rows)  # fmt: skip


def main() -> None:
    from .harness import start_server

    parser = argparse.ArgumentParser(prog='bench.data_channel')
    parser.add_argument('--seconds', type=float, default=8.0)
    args = parser.parse_args()
    server = start_server()
    try:
        print(data_channel_table(server.url, server.api_key, server.api_secret, args.seconds), flush=True)
    finally:
        server.stop()


if __name__ == '__main__':
    main()
