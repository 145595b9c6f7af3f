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

import math
import time
from typing import Any, Final

import attrs
import trio

from agtl.backend import (
    CallReport,
    GenerationRequest,
    GenerationStream,
    StartGeneration,
    rate_limit_listener,
)
from agtl.errors import InvalidArgumentError, RateLimitError
from agtl.usage import Provenance, Usage
from agtl.validation import check_count

__all__ = ["SharedLimits"]

#: The window of the per-minute limits (seconds; tests and benchmarks shorten it).
WINDOW = 60.0
#: A 429 without a retry hint pauses admission this long.
DEFAULT_PAUSE: Final = 1.0


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
        self._requests = None if requests_per_minute is None else _Window(requests_per_minute)
        self._tokens = None if tokens_per_minute is None else _Window(tokens_per_minute)
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

    async def admit(self, holder: object, tokens: int) -> _Ticket:
        """Wait for this call's turn (first come, first served; cancellable)."""
        if not self._queue.locked() and self._fits(tokens):
            # Nobody waits and there is room: no lock, no checkpoint (the hot path).
            try:
                self._slots.acquire_on_behalf_of_nowait(holder)
            except trio.WouldBlock:
                pass
            else:
                return self._ticket(tokens)
        self.waiting += 1
        try:
            async with self._queue:
                await self._pause()
                await self._slots.acquire_on_behalf_of(holder)
                try:
                    if self._requests is not None:
                        await self._requests.wait_for_room(1)
                    if self._tokens is not None:
                        await self._tokens.wait_for_room(tokens)
                except BaseException:
                    self._slots.release_on_behalf_of(holder)
                    raise
                return self._ticket(tokens)
        finally:
            self.waiting -= 1

    def _fits(self, tokens: int) -> bool:
        now = time.monotonic()
        return (
            self._paused_until <= now
            and (self._requests is None or self._requests.room(1, now) is None)
            and (self._tokens is None or self._tokens.room(tokens, now) is None)
        )

    def _ticket(self, tokens: int) -> _Ticket:
        return _Ticket(
            None if self._requests is None else self._requests.take(1),
            None if self._tokens is None else self._tokens.take(tokens),
        )

    def settle(self, ticket: _Ticket, tokens: float | None = None) -> None:
        """A call's request reached the server (and, with ``tokens``, the call ended having
        used that many): its window entries count from now."""
        if ticket.request is not None and self._requests is not None:
            self._requests.settle(ticket.request)
        if tokens is not None and ticket.tokens is not None and self._tokens is not None:
            self._tokens.settle(ticket.tokens, tokens)

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

    async def _pause(self) -> None:
        """Wait out a pause a 429 started (it may grow while waiting)."""
        while True:
            left = self._paused_until - time.monotonic()
            if left <= 0:
                return
            await trio.sleep(left)


@attrs.define
class _Ticket:
    """An admitted call's entries in the per-minute windows (settled as it goes)."""

    request: _Entry | None
    tokens: _Entry | None


class _Entry:
    """One call in a window: when it counts from (``inf`` while it runs) and how much."""

    __slots__ = ("at", "weight")

    def __init__(self, weight: float) -> None:
        self.at = math.inf
        self.weight = weight


class _Window:
    """A sliding per-minute window of calls (or of their tokens).

    A call counts from the moment the server surely counted it too, not from its admission:
    its request from its first output (or its end), its tokens from its end, with what it
    really used. Until then it counts as taking room now, so the window never lets through
    more than the server will, however late the request reaches the server.
    """

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._entries: list[_Entry] = []
        self._settled = trio.Event()

    def room(self, weight: float, now: float) -> float | None:
        """``None`` if ``weight`` fits now; else the seconds until it may (``inf``: until a
        running call settles)."""
        entries = self._entries = [e for e in self._entries if e.at > now - WINDOW]
        if not entries or sum(e.weight for e in entries) + weight <= self.limit:
            return None  # a call larger than the whole budget goes alone
        settled = [e.at for e in entries if e.at != math.inf]
        return min(settled) + WINDOW - now if settled else math.inf

    def take(self, weight: float) -> _Entry:
        entry = _Entry(weight)
        self._entries.append(entry)
        return entry

    def settle(self, entry: _Entry, weight: float | None = None) -> None:
        if entry.at == math.inf:
            entry.at = time.monotonic()
            if weight is not None:
                entry.weight = weight
            self._settled.set()
            self._settled = trio.Event()

    async def wait_for_room(self, weight: float) -> None:
        while (left := self.room(weight, time.monotonic())) is not None:
            settled = self._settled
            with trio.move_on_after(left):
                await settled.wait()


class _Admitted(GenerationStream):
    """A call that waits for admission at its first read, then runs the backend's stream."""

    def __init__(self, limits: SharedLimits, start: StartGeneration, request: GenerationRequest):
        self._limits = limits
        self._start = start
        self._request = request
        self._inner: GenerationStream | None = None
        self._ticket: _Ticket | None = None
        self._queue_wait = 0.0
        self._ended_well = False
        self._reported = False
        self._flowing = False  # past the first output: nothing to watch for

    async def next_delta(self) -> str | None:
        if self._ticket is None:
            asked = time.monotonic()
            try:
                self._ticket = await self._limits.admit(self, _estimate(self._request))
            finally:  # a wait a cancel ended is recorded too
                self._queue_wait = time.monotonic() - asked
        if self._flowing:
            delta = await self._inner.next_delta()  # type: ignore[union-attr]
        else:
            delta = await self._first()
        if delta is None:
            self._ended_well = True
        return delta

    async def _first(self) -> str | None:
        """The first read: a 429 (the backend reports it) slows every call down."""
        assert self._ticket is not None
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
        self._flowing = True
        self._limits.settle(self._ticket)  # the server has counted the request by now
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
            ticket, self._ticket = self._ticket, None
            if ticket is not None:
                used = 0.0  # nothing reached the model
                if self._inner is not None and ticket.tokens is not None:
                    usage = self._inner.report().usage
                    used = float((usage.input_tokens or 0) + (usage.output_tokens or 0))
                self._limits.settle(ticket, used)
                self._limits.release(self, ended_well=self._ended_well)


def _estimate(request: GenerationRequest) -> int:
    """A call's tokens before it runs: its prompt (about four characters a token) and the
    output it may produce."""
    prompt = sum(len(m.content) // 4 + 4 for m in request.messages)
    return prompt + (request.options.max_tokens or 0)
