"""agtl inside asyncio applications (FastAPI, Jupyter, Django async, Temporal workers).

agtl runs on trio. An asyncio program reaches it through one trio *guest run* hosted by its
event loop (:func:`trio.lowlevel.start_guest_run`): trio's scheduler runs as callbacks on the
asyncio loop's thread, so both libraries share that thread and no second thread or loop is
involved. The guest run starts on first use and ends with the loop (``asyncio.run`` cancels
its keeper task at shutdown, which cancels what still runs on trio and waits for it), or
earlier with :func:`shutdown`.

Everything agtl runs here is a task of that guest run. Cancelling the asyncio task that awaits
an execution cancels the execution (source ``signal``) and waits for its Result to be
recorded before the ``CancelledError`` propagates.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import functools
import math
import weakref
from collections.abc import AsyncGenerator, Awaitable, Callable
from typing import Any, Final, TypeVar

import outcome
import sniffio
import trio

from agtl._groups import is_cancellation
from agtl._vocabulary import CancelSource
from agtl.errors import AgtlError, InvalidArgumentError
from agtl.events import Event
from agtl.execution import Execution, StreamingExecution
from agtl.result import Result
from agtl.validation import type_name

__all__ = ["call", "events", "result", "shutdown"]

T = TypeVar("T")

#: The reason an execution is cancelled with when the asyncio task awaiting it is cancelled.
CANCELLED_REASON: Final = "the asyncio task awaiting the execution was cancelled"
#: The reason when an ``async for`` over :func:`events` stops before the execution ended.
LEFT_REASON: Final = "stopped iterating agtl.aio.events() before the execution finished"

_END: Final = object()  # the event stream ended


class GuestRunError(AgtlError, RuntimeError):
    """The trio guest run could not start, or ended while agtl work was waiting on it."""


class _Host:
    """The trio guest run hosted by one asyncio loop, and the asyncio task that keeps it."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.ready: asyncio.Future[None] = loop.create_future()
        self.finished: asyncio.Future[None] = loop.create_future()
        self.token: trio.lowlevel.TrioToken | None = None
        self.nursery: trio.Nursery | None = None
        self.keeper: asyncio.Task[None] | None = None
        # Futures asyncio code is waiting on, failed if the guest run ends under them.
        self.waiting: set[asyncio.Future[Any]] = set()

    def start(self) -> None:
        try:
            trio.lowlevel.start_guest_run(
                self._main,
                run_sync_soon_threadsafe=self.loop.call_soon_threadsafe,
                run_sync_soon_not_threadsafe=self.loop.call_soon,
                done_callback=self._done,
                host_uses_signal_set_wakeup_fd=True,
                strict_exception_groups=True,
            )
        except RuntimeError as exc:
            raise GuestRunError(
                f"cannot start agtl's trio guest run on this asyncio loop: {exc} "
                "(a trio run is already active on this thread: await agtl directly there)"
            ) from None
        self.keeper = self.loop.create_task(self._keep(), name="agtl.aio: trio guest run")

    async def _main(self) -> None:
        async with trio.open_nursery() as nursery:
            self.nursery = nursery
            self.token = trio.lowlevel.current_trio_token()
            _settle(self.ready, None)
            await trio.sleep_forever()

    def _done(self, result: outcome.Outcome[None]) -> None:
        """The guest run ended (on the loop's thread): release whoever still waits on it."""
        if _hosts.get(self.loop) is self:
            del _hosts[self.loop]
        problem = None
        if isinstance(result, outcome.Error):
            problem = GuestRunError(f"agtl's trio guest run ended with {result.error!r}")
        for future in (self.ready, *self.waiting):
            _fail(future, problem or GuestRunError("agtl's trio guest run has ended"))
        self.waiting.clear()
        _settle(self.finished, None)

    async def _keep(self) -> None:
        """Live as long as the loop; when cancelled (loop shutdown), end the guest run first."""
        try:
            await self.loop.create_future()
        finally:
            self.stop()
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.shield(self.finished)

    def stop(self) -> None:
        if self.nursery is not None:
            with contextlib.suppress(GuestRunError):
                self.soon(self.nursery.cancel_scope.cancel)

    def soon(self, fn: Callable[[], object]) -> None:
        """Run ``fn()`` on the guest run (waking it if it waits between ticks).

        ``fn`` must not raise: an exception in a callback crashes a trio run.
        """
        assert self.token is not None
        try:
            self.token.run_sync_soon(fn)
        except trio.RunFinishedError:
            raise GuestRunError("agtl's trio guest run has ended") from None

    def spawn(self, fn: Callable[[], Awaitable[object]], future: asyncio.Future[Any]) -> None:
        """Start ``fn()`` as a task of the guest run; ``future`` fails if it cannot start.

        The task sees the asyncio caller's context variables (the current tracing span, a
        structlog context): a trio task started from a callback would otherwise see none.
        """
        nursery = self.nursery
        assert nursery is not None
        caller = contextvars.copy_context()

        def start() -> None:
            try:
                nursery.start_soon(_in_context, caller, fn)
            except RuntimeError:  # the nursery closed: the guest run is ending
                _fail(future, GuestRunError("agtl's trio guest run is shutting down"))

        self.soon(start)

    async def wait(self, future: asyncio.Future[T]) -> T:
        """Await a future the guest run will settle, failed if the run ends first."""
        self.waiting.add(future)
        try:
            return await future
        finally:
            self.waiting.discard(future)


_hosts: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _Host] = weakref.WeakKeyDictionary()


async def _host() -> _Host:
    """This loop's guest run, started on first use."""
    loop = asyncio.get_running_loop()
    host = _hosts.get(loop)
    if host is None:
        host = _Host(loop)
        host.start()
        _hosts[loop] = host
    if not host.ready.done():
        await asyncio.shield(host.ready)
    host.ready.result()  # raises if the guest run failed to start
    return host


async def call(fn: Callable[..., Awaitable[T]], *args: Any) -> T:
    """Run the trio async function ``fn(*args)`` on the guest run and return its value.

    Use it for agtl calls that are not executions, e.g. ``await agtl.aio.call(provider.aclose)``.
    Cancelling the awaiting asyncio task cancels ``fn`` and waits for it to end.
    """
    if not callable(fn):
        raise InvalidArgumentError("fn", f"must be a trio async function, not {type_name(fn)}")
    host = await _host()
    done: asyncio.Future[T] = host.loop.create_future()
    scope = trio.CancelScope()

    async def run() -> None:
        with scope:
            try:
                value = await fn(*args)
            except Exception as exc:
                _fail(done, exc)
                return
            except BaseException as exc:
                stopped = is_cancellation(exc)
                _fail(done, asyncio.CancelledError() if stopped else GuestRunError(repr(exc)))
                raise
            _settle(done, value)

    host.spawn(run, done)
    return await _wait(host, done, lambda: host.soon(scope.cancel))


async def result(execution: Execution[T]) -> Result[T]:
    """Run ``execution`` on the guest run (or wait for it if it runs already); its Result.

    Cancelling the awaiting asyncio task cancels an execution this call started (source
    ``signal``) and waits until its Result is recorded before ``CancelledError`` propagates;
    an execution started elsewhere keeps running and only the wait stops.
    """
    if not isinstance(execution, Execution):
        raise InvalidArgumentError(
            "execution", f"must be an agtl execution, not {type_name(execution)}"
        )
    host = await _host()
    owned = not execution.started
    done: asyncio.Future[Result[T]] = host.loop.create_future()

    async def run() -> None:
        try:
            outcome_ = await execution.result()
        except BaseException:
            # Only the guest run's shutdown gets here; the Result was recorded all the same.
            if execution.outcome is not None:
                _settle(done, execution.outcome)
            raise
        _settle(done, outcome_)

    host.spawn(run, done)

    def stop() -> None:
        execution._cancel_from(CancelSource.SIGNAL, CANCELLED_REASON)

    return await _wait(host, done, stop if owned else None)


async def events(execution: StreamingExecution[Any]) -> AsyncGenerator[Event, None]:
    """Iterate a streaming execution's events from asyncio: ``async for e in events(ex)``.

    Starts the execution if nobody did. Events are pulled one at a time, so the execution's
    ``buffer_size`` backpressure applies to this consumer as to a trio one. Stopping the
    iteration early, or cancelling the consuming task, cancels an execution started here
    (source ``handle`` or ``signal``) and waits for its Result; once the loop ends normally,
    the execution has finished and ``execution.outcome`` is set.
    """
    if not isinstance(execution, StreamingExecution):
        raise InvalidArgumentError(
            "execution",
            f"must be a streaming execution (provider.streaming_execution(gen)), "
            f"not {type_name(execution)}; use agtl.aio.result() for other executions",
        )
    host = await _host()
    loop = host.loop
    owned = not execution.started
    send, receive = trio.open_memory_channel[asyncio.Future[Any]](math.inf)
    finished: asyncio.Future[None] = loop.create_future()
    forwarding = trio.CancelScope()
    forward = functools.partial(_forward, execution, receive, forwarding, finished, owned)
    host.spawn(forward, finished)
    ended = False
    try:
        while True:
            want: asyncio.Future[Any] = loop.create_future()
            host.soon(functools.partial(_ask, send, want))
            item = await host.wait(want)
            if item is _END:
                ended = True
                break
            yield item
    except asyncio.CancelledError:
        if owned:
            execution._cancel_from(CancelSource.SIGNAL, CANCELLED_REASON)
        raise
    finally:
        if not ended and owned:
            execution._cancel_from(CancelSource.HANDLE, LEFT_REASON)
        if not ended:
            host.soon(forwarding.cancel)  # CancelScope.cancel never raises
        with contextlib.suppress(BaseException):
            await host.wait(asyncio.shield(finished))


async def _wait(host: _Host, done: asyncio.Future[T], stop: Callable[[], None] | None) -> T:
    """Wait for ``done``. If the waiting asyncio task is cancelled, ``stop()`` what runs and
    wait for its end before the ``CancelledError`` goes on (a second cancel ends the wait)."""
    try:
        return await host.wait(asyncio.shield(done))
    except asyncio.CancelledError:
        if stop is not None:
            stop()
            with contextlib.suppress(BaseException):
                await host.wait(asyncio.shield(done))
        raise


def _ask(send: trio.MemorySendChannel[asyncio.Future[Any]], want: asyncio.Future[Any]) -> None:
    """Ask the forwarder for one more event (on the guest run)."""
    try:
        send.send_nowait(want)
    except (trio.BrokenResourceError, trio.ClosedResourceError):
        _settle(want, _END)  # the forwarder has stopped: the stream is over


async def _forward(
    execution: StreamingExecution[Any],
    wants: trio.MemoryReceiveChannel[asyncio.Future[Any]],
    forwarding: trio.CancelScope,
    finished: asyncio.Future[None],
    owned: bool,
) -> None:
    """The trio side of :func:`events`: one event per request, the execution as a child."""
    try:
        async with trio.open_nursery() as nursery:
            if owned and not execution.started:
                execution._start_in(nursery)
            with forwarding:
                stream = execution.stream()
                async with wants:
                    async for want in wants:
                        try:
                            event = await stream.__anext__()
                        except StopAsyncIteration:
                            _settle(want, _END)
                            break
                        _settle(want, event)
                await stream.aclose()
    finally:
        _settle(finished, None)


async def shutdown() -> None:
    """End this loop's guest run now: cancel what still runs on it and wait for it.

    Not needed under ``asyncio.run`` (it happens at loop shutdown); useful in a server's
    shutdown hook or before closing a loop by hand. The next agtl call starts a new one.
    """
    loop = asyncio.get_running_loop()
    host = _hosts.get(loop)
    if host is None:
        return
    if host.ready.done() and host.ready.exception() is None:
        host.stop()
    await asyncio.shield(host.finished)
    if host.keeper is not None:
        host.keeper.cancel()


async def _in_context(caller: contextvars.Context, fn: Callable[[], Awaitable[object]]) -> None:
    """Run ``fn()`` with the caller's context variables, but trio's own view of the world."""
    for variable, value in caller.items():
        if variable is not sniffio.current_async_library_cvar:  # this task runs on trio
            variable.set(value)
    await fn()


def _settle(future: asyncio.Future[Any], value: object) -> None:
    if not future.done():
        future.set_result(value)


def _fail(future: asyncio.Future[Any], error: BaseException) -> None:
    if not future.done():
        future.set_exception(error)
