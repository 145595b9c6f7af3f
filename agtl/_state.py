"""The mutable bookkeeping of one running execution, frozen into a Summary at the end.

Only the execution's trio run touches it, except ``request_cancel``, which any thread may
call and which is guarded by a lock.
"""

from __future__ import annotations

import datetime as dt
import threading
import time
from collections.abc import Callable, Sequence
from decimal import Decimal
from typing import Any, Final

import attrs
import trio

from agtl._event_log import EventLog
from agtl._trio_thread import call_in_run, current_token
from agtl.backend import CallReport, StopReason
from agtl.events import Event, EventMetrics
from agtl.result import CancelSource
from agtl.summary import CostEntry, ErrorInfo, LLMCallSummary, RecordEntry, Summary, ToolCall
from agtl.usage import Provenance, Usage, estimate_tokens

_NOT_STARTED: Final = dt.datetime.fromtimestamp(0, dt.UTC)
#: Guards cancel requests and freezing. One lock for every execution: it is held for a few
#: instructions, and a lock per execution would cost memory when thousands are alive.
_CANCEL_LOCK: Final = threading.Lock()


@attrs.frozen
class CancelRequest:
    source: CancelSource
    reason: str | None
    at: float | None  # seconds since start; None when requested before the start


@attrs.define
class CallState:
    """One LLM call while it runs."""

    index: int
    provider: str
    model: str
    started_at: float
    text_parts: list[str] = attrs.Factory(list)
    first_token_at: float | None = None
    ended_at: float | None = None
    stop_reason: StopReason | None = None
    error: BaseException | None = None
    report: CallReport | None = None
    cost: Decimal | None = None
    usage: Usage | None = None

    @property
    def text(self) -> str:
        return "".join(self.text_parts)

    @property
    def finished(self) -> bool:
        return self.ended_at is not None

    def settle_usage(self, report: CallReport) -> Usage:
        """The call's usage: the backend's, with output estimated from text if it has none."""
        usage = report.usage
        if usage.output_tokens is None and self.text_parts:
            usage = attrs.evolve(
                usage,
                output_tokens=estimate_tokens(self.text),
                total_tokens=None,
                provenance=usage.provenance.weaker(Provenance.ESTIMATED),
            )
            if usage.input_tokens is not None and usage.output_tokens is not None:
                usage = attrs.evolve(usage, total_tokens=usage.input_tokens + usage.output_tokens)
        return usage

    def freeze(self, now: float) -> LLMCallSummary:
        ended = self.ended_at if self.ended_at is not None else now
        usage = self.usage if self.usage is not None else Usage()
        ttft = None if self.first_token_at is None else self.first_token_at - self.started_at
        tps = None
        out = usage.output_tokens
        if self.first_token_at is not None and out is not None and out > 1:
            decode = ended - self.first_token_at
            if decode > 0:
                tps = (out - 1) / decode
        return LLMCallSummary(
            index=self.index,
            provider=self.provider,
            model=self.model,
            started_at=self.started_at,
            ended_at=ended,
            usage=usage,
            stop_reason=self.stop_reason or StopReason.CANCELLED,
            time_to_first_token=ttft,
            output_tokens_per_second=tps,
            cost=self.cost,
            error=None if self.error is None else ErrorInfo.of(self.error),
            details=dict(self.report.details) if self.report is not None else {},
        )


class ExecutionState:
    """Everything an execution accumulates while it runs."""

    __slots__ = (
        "_applied",
        "_last_event_time",
        "_next_seq",
        "_request",
        "calls",
        "costs",
        "deadlines",
        "execution_id",
        "frozen",
        "hooks",
        "log",
        "metadata",
        "records",
        "scope",
        "start_time",
        "started",
        "started_at",
        "streaming",
        "terminal",
        "token",
        "tool_calls",
    )

    def __init__(self, execution_id: str, *, streaming: bool, max_lag: int | None) -> None:
        self.execution_id = execution_id
        self.streaming = streaming
        self.log = EventLog(max_lag)
        self.calls: list[CallState] = []
        # Made on first use: most executions never record anything, and thousands may be
        # alive at once.
        self.tool_calls: list[ToolCall] | None = None
        self.records: list[RecordEntry] | None = None
        self.costs: list[CostEntry] | None = None
        self.metadata: dict[str, Any] | None = None
        self.hooks: list[Callable[[Any], object]] | None = None
        self.terminal: Event | None = None
        self.started = False
        self.start_time = 0.0
        self.started_at = _NOT_STARTED
        self.scope: trio.CancelScope | None = None
        self.token: trio.lowlevel.TrioToken | None = None
        self.frozen = False
        self._request: CancelRequest | None = None
        self._applied: CancelRequest | None = None
        #: The execution's deadlines (timeout=, signal deadlines), earliest first.
        self.deadlines: Sequence[tuple[float, CancelSource, str | None]] = ()
        self._next_seq = 0
        self._last_event_time: float | None = None

    # -- time -------------------------------------------------------------------------------
    def elapsed(self) -> float:
        return trio.current_time() - self.start_time if self.started else 0.0

    def begin(self, scope: trio.CancelScope) -> None:
        self.started = True
        self.start_time = trio.current_time()
        self.started_at = dt.datetime.now(dt.UTC)
        self.token = trio.lowlevel.current_trio_token()
        self.scope = scope

    # -- cancellation -----------------------------------------------------------------------
    def request_cancel(self, source: CancelSource, reason: str | None) -> None:
        """Ask the execution to stop. Any thread; the first request wins; no-op once frozen."""
        with _CANCEL_LOCK:
            if self.frozen or self._request is not None:
                return
            at = None
            if self.started and self.token is not None:
                at = self.elapsed() if current_token() is self.token else None
            self._request = CancelRequest(source, reason, at)
            token, scope = self.token, self.scope
        if scope is not None and token is not None:
            call_in_run(token, self.apply_cancel)

    def apply_cancel(self) -> None:
        """On the trio run: turn a pending request into a cancel of our scope."""
        scope, request = self.scope, self._request
        if scope is None or request is None or self.frozen or self._applied is not None:
            return
        if scope.cancel_called:
            return  # a deadline or the terminal event got there first
        if request.at is None:
            request = attrs.evolve(request, at=self.elapsed())
        self._applied = request
        scope.cancel(request.reason or request.source.value)

    @property
    def cancel_reason(self) -> str | None:
        """Why the execution is being cancelled: the request's reason, or a passed deadline's."""
        if self._request is not None:
            return self._request.reason or self._request.source.value
        now = trio.current_time()
        for deadline, _source, reason in self.deadlines:
            if deadline <= now:
                return reason
        return None

    @property
    def cancel_requested(self) -> bool:
        return self._request is not None

    @property
    def applied_cancel(self) -> CancelRequest | None:
        return self._applied

    def freeze(self) -> None:
        with _CANCEL_LOCK:
            self.frozen = True

    # -- events -----------------------------------------------------------------------------
    def make_event(self, type_: str, data: Any) -> Event:
        now = self.elapsed()
        previous = 0.0 if self._last_event_time is None else self._last_event_time
        metrics = EventMetrics(time.time(), now, now - previous, self._next_seq)
        self._next_seq += 1
        self._last_event_time = now
        return Event(type_, data, metrics)

    def is_decided(self) -> bool:
        """True once a terminal event was delivered."""
        return self.terminal is not None

    def deliver(self, event: Event) -> None:
        """Publish an event to the log (and so to every consumer)."""
        if self.frozen:
            return
        self.log.append(event)
        if event.is_terminal and self.terminal is None:
            self.terminal = event
            # Auto-abort: nothing may run or be paid for after the terminal event.
            if self.scope is not None:
                self.scope.cancel("terminal event delivered")

    # -- calls ------------------------------------------------------------------------------
    def new_call(self, provider: str, model: str) -> CallState:
        call = CallState(len(self.calls), provider, model, self.elapsed())
        self.calls.append(call)
        return call

    def usage_and_cost(self) -> tuple[Usage, Decimal | None]:
        settled = [call for call in self.calls if call.usage is not None]
        usage = Usage.sum(call.usage for call in settled if call.usage is not None)
        costs = [call.cost for call in settled]
        cost = None if None in costs else sum((c for c in costs if c is not None), Decimal(0))
        return usage, cost

    # -- freezing ---------------------------------------------------------------------------
    def summary(self, end: float) -> Summary:
        return Summary(
            execution_id=self.execution_id,
            started_at=self.started_at,
            duration=max(0.0, end),
            llm_calls=tuple(call.freeze(end) for call in self.calls),
            tool_calls=tuple(self.tool_calls or ()),
            records=tuple(self.records or ()),
            additional_costs=tuple(self.costs or ()),
            metadata=dict(self.metadata or {}),
        )
