"""An ordered fallback chain of backends, with a circuit breaker for each.

A call goes to the first backend whose breaker lets it through. If that attempt fails before
its first output with an error worth another backend (by default: a retryable one, such as
a refused connection, a 5xx, a 429 the backend would have to wait out longer than
``max_wait``), or gives no output within ``first_token_timeout``, the same request goes to
the next one. Once output has come, the call stays with that backend: the text is already
the user's, and a later error is the call's. Every attempt is kept in the call's
``details["attempts"]`` (backend, model, outcome, error, seconds, usage, cost), and the
call's usage and cost are the sums over its attempts, each priced by its own backend.

A breaker opens after ``failures`` attempts in a row that failed; an open backend is passed
over for ``cooldown`` seconds, then one call probes it (half-open): a success closes it, a
failure opens it again. When every breaker is open the chain tries its backends anyway, in
order, rather than fail a call without trying. State changes are logged.
"""

from __future__ import annotations

import enum
import math
import threading
import time
from collections.abc import Callable, Sequence

import attrs
import trio

from agtl._attempts import AttemptLog, Candidate, describe
from agtl._logging import default_logger
from agtl.backend import CallReport, GenerationRequest, GenerationStream, retry_wait_limit
from agtl.errors import FirstTokenTimeoutError, LLMError, ProviderError

__all__ = ["BreakerState", "Chain", "Health"]


class BreakerState(enum.StrEnum):
    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"


@attrs.frozen
class Health:
    """A backend of a fallback chain as its breaker sees it now."""

    provider: str
    state: BreakerState
    #: Failed attempts in a row.
    failures: int
    #: Seconds until an open breaker lets a probe through (``None`` unless open).
    retry_in: float | None = None


class _Breaker:
    def __init__(self, name: str, failures: int, cooldown: float) -> None:
        self.name = name
        self.limit = failures
        self.cooldown = cooldown
        self.state = BreakerState.CLOSED
        self.failures = 0
        self.opened_at = 0.0
        self.probing = False

    def admits(self, now: float) -> bool:
        if self.state is BreakerState.CLOSED:
            return True
        if self.state is BreakerState.OPEN and now >= self.opened_at + self.cooldown:
            self._move(BreakerState.HALF_OPEN)
        if self.state is BreakerState.HALF_OPEN and not self.probing:
            self.probing = True  # one probe at a time
            return True
        return False

    def succeeded(self) -> None:
        self.failures = 0
        self.probing = False
        if self.state is not BreakerState.CLOSED:
            self._move(BreakerState.CLOSED)

    def failed(self, now: float) -> None:
        self.failures += 1
        self.probing = False
        if self.state is BreakerState.HALF_OPEN or (
            self.state is BreakerState.CLOSED and self.failures >= self.limit
        ):
            self.opened_at = now
            self._move(BreakerState.OPEN)

    def settle_probe(self) -> None:
        """A probe that ended with neither verdict (a cancel): let the next call probe."""
        self.probing = False

    def health(self, now: float) -> Health:
        retry_in = None
        if self.state is BreakerState.OPEN:
            retry_in = max(0.0, self.opened_at + self.cooldown - now)
        return Health(self.name, self.state, self.failures, retry_in)

    def _move(self, state: BreakerState) -> None:
        default_logger().info(
            "provider.breaker", provider=self.name, state=state.value, failures=self.failures
        )
        self.state = state


class Chain:
    """The backends of a fallback provider, in order, with their breakers (shared by the
    provider's ``with_*`` copies)."""

    def __init__(
        self,
        candidates: Sequence[Candidate],
        *,
        on: Callable[[LLMError], bool],
        first_token_timeout: float | None,
        max_wait: float,
        failures: int,
        cooldown: float,
    ) -> None:
        self.candidates = tuple(candidates)
        self.on = on
        self.first_token_timeout = first_token_timeout
        self.max_wait = max_wait
        self._breakers = [_Breaker(c.name, failures, cooldown) for c in candidates]
        self._lock = threading.Lock()

    async def start(self, request: GenerationRequest) -> GenerationStream:
        return _ChainStream(self, request)

    def health(self) -> tuple[Health, ...]:
        now = time.monotonic()
        with self._lock:
            return tuple(b.health(now) for b in self._breakers)

    def admits(self, index: int) -> bool:
        """Whether backend ``index``'s breaker lets a call through now (a half-open one lets
        one probe through at a time)."""
        with self._lock:
            return self._breakers[index].admits(time.monotonic())

    def verdict(self, index: int, *, ok: bool | None) -> None:
        with self._lock:
            breaker = self._breakers[index]
            if ok is None:
                breaker.settle_probe()
            elif ok:
                breaker.succeeded()
            else:
                breaker.failed(time.monotonic())


class _ChainStream(GenerationStream):
    def __init__(self, chain: Chain, request: GenerationRequest) -> None:
        self._chain = chain
        self._log = AttemptLog(chain.candidates, request)
        self._live: GenerationStream | None = None
        self._live_index = -1
        self._live_started = 0.0
        self._trying: GenerationStream | None = None
        self._last: LLMError | None = None

    async def next_delta(self) -> str | None:
        if self._live is not None:
            return await self._live.next_delta()
        return await self._first()

    async def _first(self) -> str | None:
        chain = self._chain
        passed_over = []
        for index in range(len(chain.candidates)):
            if not chain.admits(index):
                passed_over.append(index)
                continue
            answered, delta = await self._attempt(index)
            if answered:
                return delta
        if len(passed_over) == len(chain.candidates):
            # Every breaker is open: try them all anyway rather than fail untried.
            for index in passed_over:
                answered, delta = await self._attempt(index)
                if answered:
                    return delta
        if self._last is not None:  # the last attempt's error: the chain is exhausted
            raise self._last
        raise ProviderError("the fallback chain has no provider to try", provider="fallback")

    async def _attempt(self, index: int) -> tuple[bool, str | None]:
        """Try backend ``index``: (whether it gave its first output, that output). An error
        the chain does not fall back on is raised."""
        chain = self._chain
        started = time.monotonic()
        # With another provider after this one, its backend does not wait long to retry.
        last = index == len(chain.candidates) - 1
        waiting = retry_wait_limit.set(None if last else chain.max_wait)
        outcome, error = "error", None
        try:
            request = self._log.request_for(index)
            self._trying = stream = await chain.candidates[index].start(request)
            with trio.move_on_after(chain.first_token_timeout or math.inf) as scope:
                delta = await stream.next_delta()
            if not scope.cancelled_caught:
                chain.verdict(index, ok=True)
                self._live, self._live_index, self._live_started = stream, index, started
                self._trying = None
                return True, delta
            outcome = "timeout"
            timeout = FirstTokenTimeoutError(chain.first_token_timeout or 0.0)
            self._last, error = timeout, describe(timeout)
        except LLMError as exc:
            if not chain.on(exc):
                chain.verdict(index, ok=None)
                await self._close_trying(index, started, "error", describe(exc))
                raise
            self._last, error = exc, describe(exc)
        except BaseException:
            chain.verdict(index, ok=None)
            await self._close_trying(index, started, "cancelled", None)
            raise
        finally:
            retry_wait_limit.reset(waiting)
        chain.verdict(index, ok=False)
        await self._close_trying(index, started, outcome, error)
        return False, None

    async def _close_trying(
        self, index: int, started: float, outcome: str, error: str | None
    ) -> None:
        stream, self._trying = self._trying, None
        await self._log.close(stream, index, started, outcome, error)

    def report(self) -> CallReport:
        return self._log.report(self._live, self._live_index, self._live_started)

    async def aclose(self) -> None:
        try:
            if self._trying is not None:
                await self._trying.aclose()
        finally:
            if self._live is not None:
                await self._live.aclose()
