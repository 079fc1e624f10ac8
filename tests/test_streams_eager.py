"""streams/eager.py and the worker's consumer: a record's delivery runs at once, tasks only when it must wait."""

from __future__ import annotations

import asyncio
import warnings

import pytest

from streams.eager import start_eagerly
from streams.transport import _Consumer


def _bare_consumer() -> _Consumer:
    """A worker consumer with only what ``wait_first`` reads (its events and loop), no broker."""
    consumer = _Consumer.__new__(_Consumer)
    consumer._stopped = asyncio.Event()
    consumer._crashed = asyncio.Event()
    consumer._loop = asyncio.get_running_loop()
    return consumer


class _TaskCount:
    """Counts the tasks the running loop creates while it is installed."""

    def __init__(self) -> None:
        self.n = 0

    def __enter__(self) -> "_TaskCount":
        loop = asyncio.get_running_loop()
        self._old = loop.get_task_factory()

        def factory(loop: asyncio.AbstractEventLoop, coro, **kwargs):  # type: ignore[no-untyped-def]
            self.n += 1
            return asyncio.Task(coro, loop=loop, **kwargs)

        loop.set_task_factory(factory)
        return self

    def __exit__(self, *exc: object) -> None:
        asyncio.get_running_loop().set_task_factory(self._old)


async def test_a_delivery_that_does_not_wait_runs_at_once_without_a_task():
    consumer, delivered, suspend = _bare_consumer(), [], asyncio.Event()

    async def deliver(n: int) -> int:
        delivered.append(n)
        return n * 2

    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the suspension's wait is closed, never left unawaited
        with _TaskCount() as tasks:
            result = await consumer.wait_first(deliver(21), suspend.wait())
    assert delivered == [21] and result.results == [42] and not result.stopped
    assert tasks.n == 0  # Faust's own wait_first: four tasks a record


async def test_a_delivery_that_waits_finishes_in_a_task_with_its_result():
    consumer, room, steps = _bare_consumer(), asyncio.get_running_loop().create_future(), []

    async def deliver() -> str:
        steps.append("first step")
        await room
        steps.append("after the wait")
        return "put"

    waiting = asyncio.ensure_future(consumer.wait_first(deliver(), asyncio.Event().wait()))
    await asyncio.sleep(0)
    assert steps == ["first step"] and not waiting.done()
    room.set_result(None)
    result = await waiting
    assert steps == ["first step", "after the wait"] and result.results == ["put"]


async def test_a_waiting_delivery_is_cancelled_when_the_flow_is_suspended():
    consumer, suspend, cleaned = _bare_consumer(), asyncio.Event(), []

    async def deliver() -> None:
        try:
            await asyncio.get_running_loop().create_future()  # a full queue that never drains
        finally:
            cleaned.append(True)

    waiting = asyncio.ensure_future(consumer.wait_first(deliver(), suspend.wait()))
    await asyncio.sleep(0)
    suspend.set()
    result = await waiting
    assert len(result.done) == 1 and result.results == [True]  # the suspension won, as in Faust
    await asyncio.sleep(0)
    assert cleaned == [True]  # the delivery was cancelled (its finally ran)


async def test_an_error_of_the_first_step_propagates_and_the_other_waits_are_closed():
    consumer = _bare_consumer()

    async def deliver() -> None:
        raise ValueError("bad record")

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(ValueError, match="bad record"):
            await consumer.wait_first(deliver(), asyncio.Event().wait())


async def test_start_eagerly_resumes_through_bare_yields_and_thrown_errors():
    async def body() -> int:
        await asyncio.sleep(0)  # a bare yield
        try:
            await asyncio.get_running_loop().create_future()
        except asyncio.CancelledError:
            return 7
        return 0

    rest = start_eagerly(body())
    task = asyncio.ensure_future(rest)
    await asyncio.sleep(0)
    await asyncio.sleep(0)
    task.cancel()
    assert await task == 7
