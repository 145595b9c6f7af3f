"""A hedged call: when the first backend has given no output after ``after`` seconds, the
same request also goes to a second one; the first to give output wins.

Both attempts run in a nursery inside the call's first read, so they are children of the
call: a cancel of the call (any source) reaches both. The moment one gives its first output,
the other is cancelled and closed, and kept in the call's ``details["attempts"]`` as
``lost`` with what it used and cost. An attempt that fails before its first output leaves
the race to the other (the second starts at once if it had not yet); if both fail, the
first one's error is the call's.

``after="p95"`` hedges at the 95th percentile of the first backend's time to first output
over the last ``WINDOW`` calls that went through this hedge (a call the hedge won counts with
the time the first backend had taken by then, a lower bound); until ``MINIMUM`` are known,
it hedges after ``DEFAULT_AFTER`` seconds.
"""

from __future__ import annotations

import collections
import math
import threading
import time
from typing import Final

import trio

from agtl._attempts import AttemptLog, Candidate, describe
from agtl._groups import raise_collapsed
from agtl.backend import CallReport, GenerationRequest, GenerationStream
from agtl.errors import LLMError

__all__ = ["DEFAULT_AFTER", "MINIMUM", "WINDOW", "Hedge"]

WINDOW: Final = 100
MINIMUM: Final = 20
DEFAULT_AFTER: Final = 1.0


class Hedge:
    """Two backends and when to send the second request (shared by a provider's copies)."""

    def __init__(self, first: Candidate, second: Candidate, after: float | None) -> None:
        self.candidates = (first, second)
        self.fixed_after = after  # None: the first backend's observed p95
        self._seen: collections.deque[float] = collections.deque(maxlen=WINDOW)
        self._lock = threading.Lock()

    @property
    def after(self) -> float:
        """Seconds without output before the second request starts, now."""
        if self.fixed_after is not None:
            return self.fixed_after
        with self._lock:
            seen = sorted(self._seen)
        if len(seen) < MINIMUM:
            return DEFAULT_AFTER
        return seen[min(len(seen) - 1, math.ceil(0.95 * len(seen)) - 1)]

    def observe(self, seconds: float) -> None:
        with self._lock:
            self._seen.append(seconds)

    async def start(self, request: GenerationRequest) -> GenerationStream:
        return _HedgedStream(self, request)


class _HedgedStream(GenerationStream):
    def __init__(self, hedge: Hedge, request: GenerationRequest) -> None:
        self._hedge = hedge
        self._log = AttemptLog(hedge.candidates, request)
        self._live: GenerationStream | None = None
        self._live_index = -1
        self._live_started = 0.0

    async def next_delta(self) -> str | None:
        if self._live is not None:
            return await self._live.next_delta()
        return await self._race()

    async def _race(self) -> str | None:
        hedge, log = self._hedge, self._log
        after = hedge.after
        streams: dict[int, tuple[GenerationStream, float]] = {}
        errors: dict[int, LLMError] = {}
        won: list[tuple[int, str | None]] = []
        first_failed = trio.Event()
        began = time.monotonic()

        async def attempt(index: int, nursery: trio.Nursery) -> None:
            started = time.monotonic()
            try:
                stream = await hedge.candidates[index].start(log.request_for(index))
                streams[index] = (stream, started)
                delta = await stream.next_delta()
            except LLMError as error:
                errors[index] = error
                if index == 0:
                    first_failed.set()
                return
            if not won:
                won.append((index, delta))
                nursery.cancel_scope.cancel()  # the other one lost

        async def second(nursery: trio.Nursery) -> None:
            with trio.move_on_after(after):
                await first_failed.wait()
            await attempt(1, nursery)

        try:
            try:
                async with trio.open_nursery() as nursery:
                    nursery.start_soon(attempt, 0, nursery)
                    nursery.start_soon(second, nursery)
            except BaseExceptionGroup as group:  # a cancel of the call, or a bug
                raise_collapsed(group)
        except BaseException:
            # The call is being cancelled: every attempt ends here, a winner's too (its first
            # output never reached the user).
            await self._close(streams, errors, began, winner=None)
            raise
        await self._close(streams, errors, began, winner=won[0][0] if won else None)
        if not won:
            raise errors.get(0) or errors[1]
        index, delta = won[0]
        if 0 not in errors:  # the first backend's time to output (a lower bound if it lost)
            hedge.observe(time.monotonic() - began)
        self._live, self._live_started = streams[index]
        self._live_index = index
        return delta

    async def _close(
        self,
        streams: dict[int, tuple[GenerationStream, float]],
        errors: dict[int, LLMError],
        began: float,
        *,
        winner: int | None,
    ) -> None:
        """Close and keep every attempt but the winner: an error, ``lost`` to the winner, or
        ``cancelled`` with the call."""
        for index, (stream, started) in sorted(streams.items()):
            if index == winner:
                continue
            error = describe(errors[index]) if index in errors else None
            outcome = "error" if error else "lost" if winner is not None else "cancelled"
            await self._log.close(stream, index, started, outcome, error)
        for index in sorted(errors.keys() - streams.keys()):  # failed to start at all
            await self._log.close(None, index, began, "error", describe(errors[index]))

    def report(self) -> CallReport:
        return self._log.report(self._live, self._live_index, self._live_started)

    async def aclose(self) -> None:
        if self._live is not None:
            await self._live.aclose()
