"""Send queues and their drainers: frame video pipelined, yet completed in queue order.

Pure asyncio, no LiveKit: the ``send`` callables stand in for the SDK's open/write/close calls,
with delays chosen so that the independent part of later items finishes first.
"""

import asyncio
import random

import pytest
from support.waiting import async_test

from portal_bridge.portal.room.send_queue import Drainer, PipelinedDrainer, SendQueue


async def until(predicate, timeout=5.0):
    deadline = asyncio.get_running_loop().time() + timeout
    while not predicate():
        assert asyncio.get_running_loop().time() < deadline, 'condition not met in time'
        await asyncio.sleep(0.001)


class Recorder:
    """A staged send: sleeps a random 'open + write', waits for its turn, records the 'close'."""

    def __init__(self, seed=1, fail=()):
        self.rng = random.Random(seed)
        self.closed = []
        self.started = []
        self.active = 0
        self.most_active = 0
        self.fail = set(fail)

    async def send(self, item, turn):
        self.started.append(item)
        self.active += 1
        self.most_active = max(self.most_active, self.active)
        try:
            await asyncio.sleep(self.rng.uniform(0.0, 0.02))
            if item in self.fail:
                raise RuntimeError(f'open of {item} refused')
            await turn()
            self.closed.append(item)
        finally:
            self.active -= 1


@pytest.mark.parametrize('depth', [1, 3])
def test_pipelined_sends_overlap_but_close_in_queue_order(depth):
    @async_test()
    async def run():
        queue = SendQueue(asyncio.get_running_loop(), 100, drop_oldest=True)
        rec = Recorder()
        drainer = PipelinedDrainer('frames', queue, rec.send, depth=depth)
        drainer.start()
        for i in range(60):
            queue.put(i)
        await until(lambda: len(rec.closed) == 60)
        assert rec.closed == list(range(60))
        assert rec.most_active == depth  # overlapped up to the depth, never more (depth 1: one at a time)
        assert drainer.failures == 0
        await drainer.stop()

    run()


@async_test()
async def test_a_failed_send_passes_the_turn_on_only_after_the_earlier_ones():
    queue = SendQueue(asyncio.get_running_loop(), 100, drop_oldest=True)
    rec = Recorder(seed=7, fail={3, 4, 10})
    drainer = PipelinedDrainer('frames', queue, rec.send, depth=4)
    drainer.start()
    for i in range(20):
        queue.put(i)
    await until(lambda: len(rec.closed) == 17)
    await asyncio.sleep(0.05)
    assert rec.closed == [i for i in range(20) if i not in (3, 4, 10)]
    assert drainer.failures == 3
    await drainer.stop()


@async_test()
async def test_waiting_items_stay_in_the_queue_so_the_oldest_is_dropped():
    queue = SendQueue(asyncio.get_running_loop(), 2, drop_oldest=True)
    release = asyncio.Event()
    sent = []

    async def send(item, turn):
        await release.wait()
        await turn()
        sent.append(item)

    drainer = PipelinedDrainer('frames', queue, send, depth=2)
    drainer.start()
    queue.put(0)
    queue.put(1)
    await until(lambda: len(queue) == 0)  # both taken: two slots
    evicted = [queue.put(i)[1] for i in range(2, 6)]
    assert evicted == [None, None, 2, 3]  # the queue, not the drainer, holds the waiting frames
    release.set()
    await until(lambda: len(sent) == 4)
    assert sent == [0, 1, 4, 5]
    await drainer.stop()


@async_test()
async def test_stop_cancels_sends_in_flight():
    queue = SendQueue(asyncio.get_running_loop(), 10, drop_oldest=True)
    cancelled = []

    async def send(item, turn):
        try:
            await asyncio.sleep(30)
        except asyncio.CancelledError:
            cancelled.append(item)
            raise

    drainer = PipelinedDrainer('frames', queue, send, depth=3)
    drainer.start()
    for i in range(5):
        queue.put(i)
    await until(lambda: len(queue) == 2)
    await asyncio.wait_for(drainer.stop(), 2)
    assert sorted(cancelled) == [0, 1, 2]
    assert queue.put(9) == (False, None)  # closed


@async_test()
async def test_plain_drainer_sends_one_at_a_time_and_survives_failures():
    queue = SendQueue(asyncio.get_running_loop(), 10, drop_oldest=False)
    sent, active = [], [0, 0]

    async def send(item):
        active[0] += 1
        active[1] = max(active)
        await asyncio.sleep(0.002)
        active[0] -= 1
        if item == 2:
            raise RuntimeError('refused')
        sent.append(item)

    drainer = Drainer('state', queue, send)
    drainer.start()
    for i in range(6):
        queue.put(i)
    await until(lambda: len(sent) == 5)
    assert sent == [0, 1, 3, 4, 5] and active[1] == 1 and drainer.failures == 1
    await drainer.stop()


def test_depth_must_be_positive():
    with pytest.raises(ValueError):
        PipelinedDrainer('frames', None, None, depth=0)
