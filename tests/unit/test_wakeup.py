"""The nudge that lets in-process workers skip their polling delay."""

from __future__ import annotations

import threading
import time

import anyio
import pytest

from plaudit.workers.wakeup import Wakeup

pytestmark = pytest.mark.anyio


async def test_a_wait_ends_when_another_thread_sets_it() -> None:
    wakeup = Wakeup()
    await wakeup.wait(0.001)  # binds it to this loop
    timer = threading.Timer(0.05, wakeup.set)
    started = time.perf_counter()
    timer.start()
    await wakeup.wait(5.0)
    assert time.perf_counter() - started < 2.0
    timer.join()


async def test_a_set_before_the_first_wait_is_not_lost_and_is_used_once() -> None:
    wakeup = Wakeup()
    wakeup.set()
    with anyio.fail_after(1.0):
        await wakeup.wait(5.0)
    started = time.perf_counter()
    await wakeup.wait(0.05)  # cleared: this one runs out
    assert time.perf_counter() - started >= 0.04


async def test_a_set_on_the_loops_own_thread_wakes_the_waiter() -> None:
    wakeup = Wakeup()
    await wakeup.wait(0.001)
    started = time.perf_counter()
    async with anyio.create_task_group() as tg:
        tg.start_soon(wakeup.wait, 5.0)
        await anyio.sleep(0.01)
        wakeup.set()
    assert time.perf_counter() - started < 2.0  # woken, not timed out
