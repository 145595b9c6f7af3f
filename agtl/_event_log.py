"""The append-only event log of one execution and the iterators that read it.

Every consumer replays from the first event, then follows live ones, and stops when the log
is closed, which the execution does however it ends. With ``max_lag`` set the producer waits
while any consumer is more than ``max_lag`` events behind (backpressure for long streams).
"""

from __future__ import annotations

import weakref
from collections.abc import AsyncIterator

import trio

from agtl.events import Event

# A consumer reading events that are already there yields to the scheduler this often.
_YIELD_EVERY = 64


class EventLog:
    __slots__ = ("_consumers", "_max_lag", "_new", "_room", "closed", "events")

    def __init__(self, max_lag: int | None = None) -> None:
        self.events: list[Event] = []
        self.closed = False
        self._max_lag = max_lag
        # Created on first use: most executions never have a consumer.
        self._new: trio.lowlevel.ParkingLot | None = None  # consumers waiting for events
        self._room: trio.lowlevel.ParkingLot | None = None  # the producer waiting for room
        self._consumers: weakref.WeakSet[EventStream] | None = None

    def append(self, event: Event) -> None:
        self.events.append(event)
        if self._new:
            self._new.unpark_all()

    def close(self) -> None:
        self.closed = True
        if self._new is not None:
            self._new.unpark_all()
        if self._room is not None:
            self._room.unpark_all()

    def stream(self) -> EventStream:
        if self._new is None:
            self._new = trio.lowlevel.ParkingLot()
        stream = EventStream(self)
        if self._max_lag is not None:
            # Only backpressure needs to know the consumers (held weakly, so that one dropped
            # without aclose() stops holding the producer back).
            if self._consumers is None:
                self._consumers = weakref.WeakSet()
                self._room = trio.lowlevel.ParkingLot()
            self._consumers.add(stream)
            weakref.finalize(stream, self._room.unpark_all)  # type: ignore[union-attr]
        return stream

    async def wait_for_room(self) -> None:
        """Block the producer while a consumer lags more than ``max_lag`` events."""
        if self._max_lag is None or self._room is None:
            return
        while not self.closed and self._laggard_exists():
            await self._room.park()

    def _laggard_exists(self) -> bool:
        head = len(self.events)
        assert self._max_lag is not None
        assert self._consumers is not None
        return any(head - c.position > self._max_lag for c in self._consumers if c.attached)

    async def wait_for_events(self) -> None:
        assert self._new is not None
        await self._new.park()

    def _consumed(self) -> None:
        if self._room:
            self._room.unpark_all()


class EventStream(AsyncIterator[Event]):
    """One consumer's view of an execution's events: all of them, from the first."""

    __slots__ = ("__weakref__", "_log", "attached", "position")

    def __init__(self, log: EventLog) -> None:
        self._log = log
        self.position = 0
        self.attached = True

    def __aiter__(self) -> EventStream:
        return self

    @property
    def ready(self) -> int:
        """How many events this consumer can read now without waiting."""
        return len(self._log.events) - self.position

    async def __anext__(self) -> Event:
        log = self._log
        while True:
            if self.position < len(log.events):
                if self.position % _YIELD_EVERY == _YIELD_EVERY - 1:
                    # Replaying a long log must not starve the other tasks of the run.
                    await trio.lowlevel.checkpoint()
                else:
                    await trio.lowlevel.checkpoint_if_cancelled()
                event = log.events[self.position]
                self.position += 1
                log._consumed()
                return event
            if log.closed or not self.attached:
                raise StopAsyncIteration
            await log.wait_for_events()

    async def aclose(self) -> None:
        """Stop consuming: the iterator ends and no longer holds the producer back."""
        self.attached = False
        self._log._consumed()
        await trio.lowlevel.checkpoint()
