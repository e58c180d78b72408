"""A hostile participant for the bad-input tests, run as its own process.

It joins the room with a valid token and, on command, sends what a buggy or malicious client could:
malformed, truncated, oversized and wrongly fingerprinted packets on every Portal topic, junk byte
streams, a video track without timestamps, control requests it has no right to make. Running in
its own process gives it its own LiveKit client, so its sending does not share an event loop or
an FFI queue with the bridges under test.

Protocol: one JSON command per stdin line; one JSON reply per stdout line. Every reply says what
was sent per receiver and per the counter that receiver is expected to move, so the test can
check that everything that arrived was counted.

The SDK's awaited ``publish_data`` manages about 1,000 packets/s; a flood has to be faster than a
well-behaved client, so floods go through the FFI request directly and do not wait for each send.
"""

from __future__ import annotations

import argparse
import asyncio
from collections import Counter
import json
import math
from pathlib import Path
import queue
import random
import subprocess
import sys
import tempfile
import threading
import time
from typing import Any, Callable

from livekit import rtc
from livekit.rtc._ffi_client import FfiClient
from livekit.rtc._proto import ffi_pb2 as proto_ffi
from livekit.rtc._utils import get_address

from portal_bridge.portal import WireContract, now_us
from portal_bridge.portal.protocol import (
    ROLE_ATTR,
    SET_ACTIVE_OPERATOR_RPC,
    TOPIC_ACTION,
    TOPIC_ACTION_CHUNK,
    TOPIC_EXECUTED,
    TOPIC_EXECUTED_CHUNK,
    TOPIC_FRAME_VIDEO,
    TOPIC_RTT,
    TOPIC_STATE,
)
from portal_bridge.portal.wire.packets import (
    EXECUTED_ACTION,
    ActionCodec,
    ChunkCodec,
    StateCodec,
    encode_executed,
    encode_rtt,
)

RNG = random.Random(7)


def _fire(lp: rtc.LocalParticipant, payload: bytes, topic: str, dest: str) -> None:
    """Queue one reliable data packet without waiting for the send to complete."""
    req = proto_ffi.FfiRequest()
    req.publish_data.local_participant_handle = lp._ffi_handle.handle
    req.publish_data.data_ptr = get_address(payload)
    req.publish_data.data_len = len(payload)
    req.publish_data.reliable = True
    req.publish_data.topic = topic
    req.publish_data.destination_identities.append(dest)
    FfiClient.instance.request(req)


def _flat_variants(good: bytes) -> list[bytes]:
    """Every way a fixed-size Portal packet can be wrong (and a right one, from the wrong sender)."""
    wrong_fp = bytes([good[0] ^ 0xFF]) + good[1:]
    return [
        good,  # well formed: refused for who sent it, not for what it is
        b'',
        good[:3],  # shorter than the fingerprint
        good[:-1],  # truncated
        good + b'\x00',  # one byte too many
        good + bytes(1_200),  # oversized
        wrong_fp,
        bytes(RNG.getrandbits(8) for _ in range(len(good))),  # noise of the right length
    ]


class Rogue:
    def __init__(self, room: rtc.Room, contract: WireContract) -> None:
        self.room = room
        self.lp = room.local_participant
        self.contract = c = contract
        self._video: tuple[asyncio.Future, str] | None = None  # untimed_video's sender and track sid
        ts = now_us()
        state = StateCodec(c.state).encode({f.name: 1.0 for f in c.state}, ts)[0]
        nan_state = StateCodec(c.state).encode({f.name: math.nan for f in c.state}, ts)[0]
        action = ActionCodec(c.action).encode({f.name: 0.25 for f in c.action}, ts)[0]
        nan_action = ActionCodec(c.action).encode({f.name: math.nan for f in c.action}, ts)[0]
        self.states = [*_flat_variants(state), nan_state]
        self.actions = [*_flat_variants(action), nan_action]
        self.executed = [
            encode_executed(EXECUTED_ACTION, 'pilot', action),  # well formed, but not from the robot
            encode_executed(EXECUTED_ACTION, 'rogue', nan_action),
            b'\x01',
            b'\x09\x00\x00\x00',
            encode_executed(EXECUTED_ACTION, 'pilot', action)[:5],
            bytes(RNG.getrandbits(8) for _ in range(40)),
        ]
        self.chunk = None
        if c.action_chunks:
            codec = ChunkCodec(c.action_chunks[0])
            self.chunk = codec.encode({f.name: [0.5] * codec.spec.horizon for f in codec.spec.fields}, ts)[0]
        self.rtt_junk = [b'', b'\x00', encode_rtt(0, ts)[:8], encode_rtt(0, ts) + b'\x00', b'\x07' * 9 + b'\x00']

    async def flood(self, robot: str, operator: str, n: int, rate: float = 0.0) -> dict[str, Any]:
        """``n`` packets, half to each bridge, on every topic that bridge reads; ``rate`` packets/s (0: at once)."""
        sent: dict[str, Counter] = {robot: Counter(), operator: Counter()}
        plans: list[tuple[str, str, Callable[[int], bytes], str]] = [
            # receiver, topic, payload(i), the receiver's counter that must move
            (robot, TOPIC_ACTION, lambda i: self.actions[i % len(self.actions)], 'gate'),
            (robot, TOPIC_RTT, lambda i: self.rtt_junk[i % len(self.rtt_junk)], 'bad-rtt'),
            (robot, TOPIC_RTT, lambda i: encode_rtt(1, i + 1), 'pongs_ignored'),  # answers to no ping
            (operator, TOPIC_STATE, lambda i: self.states[i % len(self.states)], 'not-robot'),
            (operator, TOPIC_EXECUTED, lambda i: self.executed[i % len(self.executed)], 'not-robot'),
            (operator, TOPIC_RTT, lambda i: self.rtt_junk[i % len(self.rtt_junk)], 'bad-rtt'),
            (operator, TOPIC_RTT, lambda i: encode_rtt(1, i + 1), 'pongs_ignored'),
        ]
        weights = [6, 1, 1, 4, 2, 1, 1]
        shares = [n * w // sum(weights) for w in weights]
        shares[0] += n - sum(shares)
        # Interleaved, so that every kind of junk arrives throughout the flood, not one kind per phase.
        order = [(plan, i) for plan, share in zip(plans, shares) for i in range(share)]
        RNG.shuffle(order)
        keep = []  # the FFI reads each payload by address: keep them all alive until the flood is out
        start = time.monotonic()
        for k, ((dest, topic, make, counter), i) in enumerate(order):
            payload = make(i)
            keep.append(payload)
            _fire(self.lp, payload, topic, dest)
            sent[dest][counter] += 1
            if k % 100 == 99:
                ahead = (k + 1) / rate - (time.monotonic() - start) if rate > 0 else 0.0
                await asyncio.sleep(max(ahead, 0.0))  # the pace, and the FFI's callbacks run meanwhile
        await asyncio.sleep(1.0)
        del keep
        return {'sent': {k: dict(v) for k, v in sent.items()}, 'total': sum(shares)}

    async def pings(self, dest: str, n: int) -> dict[str, Any]:
        """Valid pings: each is answered or, past the pong queue, counted as pong-backlog."""
        payloads = [encode_rtt(0, i + 1) for i in range(n)]
        for i in range(n):
            _fire(self.lp, payloads[i], TOPIC_RTT, dest)
        await asyncio.sleep(1.0)
        return {'sent': n}

    async def streams(self, robot: str, operator: str, n: int, oversize: int) -> dict[str, Any]:
        sent: dict[str, Counter] = {robot: Counter(), operator: Counter()}
        junk = [b'', b'\x00' * 3, bytes(RNG.getrandbits(8) for _ in range(300))]
        if self.chunk is not None:
            junk += [self.chunk, self.chunk[:-4], b'\xff\xff\xff\xff' + self.chunk[4:]]
        jobs = []
        for i in range(n):
            payload = junk[i % len(junk)]
            jobs.append(self._stream(robot, TOPIC_ACTION_CHUNK, payload))
            sent[robot]['gate'] += 1
            jobs.append(self._stream(operator, TOPIC_FRAME_VIDEO, payload))
            jobs.append(self._stream(operator, TOPIC_EXECUTED_CHUNK, payload))
            sent[operator]['not-robot'] += 2
        await asyncio.gather(*jobs)
        await self._stream(robot, TOPIC_ACTION_CHUNK, bytes(oversize))
        sent[robot]['oversized-stream'] += 1
        await self._stream(operator, TOPIC_FRAME_VIDEO, bytes(oversize))
        sent[operator]['not-robot'] += 1
        return {'sent': {k: dict(v) for k, v in sent.items()}}

    async def _stream(self, dest: str, topic: str, payload: bytes) -> None:
        writer = await self.lp.stream_bytes(
            name=f'rogue-{RNG.getrandbits(32)}', topic=topic, destination_identities=[dest], total_size=len(payload)
        )
        if payload:
            await writer.write(payload)
        await writer.aclose()

    async def untimed_video(self, name: str) -> dict[str, Any]:
        """Start a camera-named track whose frames carry no user_timestamp trailer (30 fps).

        It goes on until :meth:`stop_video`: how long a receiver takes to subscribe and decode a
        new track varies with the host, so the test stops it once the frames were counted.
        """
        source = rtc.VideoSource(64, 48)
        track = rtc.LocalVideoTrack.create_video_track(name, source)
        options = rtc.TrackPublishOptions(source=rtc.TrackSource.SOURCE_CAMERA)
        publication = await self.lp.publish_track(track, options)
        data = bytes(64 * 48 * 4)

        async def send() -> int:
            n = 0
            try:
                while True:
                    source.capture_frame(rtc.VideoFrame(64, 48, rtc.VideoBufferType.RGBA, data))
                    n += 1
                    await asyncio.sleep(1 / 30)
            except asyncio.CancelledError:
                return n

        self._video = (asyncio.ensure_future(send()), publication.sid)
        return {'publishing': publication.sid}

    async def stop_video(self) -> dict[str, Any]:
        task, sid = self._video
        task.cancel()
        frames = await task
        await self.lp.unpublish_track(sid)
        return {'frames': frames}

    async def faulty_actions(self, robot: str, repeats: int, outside: float) -> dict[str, Any]:
        """As the active operator: every kind of broken action and chunk, ``repeats`` times each.

        Returns, per outcome the robot must reach (``accepted``, or the counter that must move), how
        many were sent. ``outside`` is a value beyond the robot's configured action limits.
        """
        c, ts = self.contract, now_us()
        codec = ActionCodec(c.action)
        good = self.actions[0]
        variants = [
            (good, 'accepted'),
            (b'', 'bad-payload'),
            (good[:3], 'bad-payload'),
            (good[:-1], 'bad-payload'),
            (good + b'\x00', 'bad-payload'),
            (good + bytes(12_000), 'bad-payload'),
            (bytes([good[0] ^ 0xFF]) + good[1:], 'schema-mismatch'),
            (codec.encode({f.name: math.nan for f in c.action}, ts)[0], 'nan-action'),
            (codec.encode({f.name: outside for f in c.action}, ts)[0], 'limit-rejected'),
        ]
        sent: Counter = Counter()
        keep = []
        for _ in range(repeats):
            for payload, outcome in variants:
                keep.append(payload)
                _fire(self.lp, payload, TOPIC_ACTION, robot)
                sent[outcome] += 1
            await asyncio.sleep(0)
        chunks: Counter = Counter()
        if c.action_chunks:
            spec = c.action_chunks[0]
            chunk_codec = ChunkCodec(spec)
            rows = spec.horizon
            # One timestamp for all: each chunk stream is read by a task of its own, so two that
            # decode can complete out of order, and the robot rightly drops an older chunk after a
            # newer one ('stale-chunk', seen once in a full run); equal stamps are never stale.
            chunk_ts = now_us()

            def chunk(value: float) -> bytes:
                return chunk_codec.encode({f.name: [value] * rows for f in spec.fields}, chunk_ts)[0]

            ok = chunk(0.5)
            for payload, outcome in (
                (b'', 'unknown-chunk'),
                (ok[:3], 'unknown-chunk'),
                (b'\xde\xad\xbe\xef' + ok[4:], 'unknown-chunk'),
                (ok[:-1], 'bad-payload'),
                (ok + b'\x00', 'bad-payload'),
                (chunk(math.nan), 'nan-action'),
                (chunk(outside), 'limit-rejected'),
                (ok + bytes(1_200_000), 'oversized-stream'),
            ):
                await self._stream(robot, TOPIC_ACTION_CHUNK, payload)
                chunks[outcome] += 1
        await asyncio.sleep(1.0)
        del keep
        return {'actions': dict(sent), 'chunks': dict(chunks), 'good_values': [0.25] * len(c.action)}

    async def claim(self, robot: str, who: str) -> dict[str, Any]:
        try:
            reply = await self.lp.perform_rpc(destination_identity=robot, method=SET_ACTIVE_OPERATOR_RPC, payload=who)
            return {'ok': reply}
        except rtc.RpcError as exc:
            return {'code': exc.code, 'message': exc.message}

    async def attributes(self, attrs: dict[str, str]) -> dict[str, Any]:
        await self.lp.set_attributes(attrs)
        return {'ok': True}


async def serve(url: str, token: str, contract_file: str, role: str) -> None:
    room = rtc.Room()
    await room.connect(url, token)
    if role:
        await room.local_participant.set_attributes({ROLE_ATTR: role})
    rogue = Rogue(room, WireContract.from_yaml_str(Path(contract_file).read_text()))
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    print(json.dumps({'ready': room.local_participant.identity}), flush=True)
    try:
        while line := await reader.readline():
            cmd = json.loads(line)
            op = cmd.pop('cmd')
            if op == 'quit':
                break
            try:
                reply = await getattr(rogue, op)(**cmd)
            except Exception as exc:  # report to the test instead of dying mid-run
                reply = {'error': f'{type(exc).__name__}: {exc}'}
            print(json.dumps(reply), flush=True)
    finally:
        await room.disconnect()


class RogueProcess:
    """The test's handle on a rogue peer process: send a command, get its JSON reply."""

    def __init__(self, server, room: str, identity: str, contract_file: str, role: str = '') -> None:
        from portal_bridge.portal import mint_token

        from .child_process import spawn

        token = mint_token(server.api_key, server.api_secret, identity, room)
        self.stderr = tempfile.TemporaryFile()
        args = ['--url', server.url, '--token', token, '--contract', contract_file, '--role', role]
        self.proc = spawn(
            [sys.executable, __file__, *args],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self.stderr,
            text=True,
        )
        self._lines: queue.Queue = queue.Queue()
        threading.Thread(target=self._read, daemon=True, name=f'rogue-{identity}').start()
        self.ready = self._reply(30)

    def _read(self) -> None:
        for line in self.proc.stdout:
            self._lines.put(line)
        self._lines.put(None)

    def _reply(self, timeout: float) -> dict[str, Any]:
        try:
            line = self._lines.get(timeout=timeout)
        except queue.Empty:
            raise TimeoutError(f'rogue peer silent for {timeout} s; stderr:\n{self._stderr()}') from None
        if line is None:
            raise RuntimeError(f'rogue peer exited with {self.proc.wait()}; stderr:\n{self._stderr()}')
        reply = json.loads(line)
        if 'error' in reply:
            raise RuntimeError(f'rogue peer failed: {reply["error"]}')
        return reply

    def _stderr(self) -> str:
        self.stderr.seek(0)
        return self.stderr.read().decode(errors='replace')[-3000:]

    def __call__(self, cmd: str, timeout: float = 120.0, **args: Any) -> dict[str, Any]:
        self.proc.stdin.write(json.dumps({'cmd': cmd, **args}) + '\n')
        self.proc.stdin.flush()
        return self._reply(timeout)

    def close(self) -> None:
        if self.proc.poll() is None:
            try:
                self.proc.stdin.write('{"cmd": "quit"}\n')
                self.proc.stdin.flush()
                self.proc.wait(10)
            except (OSError, subprocess.TimeoutExpired):
                self.proc.kill()
                self.proc.wait()
        self.stderr.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--url', required=True)
    parser.add_argument('--token', required=True)
    parser.add_argument('--contract', required=True)
    parser.add_argument('--role', default='')
    args = parser.parse_args()
    asyncio.run(serve(args.url, args.token, args.contract, args.role))


if __name__ == '__main__':
    main()
