"""agtl from asyncio (one trio guest run per loop) and from synchronous code (``agtl.run``).

The tests here are plain functions that run their own ``asyncio.run`` or ``agtl.run``; the
asyncio side waits on futures and events, each under ``asyncio.timeout``, never on a guess.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import textwrap
import threading
from collections.abc import AsyncIterator, Callable, Coroutine
from pathlib import Path
from typing import Any

import pytest
import sniffio
import trio

import agtl
from agtl import CancelSource, Event, Session, Status
from agtl.aio import CANCELLED_REASON, LEFT_REASON
from agtl.testing import Reply, ScriptedProvider

ROOT = Path(__file__).resolve().parent.parent
DEADLINE = 30.0


def run_asyncio(main: Callable[[], Coroutine[Any, Any, Any]]) -> Any:
    async def bounded() -> Any:
        async with asyncio.timeout(DEADLINE):
            return await main()

    return asyncio.run(bounded())


class Sink:
    """A summary sink that remembers every Result written to it."""

    def __init__(self) -> None:
        self.results: list[agtl.Result[Any]] = []

    def write(self, result: agtl.Result[Any]) -> None:
        self.results.append(result)


async def answer(session: Session) -> str:
    reply = await session.generate_text(prompt="hi")
    return reply.text


async def chatter(session: Session) -> AsyncIterator[Event]:
    async with session.stream_text(prompt="hi") as stream:
        async for delta in stream:
            yield session.emit("delta", delta)
    yield await session.done(stream.text)


def slow(chunks: int = 200, delay: float = 0.02) -> ScriptedProvider:
    return ScriptedProvider(Reply(["x "] * chunks, delay=delay))


# -- outside trio: a clear error, not a silent cancel ---------------------------------------------
def test_awaiting_under_asyncio_raises_a_clear_error() -> None:
    provider = ScriptedProvider("a", "b", "c", "d")

    async def result() -> None:
        await provider.simple_execution(answer).result()

    async def awaited() -> None:
        await provider.simple_execution(answer)

    async def entered() -> None:
        async with provider.streaming_execution(chatter):
            pass

    async def raced() -> None:
        await agtl.race(provider.simple_execution(answer))

    async def provider_block() -> None:
        async with provider:
            pass

    async def main() -> list[agtl.NotInTrioError]:
        errors = []
        for attempt in (result, awaited, entered, raced, provider_block):
            with pytest.raises(agtl.NotInTrioError) as caught:
                await attempt()
            errors.append(caught.value)
        return errors

    errors = run_asyncio(main)
    for error in errors:
        assert error.library == "asyncio"
        assert "agtl.aio.result(execution)" in str(error)
        assert "agtl.run(execution)" in str(error)
    assert provider.calls == ()  # nothing reached the model


# -- agtl.aio -----------------------------------------------------------------------------------
def test_result_under_asyncio_run() -> None:
    provider = ScriptedProvider("hello there")

    async def main() -> agtl.Result[str]:
        return await agtl.aio.result(provider.simple_execution(answer))

    result = run_asyncio(main)
    assert result.status is Status.SUCCEEDED
    assert result.value == "hello there"
    assert result.summary.llm_call_count == 1


def test_events_stream_in_order_and_the_outcome_is_set_when_the_loop_ends() -> None:
    provider = ScriptedProvider("one two three")
    execution = provider.streaming_execution(chatter)

    async def main() -> list[Event]:
        return [event async for event in agtl.aio.events(execution)]

    seen = run_asyncio(main)
    assert [e.type for e in seen] == ["delta", "delta", "delta", "complete"]
    assert "".join(e.data for e in seen[:-1]) == "one two three"
    assert execution.outcome is not None
    assert execution.outcome.status is Status.SUCCEEDED
    assert [e.metrics.seq for e in seen] == [e.metrics.seq for e in execution.outcome.events]


def test_a_hundred_concurrent_asyncio_tasks() -> None:
    provider = ScriptedProvider(respond=lambda request: Reply(["a ", "b"], delay=0.005))
    streaming = ScriptedProvider(respond=lambda request: Reply(["c ", "d"], delay=0.005))

    async def main() -> tuple[list[agtl.Result[str]], list[list[Event]]]:
        async def consume() -> list[Event]:
            return [e async for e in agtl.aio.events(streaming.streaming_execution(chatter))]

        simple = [agtl.aio.result(provider.simple_execution(answer)) for _ in range(100)]
        streams = [consume() for _ in range(100)]
        results, consumed = await asyncio.gather(asyncio.gather(*simple), asyncio.gather(*streams))
        return results, consumed

    results, streams = run_asyncio(main)
    assert [r.status for r in results] == [Status.SUCCEEDED] * 100
    assert {r.value for r in results} == {"a b"}
    assert len({r.execution_id for r in results}) == 100
    for events in streams:
        assert [e.type for e in events] == ["delta", "delta", "complete"]


def streaming_reader(
    provider: agtl.Provider,
) -> tuple[agtl.SimpleExecution[str], asyncio.Event]:
    """An execution that streams a reply and returns its text; the event is set once the
    first piece arrived (from the trio side: both run on the loop's thread)."""
    streamed = asyncio.Event()

    async def reads(session: Session) -> str:
        async with session.stream_text(prompt="hi") as stream:
            async for _ in stream:
                streamed.set()
        return stream.text

    return provider.simple_execution(reads), streamed


def test_cancelling_the_awaiting_task_cancels_the_execution_and_records_it() -> None:
    sink = Sink()
    execution, streamed = streaming_reader(slow().with_summary_sink(sink))

    async def main() -> None:
        task = asyncio.create_task(agtl.aio.result(execution))
        await streamed.wait()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        # The Result was recorded before the CancelledError reached us.
        assert len(sink.results) == 1

    run_asyncio(main)
    outcome = execution.outcome
    assert outcome is not None
    assert outcome.status is Status.CANCELED
    assert outcome.cancel is not None
    assert outcome.cancel.source is CancelSource.SIGNAL
    assert outcome.cancel.reason == CANCELLED_REASON
    assert outcome.partial is not None
    assert outcome.partial.text.startswith("x ")  # what was streamed is kept
    assert sink.results[0].execution_id == execution.execution_id


def test_leaving_the_event_loop_early_cancels_the_execution() -> None:
    provider = slow()
    execution = provider.streaming_execution(chatter)

    async def main() -> agtl.Result[Any] | None:
        async with contextlib.aclosing(agtl.aio.events(execution)) as events:
            async for event in events:
                if event.metrics.seq == 2:
                    break
        return execution.outcome  # aclosing waited for the end

    outcome = run_asyncio(main)
    assert outcome is not None
    assert outcome.status is Status.CANCELED
    assert outcome.cancel is not None
    assert outcome.cancel.source is CancelSource.HANDLE
    assert outcome.cancel.reason == LEFT_REASON
    assert len(outcome.events) >= 3


def test_a_plain_break_cancels_the_execution_soon_after() -> None:
    provider = slow()
    execution = provider.streaming_execution(chatter)

    async def main() -> agtl.Result[Any]:
        async for _ in agtl.aio.events(execution):
            break
        # Python closes an abandoned async generator from the loop soon after the break.
        return await agtl.aio.result(execution)

    outcome = run_asyncio(main)
    assert outcome.cancel is not None
    assert outcome.cancel.source is CancelSource.HANDLE
    assert outcome.cancel.reason == LEFT_REASON


def test_cancelling_the_consuming_task_cancels_the_stream() -> None:
    provider = slow()
    execution = provider.streaming_execution(chatter)

    async def main() -> None:
        first = asyncio.Event()

        async def consume() -> None:
            async for _ in agtl.aio.events(execution):
                first.set()

        task = asyncio.create_task(consume())
        await first.wait()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert execution.outcome is not None

    run_asyncio(main)
    assert execution.outcome is not None
    assert execution.outcome.cancel is not None
    assert execution.outcome.cancel.source is CancelSource.SIGNAL


def test_result_of_an_execution_already_streaming_waits_for_it() -> None:
    provider = ScriptedProvider(Reply(["a ", "b"], delay=0.01))
    execution = provider.streaming_execution(chatter)

    async def main() -> tuple[list[Event], agtl.Result[Any]]:
        iterator = agtl.aio.events(execution)
        first = await anext(iterator)
        result = await agtl.aio.result(execution)  # runs already: waited for, not re-run
        rest = [e async for e in iterator]
        return [first, *rest], result

    events, result = run_asyncio(main)
    assert result.status is Status.SUCCEEDED
    assert [e.type for e in events] == ["delta", "delta", "complete"]
    assert len(provider.calls) == 1


def long_running(sink: Sink) -> tuple[agtl.SimpleExecution[str], asyncio.Event]:
    """An execution of a long call, recorded by ``sink``; the event is set once it runs (from
    the trio side: both run on the loop's thread)."""
    running = asyncio.Event()

    async def long_call(session: Session) -> str:
        running.set()
        return await answer(session)

    return slow().with_summary_sink(sink).simple_execution(long_call), running


def test_loop_shutdown_cancels_what_still_runs_and_records_it() -> None:
    sink = Sink()
    execution, running = long_running(sink)

    async def main() -> None:
        asyncio.create_task(agtl.aio.result(execution))  # noqa: RUF006 - left running on purpose
        await running.wait()
        # main returns with the execution running: asyncio.run shuts the loop down.

    run_asyncio(main)
    assert execution.outcome is not None
    assert execution.outcome.status is Status.CANCELED
    assert [r.execution_id for r in sink.results] == [execution.execution_id]


def test_shutdown_cancels_what_runs_records_it_and_a_later_call_starts_afresh() -> None:
    sink = Sink()
    execution, running = long_running(sink)

    async def trio_name() -> str:
        await trio.lowlevel.checkpoint()
        return sniffio.current_async_library()

    async def main() -> tuple[agtl.Result[Any], str]:
        await agtl.aio.shutdown()  # no guest run yet: nothing to do
        waiter = asyncio.create_task(agtl.aio.result(execution))
        await running.wait()
        await agtl.aio.shutdown()
        # The Result was recorded before shutdown() returned, and the waiter gets it.
        assert [r.execution_id for r in sink.results] == [execution.execution_id]
        result = await waiter
        return result, await agtl.aio.call(trio_name)  # a new guest run on the same loop

    result, library = run_asyncio(main)
    assert result.status is Status.CANCELED
    assert result.partial is not None  # what streamed before the shutdown is kept
    assert result is execution.outcome
    assert library == "trio"


def test_cancelling_a_waiter_of_an_execution_it_did_not_start_leaves_it_running() -> None:
    execution, streamed = streaming_reader(ScriptedProvider(Reply(["x "] * 20, delay=0.01)))

    async def main() -> agtl.Result[Any]:
        starter = asyncio.create_task(agtl.aio.result(execution))
        await streamed.wait()  # started by the first task, and streaming
        onlooker = asyncio.create_task(agtl.aio.result(execution))
        # One turn of the loop: the task runs to its first suspension, the wait for the Result
        # (the guest run is up, so nothing before it suspends).
        await asyncio.sleep(0)
        onlooker.cancel()
        with pytest.raises(asyncio.CancelledError):
            await onlooker
        assert execution.outcome is None  # its wait stopped; the execution did not
        return await starter

    result = run_asyncio(main)
    assert result.status is Status.SUCCEEDED
    assert result.value == "x " * 20
    assert result.cancel is None


def test_call_runs_any_trio_function_and_a_new_loop_gets_a_new_guest_run() -> None:
    async def trio_only(x: int) -> str:
        await trio.lowlevel.checkpoint()
        return f"{sniffio.current_async_library()}:{x}"

    for _ in range(2):
        assert run_asyncio(lambda: agtl.aio.call(trio_only, 7)) == "trio:7"


def test_errors_from_call_reach_the_asyncio_caller() -> None:
    async def boom() -> None:
        await trio.lowlevel.checkpoint()
        raise KeyError("lost")

    with pytest.raises(KeyError, match="lost"):
        run_asyncio(lambda: agtl.aio.call(boom))


def test_events_refuses_a_simple_execution() -> None:
    provider = ScriptedProvider()

    async def main() -> None:
        with pytest.raises(agtl.InvalidArgumentError, match="streaming execution"):
            async for _ in agtl.aio.events(provider.simple_execution(answer)):  # type: ignore[arg-type]
                pass

    run_asyncio(main)


# -- agtl.run and provider.generate_text ---------------------------------------------------------


def test_generate_text_bounds_the_execution_with_execution_timeout() -> None:
    provider = ScriptedProvider(Reply(["x "] * 100, delay=0.05))
    result = agtl.run(provider.generate_text("Tell a long story.", execution_timeout=0.2))
    assert result.status is Status.CANCELED
    assert result.cancel is not None
    assert result.cancel.source is CancelSource.TIMEOUT
    assert result.partial is not None  # what streamed before the timeout is kept


def test_generate_text_timeout_is_the_deprecated_name_of_execution_timeout() -> None:
    provider = ScriptedProvider(Reply(["x "] * 100, delay=0.05))
    with pytest.warns(DeprecationWarning, match="use execution_timeout="):
        execution = provider.generate_text("Tell a long story.", timeout=0.2)
    result = agtl.run(execution)
    assert result.cancel is not None
    assert result.cancel.source is CancelSource.TIMEOUT
    with pytest.raises(agtl.InvalidArgumentError, match="execution_timeout= only"):
        provider.generate_text("hi", timeout=1, execution_timeout=1)


def test_generate_text_passes_the_per_call_deadlines() -> None:
    provider = ScriptedProvider(Reply("late", first_delay=1.0))
    result = agtl.run(provider.generate_text("hi", first_token_timeout=0.05))
    assert result.status is Status.FAILED
    assert isinstance(result.error, agtl.FirstTokenTimeoutError)
    with pytest.raises(agtl.InvalidArgumentError, match="stall_timeout"):
        provider.generate_text("hi", stall_timeout=-1)


def test_run_returns_the_result_of_a_one_call_shortcut() -> None:
    provider = ScriptedProvider("Paris.")
    result = agtl.run(provider.generate_text("What is the capital of France?", temperature=0))
    assert result.status is Status.SUCCEEDED
    assert result.value is not None
    assert result.value.text == "Paris."
    assert provider.calls[0].options.temperature == 0
    assert provider.calls[0].messages[-1].content == "What is the capital of France?"


async def test_generate_text_is_awaitable_in_trio() -> None:
    provider = ScriptedProvider("Paris.")
    result = await provider.generate_text("Capital of France?", system="Be brief.")
    assert result.value is not None
    assert result.value.text == "Paris."
    assert [m.role.value for m in provider.calls[0].messages] == ["system", "user"]


def test_generate_text_checks_its_arguments_at_the_call() -> None:
    provider = ScriptedProvider()
    with pytest.raises(agtl.InvalidArgumentError, match="prompt"):
        provider.generate_text()
    with pytest.raises(agtl.InvalidArgumentError, match="temprature"):
        provider.generate_text("hi", temprature=0)


def test_run_refuses_where_it_cannot_run() -> None:
    provider = ScriptedProvider("a")

    async def in_trio() -> None:
        with pytest.raises(agtl.InvalidArgumentError, match="await execution"):
            agtl.run(provider.generate_text("hi"))

    trio.run(in_trio)

    async def in_asyncio() -> None:
        with pytest.raises(agtl.InvalidArgumentError, match=r"agtl\.aio\.result"):
            agtl.run(provider.generate_text("hi"))

    asyncio.run(in_asyncio())
    with pytest.raises(agtl.InvalidArgumentError, match="execution"):
        agtl.run("not an execution")  # type: ignore[arg-type]


def test_run_off_the_main_thread() -> None:
    provider = ScriptedProvider("from a thread")
    results: list[agtl.Result[Any]] = []
    worker = threading.Thread(target=lambda: results.append(agtl.run(provider.generate_text("q"))))
    worker.start()
    worker.join(DEADLINE)
    assert results[0].value is not None
    assert results[0].value.text == "from a thread"


SCRIPT = textwrap.dedent(
    """
    import agtl
    from agtl.testing import Reply, ScriptedProvider

    async def talk(session):
        async with session.stream_text(prompt="go") as stream:
            async for delta in stream:
                if len(stream.text) == len(delta):
                    print("streaming", flush=True)
        return stream.text

    provider = ScriptedProvider(Reply(["x "] * 1000, delay=0.01))
    result = agtl.run(provider.simple_execution(talk))
    print(result.status.value, result.cancel.source.value, result.cancel.reason, flush=True)
    print("partial", result.partial.text[:4], flush=True)
    """
)


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")
def test_ctrl_c_in_run_cancels_with_source_signal_and_returns_the_result() -> None:
    process = subprocess.Popen(
        [sys.executable, "-c", SCRIPT],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    try:
        assert process.stdout is not None
        assert process.stdout.readline().strip() == "streaming"
        process.send_signal(signal.SIGINT)
        out, err = process.communicate(timeout=DEADLINE)
    finally:
        process.kill()
    assert process.returncode == 0, err
    assert "canceled signal interrupted (Ctrl-C)" in out
    assert "partial x " in out  # the text streamed before Ctrl-C is kept
