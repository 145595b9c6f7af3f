"""Limits a provider shares with every execution that uses it: concurrency, requests and
tokens per minute, and a pause when the server says "too many requests".

``provider.with_limits(...)`` makes one :class:`SharedLimits` and hands it down with the
provider's configuration, so the provider and all its ``with_*`` copies admit their calls
through it. A call waits for admission lazily, at its first read, like the local model's
queue: the wait is inside the call, so every cancel source and the call's own deadlines
(``first_token_timeout``, ``timeout``) reach it, and the call's ``queue_wait`` records it.
Admission is first come, first served (one FIFO lock). A 429 that a backend reports
(:func:`agtl.backend.report_rate_limit`) pauses every admission for its ``retry-after`` and
halves the concurrency in use; each run of that many calls that end well adds one back, up
to ``max_concurrent`` (additive increase, multiplicative decrease).
"""

from __future__ import annotations

import collections
import math
import time
from collections.abc import Awaitable, Callable
from typing import Any, Final

import trio

from agtl.backend import (
    CallReport,
    GenerationRequest,
    GenerationStream,
    rate_limit_listener,
)
from agtl.errors import InvalidArgumentError, RateLimitError
from agtl.usage import Provenance, Usage
from agtl.validation import check_count

__all__ = ["SharedLimits", "StartGeneration"]

#: The window of the per-minute limits.
WINDOW: Final = 60.0
#: A 429 without a retry hint pauses admission this long.
DEFAULT_PAUSE: Final = 1.0

StartGeneration = Callable[[GenerationRequest], Awaitable[GenerationStream]]


class SharedLimits:
    """What a provider's calls may do at once, shared by all its executions (read-only view:
    ``provider.limits``)."""

    def __init__(
        self,
        *,
        max_concurrent: int | None = None,
        requests_per_minute: int | None = None,
        tokens_per_minute: int | None = None,
    ) -> None:
        given = {
            "max_concurrent": max_concurrent,
            "requests_per_minute": requests_per_minute,
            "tokens_per_minute": tokens_per_minute,
        }
        for name, value in given.items():
            if value is not None:
                check_count(name, value, minimum=1)
        if all(value is None for value in given.values()):
            raise InvalidArgumentError(
                "max_concurrent",
                "give at least one limit: max_concurrent, requests_per_minute or tokens_per_minute",
            )
        self.max_concurrent = max_concurrent
        self.requests_per_minute = requests_per_minute
        self.tokens_per_minute = tokens_per_minute
        self._queue = trio.Lock()  # FIFO: admission in the order calls asked
        self._slots = trio.CapacityLimiter(max_concurrent or math.inf)
        self._level = max_concurrent  # the concurrency in use (AIMD)
        self._good_runs = 0
        self._starts: collections.deque[float] = collections.deque()
        self._tokens: collections.deque[list[float]] = collections.deque()  # [when, tokens]
        self._paused_until = 0.0
        self.waiting = 0
        self.rate_limited = 0

    # -- the view ---------------------------------------------------------------------------
    @property
    def concurrency(self) -> int | None:
        """How many calls may run at once now (lower than ``max_concurrent`` after 429s)."""
        return self._level

    @property
    def in_flight(self) -> int:
        """Calls admitted and not yet ended."""
        return int(self._slots.borrowed_tokens)

    @property
    def paused_for(self) -> float:
        """Seconds left of a pause a 429 started (0 when none)."""
        return max(0.0, self._paused_until - time.monotonic())

    def __repr__(self) -> str:
        return (
            f"SharedLimits(max_concurrent={self.max_concurrent}, "
            f"requests_per_minute={self.requests_per_minute}, "
            f"tokens_per_minute={self.tokens_per_minute}, concurrency={self._level}, "
            f"in_flight={self.in_flight}, waiting={self.waiting})"
        )

    # -- admission --------------------------------------------------------------------------
    def wrap(self, start: StartGeneration) -> StartGeneration:
        """``start_generation`` with admission in front of the call's first read."""

        async def start_generation(request: GenerationRequest) -> GenerationStream:
            return _Admitted(self, start, request)

        return start_generation

    async def admit(self, holder: object, tokens: int) -> list[float] | None:
        """Wait for this call's turn (FIFO; cancellable); its token record, if counted."""
        self.waiting += 1
        try:
            async with self._queue:
                await self._pause()
                await self._slots.acquire_on_behalf_of(holder)
                try:
                    if self.requests_per_minute is not None:
                        await self._window(self._starts, self.requests_per_minute)
                    record = None
                    if self.tokens_per_minute is not None:
                        await self._token_room(tokens)
                        record = [time.monotonic(), float(tokens)]
                        self._tokens.append(record)
                    if self.requests_per_minute is not None:
                        self._starts.append(time.monotonic())
                except BaseException:
                    self._slots.release_on_behalf_of(holder)
                    raise
                return record
        finally:
            self.waiting -= 1

    def release(self, holder: object, *, ended_well: bool) -> None:
        """The call ended: its slot is free; a run of good calls raises the concurrency."""
        self._slots.release_on_behalf_of(holder)
        if ended_well and self._level is not None and self.max_concurrent is not None:
            self._good_runs += 1
            if self._good_runs >= self._level and self._level < self.max_concurrent:
                self._good_runs = 0
                self._set_level(self._level + 1)

    def on_rate_limited(self, retry_after: float | None) -> None:
        """The server said 429: pause every admission and halve the concurrency."""
        self.rate_limited += 1
        pause = DEFAULT_PAUSE if retry_after is None else retry_after
        self._paused_until = max(self._paused_until, time.monotonic() + pause)
        if self._level is not None:
            self._good_runs = 0
            self._set_level(max(1, self._level // 2))

    def _set_level(self, level: int) -> None:
        self._level = level
        self._slots.total_tokens = level

    async def _window(self, starts: collections.deque[float], limit: int) -> None:
        while True:
            now = time.monotonic()
            while starts and starts[0] <= now - WINDOW:
                starts.popleft()
            if len(starts) < limit:
                return
            await trio.sleep(starts[0] + WINDOW - now)

    async def _token_room(self, tokens: int) -> None:
        limit = self.tokens_per_minute or 0
        while True:
            now = time.monotonic()
            while self._tokens and self._tokens[0][0] <= now - WINDOW:
                self._tokens.popleft()
            used = sum(t for _, t in self._tokens)
            # A call larger than the whole budget goes alone, when the window is empty.
            if not self._tokens or used + tokens <= limit:
                return
            await trio.sleep(self._tokens[0][0] + WINDOW - now)

    async def _pause(self) -> None:
        """Wait out a pause a 429 started (it may grow while waiting)."""
        while True:
            left = self._paused_until - time.monotonic()
            if left <= 0:
                return
            await trio.sleep(left)


class _Admitted(GenerationStream):
    """A call that waits for admission at its first read, then runs the backend's stream."""

    def __init__(self, limits: SharedLimits, start: StartGeneration, request: GenerationRequest):
        self._limits = limits
        self._start = start
        self._request = request
        self._inner: GenerationStream | None = None
        self._admitted = False
        self._record: list[float] | None = None
        self._queue_wait = 0.0
        self._ended_well = False
        self._reported = False

    async def next_delta(self) -> str | None:
        if not self._admitted:
            asked = time.monotonic()
            try:
                self._record = await self._limits.admit(self, _estimate(self._request))
                self._admitted = True
            finally:  # a wait a cancel ended is recorded too
                self._queue_wait = time.monotonic() - asked
        self._reported = False
        listening = rate_limit_listener.set(self._heard)
        try:
            if self._inner is None:
                self._inner = await self._start(self._request)
            delta = await self._inner.next_delta()
        except RateLimitError as error:
            if not self._reported:
                self._heard(error.retry_after)
            raise
        finally:
            rate_limit_listener.reset(listening)
        if delta is None:
            self._ended_well = True
        return delta

    def _heard(self, retry_after: float | None) -> None:
        self._reported = True
        self._limits.on_rate_limited(retry_after)

    def report(self) -> CallReport:
        if self._inner is None:
            # Nothing reached the model: cancelled or timed out while queued.
            report = CallReport(Usage(0, 0, provenance=Provenance.COUNTED), None, None, {})
        else:
            report = self._inner.report()
        details: dict[str, Any] = {**report.details, "queue_wait": self._queue_wait}
        return CallReport(
            report.usage, report.stop_reason, report.model, details, tool_calls=report.tool_calls
        )

    async def aclose(self) -> None:
        try:
            if self._inner is not None:
                await self._inner.aclose()
        finally:
            if self._admitted:
                self._admitted = False
                if self._record is not None and self._inner is not None:
                    usage = self._inner.report().usage
                    self._record[1] = float((usage.input_tokens or 0) + (usage.output_tokens or 0))
                self._limits.release(self, ended_well=self._ended_well)


def _estimate(request: GenerationRequest) -> int:
    """A call's tokens before it runs: its prompt (about four characters a token) and the
    output it may produce."""
    prompt = sum(len(m.content) // 4 + 4 for m in request.messages)
    return prompt + (request.options.max_tokens or 0)
