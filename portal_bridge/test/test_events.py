"""Listeners and background tasks of a session: no listener replaces another, no failure is silent."""

from __future__ import annotations

import asyncio
import logging

from portal_bridge.portal.room.events import Listeners, LogOnce, TaskSet


def test_every_listener_is_called_and_a_raising_one_does_not_stop_the_others(caplog):
    log = logging.getLogger('test.events')
    listeners = Listeners('observation', TaskSet(log))
    got: list[tuple[str, int]] = []

    def broken(value: int) -> None:
        raise RuntimeError('listener bug')

    listeners.add(lambda v: got.append(('first', v)))
    listeners.add(broken)
    remove = listeners.add(lambda v: got.append(('third', v)))
    with caplog.at_level(logging.ERROR, logger='test.events'):
        listeners.emit(7)
    assert got == [('first', 7), ('third', 7)]
    assert '[callback-panic] observation listener broken raised' in caplog.text
    remove()
    listeners.emit(8)
    assert got[-1] == ('first', 8) and ('third', 8) not in got


def test_keyed_listeners_only_hear_their_key():
    listeners = Listeners('video-frame', TaskSet(logging.getLogger('test.events')))
    got: list[str] = []
    listeners.add(lambda name: got.append(f'front:{name}'), key='front')
    listeners.add(lambda name: got.append(f'wrist:{name}'), key='wrist')
    listeners.emit('a', key='front')
    assert got == ['front:a'] and listeners.has('wrist') and not listeners.has('top')


def test_a_failed_task_is_logged_with_its_name_and_a_coroutine_listener_runs(caplog):
    async def scenario() -> list[int]:
        tasks = TaskSet(logging.getLogger('test.events'))
        ran: list[int] = []

        async def fails() -> None:
            raise ValueError('boom')

        async def listener(v: int) -> None:
            ran.append(v)

        tasks.spawn(fails(), 'pointer-writer')
        listeners = Listeners('state', tasks)
        listeners.add(listener)
        listeners.emit(3)
        for _ in range(5):
            await asyncio.sleep(0)
        await tasks.cancel_all()
        return ran

    with caplog.at_level(logging.ERROR, logger='test.events'):
        ran = asyncio.run(scenario())
    assert ran == [3]
    assert "[task-failed] background task 'pointer-writer' failed: ValueError('boom')" in caplog.text


def test_log_once_logs_each_key_once_and_stays_bounded(caplog):
    once = LogOnce(logging.getLogger('test.events'))
    with caplog.at_level(logging.WARNING, logger='test.events'):
        for _ in range(3):
            once('k', 'seen %s', 'k')
        for i in range(2000):
            once(f'flood-{i}', 'flood %d', i)
    assert caplog.text.count('seen k') == 1
    assert len(once._seen) == 1024
