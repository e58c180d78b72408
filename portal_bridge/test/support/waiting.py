"""Waiting on conditions instead of sleeping."""

from __future__ import annotations

import asyncio
import functools
import time
from typing import Any, Callable


def _poll(predicate: Callable[[], Any], deadline: float, timeout: float, what: str) -> Any:
    value = predicate()
    if not value and time.monotonic() > deadline:
        raise AssertionError(f'timed out after {timeout} s waiting for {what or predicate}')
    return value


async def wait_for(predicate: Callable[[], Any], timeout: float = 10.0, interval: float = 0.01, what: str = '') -> Any:
    """Poll ``predicate`` until it returns a truthy value; AssertionError after ``timeout``."""
    deadline = time.monotonic() + timeout
    while not (value := _poll(predicate, deadline, timeout, what)):
        await asyncio.sleep(interval)
    return value


def wait_for_sync(predicate: Callable[[], Any], timeout: float = 10.0, interval: float = 0.01, what: str = '') -> Any:
    """Blocking :func:`wait_for`, for tests that drive ROS executors."""
    deadline = time.monotonic() + timeout
    while not (value := _poll(predicate, deadline, timeout, what)):
        time.sleep(interval)
    return value


def wait_explained(predicate: Callable[[], Any], timeout: float, what: str, explain: Callable[[], str]) -> None:
    """:func:`wait_for_sync`, and on a timeout say what ``explain()`` shows (the state that was missing)."""
    try:
        wait_for_sync(predicate, timeout, what=what)
    except AssertionError as exc:
        raise AssertionError(f'{exc}; {explain()}') from None


async def hold_for(seconds: float) -> None:
    """Let traffic flow for a while (used only to prove that something does NOT happen)."""
    await asyncio.sleep(seconds)


def async_test(timeout: float = 60.0) -> Callable:
    """Run an ``async def`` test in a fresh event loop, failing it after ``timeout`` seconds."""

    def wrap(fn: Callable) -> Callable:
        @functools.wraps(fn)
        def runner(*args: Any, **kwargs: Any) -> Any:
            async def main() -> Any:
                return await asyncio.wait_for(fn(*args, **kwargs), timeout)

            return asyncio.run(main())

        return runner

    return wrap


def publish_until(
    predicate: Callable[[], Any],
    publish: Callable[[int], None],
    period: float = 1 / 30,
    timeout: float = 15.0,
    what: str = '',
) -> Any:
    """Call ``publish(i)`` every ``period`` until ``predicate`` holds (AssertionError on timeout)."""
    deadline = time.monotonic() + timeout
    i = 0
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f'timed out after {timeout} s waiting for {what or predicate}')
        publish(i)
        i += 1
        time.sleep(period)
