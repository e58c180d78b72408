"""The per-camera worker (frame_worker.py): order, bursts, drop-oldest, failures (no ROS)."""

import threading

from portal_bridge.ros.frame_worker import FrameWorker


def test_a_burst_within_the_depth_is_processed_in_order_without_drops():
    gate, seen = threading.Event(), []
    first_taken, done = threading.Event(), threading.Event()

    def handle(item):
        first_taken.set()
        gate.wait(5)
        seen.append(item)
        if item == 6:
            done.set()

    drops = []
    w = FrameWorker('cam', handle, depth=6, on_drop=lambda: drops.append(1))
    w.submit(0)
    assert first_taken.wait(5)
    for i in range(1, 7):  # six wait behind the one being handled
        w.submit(i)
    gate.set()
    assert done.wait(5)
    w.stop()
    assert seen == list(range(7)) and drops == [] and w.dropped == 0


def test_a_worker_that_stays_behind_drops_the_oldest_and_counts():
    gate, seen = threading.Event(), []
    first_taken = threading.Event()
    done = threading.Event()

    def handle(item):
        first_taken.set()
        gate.wait(5)
        seen.append(item)
        if item == 19:
            done.set()

    drops = []
    w = FrameWorker('cam', handle, depth=3, on_drop=lambda: drops.append(1))
    w.submit(0)
    assert first_taken.wait(5)
    for i in range(1, 20):
        w.submit(i)
    gate.set()
    assert done.wait(5)
    w.stop()
    assert seen == [0, 17, 18, 19] and len(drops) == w.dropped == 16


def test_an_exception_is_reported_and_the_worker_goes_on():
    errors, seen, done = [], [], threading.Event()

    def handle(item):
        if item == 'bad':
            raise ValueError('lying buffer')
        seen.append(item)
        done.set()

    w = FrameWorker('cam', handle, on_error=errors.append)
    w.submit('bad')
    w.submit('good')
    assert done.wait(5)
    w.stop()
    assert seen == ['good'] and [str(e) for e in errors] == ['lying buffer']
