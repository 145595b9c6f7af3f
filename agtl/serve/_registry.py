"""The executions a server holds: started, watched by clients, finished and then forgotten.

One :class:`Registry` per app owns them. It runs each execution as a task of its own nursery
(opened by the app's lifespan), counts the event-stream clients of each, and cancels an
execution whose last client went away once a grace period passed with no reconnect, unless it
was started detached. Finished executions are kept for a bounded time and number, so that a
client can still read a Result after the fact and memory stays bounded.
"""

from __future__ import annotations

import collections
import math
from collections.abc import AsyncGenerator, Callable
from typing import Any, Final

import trio

from agtl.events import Event
from agtl.execution import StreamingExecution
from agtl.signals import CancelSignal

__all__ = ["Busy", "Registry", "Served"]

#: The cancel reason when the last client went away and none came back within the grace.
DISCONNECTED: Final = "client disconnected"
#: The cancel reason for what still runs when the server stops.
SHUTTING_DOWN: Final = "server shutting down"
#: How long the server waits for cancelled executions to record their Results at shutdown.
SHUTDOWN_GRACE: Final = 10.0


#: The most events sent in one write when a client has fallen behind.
_BATCH: Final = 256


class Busy(Exception):
    """As many executions run as the server allows."""


class Served:
    """One execution as the server holds it."""

    __slots__ = ("clients", "detached", "execution", "finished", "finished_at", "left", "signal")

    def __init__(
        self, execution: StreamingExecution[Any], signal: CancelSignal, *, detached: bool
    ) -> None:
        self.execution = execution
        self.signal = signal  # fired when the last client left for good
        self.detached = detached
        self.clients = 0
        self.left = 0  # bumped whenever the client count drops to zero
        self.finished = trio.Event()
        self.finished_at: float | None = None

    @property
    def id(self) -> str:
        return self.execution.execution_id


class Registry:
    """Runs, tracks and forgets the server's executions (see the module docstring)."""

    def __init__(
        self,
        *,
        max_running: int,
        keep_finished: int,
        keep_seconds: float,
        disconnect_grace: float,
    ) -> None:
        self.max_running = max_running
        self.keep_finished = keep_finished
        self.keep_seconds = keep_seconds
        self.disconnect_grace = disconnect_grace
        self._nursery: trio.Nursery | None = None
        self._running: dict[str, Served] = {}
        self._finished: collections.OrderedDict[str, Served] = collections.OrderedDict()

    # -- lifetime (the app's lifespan) ----------------------------------------------------------
    def open(self, nursery: trio.Nursery) -> None:
        self._nursery = nursery

    async def close(self) -> None:
        """Cancel what still runs (source ``signal``) and wait, bounded, for its Results."""
        for served in list(self._running.values()):
            served.signal.cancel(SHUTTING_DOWN)
        with trio.move_on_after(SHUTDOWN_GRACE, shield=True):
            for served in list(self._running.values()):
                await served.finished.wait()
        self._nursery = None

    # -- executions ---------------------------------------------------------------------------
    def start(
        self,
        make: Callable[[CancelSignal], StreamingExecution[Any]],
        *,
        detached: bool,
    ) -> Served:
        """Start the execution ``make(signal)`` builds; :class:`Busy` when at the limit."""
        if self._nursery is None:
            raise RuntimeError("the server is not running (its lifespan has not started)")
        if len(self._running) >= self.max_running:
            raise Busy
        signal = CancelSignal()
        served = Served(make(signal), signal, detached=detached)
        self._running[served.id] = served
        self._nursery.start_soon(self._run, served)
        if not detached:
            # Nobody may ever connect: the grace applies from the start as well.
            self._nursery.start_soon(self._grace, served, served.left)
        return served

    def get(self, execution_id: str) -> Served | None:
        self._forget_old()
        return self._running.get(execution_id) or self._finished.get(execution_id)

    @property
    def running(self) -> int:
        return len(self._running)

    def listed(self) -> list[Served]:
        """What the server holds: running executions first, then finished ones, newest first."""
        self._forget_old()
        return [*self._running.values(), *reversed(self._finished.values())]

    async def _run(self, served: Served) -> None:
        try:
            await served.execution.result()
        finally:
            self._running.pop(served.id, None)
            served.finished_at = trio.current_time()
            served.finished.set()
            self._finished[served.id] = served
            self._forget_old()

    def _forget_old(self) -> None:
        finished = self._finished
        while len(finished) > self.keep_finished:
            finished.popitem(last=False)
        if not finished:
            return
        horizon = trio.current_time() - self.keep_seconds
        while finished:
            oldest = next(iter(finished.values()))
            if oldest.finished_at is None or oldest.finished_at >= horizon:
                break
            finished.popitem(last=False)

    # -- clients ------------------------------------------------------------------------------
    async def events(
        self, served: Served, after: int, *, idle: float = math.inf
    ) -> AsyncGenerator[list[Event], None]:
        """The execution's events with ``seq > after``, in batches of those ready together,
        counted as one client while iterated.

        An empty batch comes after ``idle`` seconds with no event (for a keep-alive). When
        the last client stops (it went away, or the stream ended), the grace period starts; a
        client that comes back within it keeps the execution alive.
        """
        while not served.execution.started:  # its task was just spawned: it runs next
            await trio.lowlevel.checkpoint()
        served.clients += 1
        stream = served.execution.stream()
        try:
            while True:
                # The scope wraps one plain method call (resumable), never a yield.
                with trio.move_on_after(idle) as waited:
                    try:
                        first = await stream.__anext__()
                    except StopAsyncIteration:
                        return
                if waited.cancelled_caught:
                    yield []
                    continue
                batch = [first]
                while stream.ready and len(batch) < _BATCH:
                    batch.append(await stream.__anext__())
                batch = [event for event in batch if event.metrics.seq > after]
                if batch:
                    yield batch
        finally:
            served.clients -= 1
            if served.clients == 0:
                served.left += 1
                if not served.detached and served.finished_at is None and self._nursery:
                    self._nursery.start_soon(self._grace, served, served.left)
            await stream.aclose()

    async def _grace(self, served: Served, left: int) -> None:
        """Cancel the execution if no client is back ``disconnect_grace`` seconds from now;
        one waiting for a person's decision is left to wait (its own timeouts still apply),
        and the grace starts again once nothing is pending."""
        while True:
            with trio.move_on_after(self.disconnect_grace):
                await served.finished.wait()
                return
            if served.clients != 0 or served.left != left or served.finished_at is not None:
                return
            if not served.execution.pending_approvals and not served.execution.pending_inputs:
                served.signal.cancel(DISCONNECTED)
                return
            async with trio.open_nursery() as nursery:  # until decided, or it ends

                async def end() -> None:
                    await served.finished.wait()
                    nursery.cancel_scope.cancel()

                nursery.start_soon(end)
                await served.execution.approvals_settled()
                nursery.cancel_scope.cancel()
