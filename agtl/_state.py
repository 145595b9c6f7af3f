"""The mutable bookkeeping of one running execution, frozen into a Summary at the end.

Only the execution's trio run touches it. Why the execution is cancelled is not kept here:
:mod:`agtl._cancel` owns that.
"""

from __future__ import annotations

import contextvars
import datetime as dt
import time
from collections.abc import Callable
from decimal import Decimal
from typing import Any, Final

import attrs
import trio

from agtl._approvals import ApprovalDesk
from agtl._cancel import Cancellation
from agtl._event_log import EventLog
from agtl._groups import is_cancellation
from agtl._observe import NO_TRACE, Trace
from agtl._vocabulary import StopReason
from agtl.backend import CallReport
from agtl.events import Event, EventMetrics
from agtl.summary import (
    ChildSummary,
    CostEntry,
    ErrorInfo,
    GuardrailRecord,
    LLMCallSummary,
    RecordEntry,
    Summary,
    ToolCall,
)
from agtl.usage import Provenance, Usage, estimate_tokens_of_length

_NOT_STARTED: Final = dt.datetime.fromtimestamp(0, dt.UTC)
#: The agent whose calls run in this context (``Agent.run`` sets it): its name goes on every
#: LLM-call record and tool-loop step made meanwhile.
current_agent: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "agtl_current_agent", default=None
)
#: The guardrail whose check runs in this context: its name goes on the LLM calls it makes.
current_guardrail: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "agtl_current_guardrail", default=None
)
#: The agents from the root execution's down to the current one ("planner", "researcher").
agent_path: contextvars.ContextVar[tuple[str, ...]] = contextvars.ContextVar(
    "agtl_agent_path", default=()
)


@attrs.define
class CallState:
    """One LLM call while it runs, and the arithmetic that settles it when it ends."""

    index: int
    provider: str
    model: str
    started_at: float
    #: The request's ``max_tokens``: an estimated output never exceeds it on a length stop.
    max_tokens: int | None = None
    text_parts: list[str] = attrs.Factory(list)
    chars: int = 0  # the length of the text so far, kept as it streams
    first_token_at: float | None = None
    ended_at: float | None = None
    stop_reason: StopReason | None = None
    error: BaseException | None = None
    report: CallReport | None = None
    cost: Decimal | None = None
    usage: Usage | None = None
    #: It ended by itself, yet the execution stops at it (its usage crossed a budget, or a
    #: soft stop landed at its end): its text is kept in the partial, never lost.
    kept: bool = False
    #: This call's telemetry (``NO_TRACE`` when no observer is installed).
    trace: Trace = NO_TRACE
    #: The agent that made it, if an agent did.
    agent: str | None = None
    #: The guardrail that made it (an LLM judge), if one did.
    guardrail: str | None = None
    #: ``stream_object``: the last partial object parsed from its text (JSON values).
    partial_object: Any = None

    @property
    def text(self) -> str:
        return "".join(self.text_parts)

    @property
    def finished(self) -> bool:
        return self.ended_at is not None

    @property
    def time_to_first_token(self) -> float | None:
        return None if self.first_token_at is None else self.first_token_at - self.started_at

    def end(
        self, report: CallReport, exc: BaseException | None, *, abandoned: bool, at: float
    ) -> None:
        """Record how the call ended: normally, stopped (cancelled or left early), or failed."""
        self.report = report
        self.ended_at = at
        if exc is None and not abandoned:
            self.stop_reason = report.stop_reason or StopReason.EOS
        elif exc is None or is_cancellation(exc):
            self.stop_reason = StopReason.CANCELLED
        else:
            self.stop_reason = StopReason.ERROR
            self.error = exc

    def settle(self, cost_of: Callable[[str, Usage], Decimal | None]) -> None:
        """Usage (estimated where the backend gave none), cost, and the model that answered."""
        assert self.report is not None, "settle() before end()"
        self.usage = self.settle_usage(self.report)
        self.cost = self.report.cost if self.report.priced else cost_of(self.model, self.usage)
        if self.report.model:
            self.model = self.report.model

    @property
    def completed(self) -> bool:
        """Ended by itself (not cancelled, not failed): it has a TextResult."""
        return self.stop_reason not in (None, StopReason.CANCELLED, StopReason.ERROR)

    def add_text(self, delta: str) -> None:
        self.text_parts.append(delta)
        self.chars += len(delta)

    def estimated_output(self) -> int:
        """The output tokens estimated from the text, never more than a length stop allows."""
        estimate = estimate_tokens_of_length(self.chars)
        if self.max_tokens is not None and self.stop_reason is StopReason.LENGTH:
            estimate = min(estimate, self.max_tokens)
        return estimate

    def running_usage(self, report: CallReport, input_estimate: int) -> Usage:
        """Usage while the call streams: the backend's figures, estimated where it has none."""
        usage = report.usage
        if usage.output_tokens is not None and usage.input_tokens is not None:
            return usage
        return Usage(
            input_tokens=input_estimate if usage.input_tokens is None else usage.input_tokens,
            output_tokens=(
                estimate_tokens_of_length(self.chars)
                if usage.output_tokens is None
                else usage.output_tokens
            ),
            cached_input_tokens=usage.cached_input_tokens,
            provenance=Provenance.ESTIMATED,
        )

    def settle_usage(self, report: CallReport) -> Usage:
        """The call's usage: the backend's, with output estimated from text if it has none."""
        usage = report.usage
        if usage.output_tokens is None and self.text_parts:
            usage = attrs.evolve(
                usage,
                output_tokens=self.estimated_output(),
                total_tokens=None,
                provenance=usage.provenance.weaker(Provenance.ESTIMATED),
            )
            if usage.input_tokens is not None and usage.output_tokens is not None:
                usage = attrs.evolve(usage, total_tokens=usage.input_tokens + usage.output_tokens)
        return usage

    def freeze(self, now: float) -> LLMCallSummary:
        ended = self.ended_at if self.ended_at is not None else now
        usage = self.usage if self.usage is not None else Usage()
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
            time_to_first_token=self.time_to_first_token,
            output_tokens_per_second=tps,
            cost=self.cost,
            error=None if self.error is None else ErrorInfo.of(self.error),
            details=self._details(),
        )

    def _details(self) -> dict[str, object]:
        details = dict(self.report.details) if self.report is not None else {}
        if self.agent is not None:
            details["agent"] = self.agent
        if self.guardrail is not None:
            details["guardrail"] = self.guardrail
        return details


class ExecutionState:
    """Everything an execution accumulates while it runs."""

    __slots__ = (
        "_cancellation",
        "_last_event_time",
        "_next_seq",
        "approvals",
        "calls",
        "children",
        "costs",
        "execution_id",
        "frozen",
        "guardrails",
        "hooks",
        "log",
        "metadata",
        "parent_id",
        "records",
        "shares_desk",
        "start_time",
        "started_at",
        "streaming",
        "terminal",
        "tool_calls",
        "tool_calls_started",
        "trace",
        "workflow",
    )

    def __init__(
        self,
        execution_id: str,
        cancellation: Cancellation,
        *,
        streaming: bool,
        max_lag: int | None,
        workflow: str | None = None,
    ) -> None:
        self.execution_id = execution_id
        self.workflow = workflow
        self.streaming = streaming
        self._cancellation = cancellation
        self.log = EventLog(max_lag)
        self.calls: list[CallState] = []
        # Made on first use: most executions never record anything, and thousands may be
        # alive at once.
        self.tool_calls: list[ToolCall] | None = None
        #: How many tool calls this execution started (the next one's ordinal).
        self.tool_calls_started = 0
        #: The open approval requests (made when a tool first needs one, or a host asks).
        self.approvals: ApprovalDesk | None = None
        #: The desk is its root execution's (a child's requests are decided on the root).
        self.shares_desk = False
        self.records: list[RecordEntry] | None = None
        self.costs: list[CostEntry] | None = None
        self.metadata: dict[str, Any] | None = None
        self.hooks: list[Callable[[Any], object]] | None = None
        self.terminal: Event | None = None
        self.parent_id: str | None = None
        #: This execution's telemetry (``NO_TRACE`` when no observer is installed).
        self.trace: Trace = NO_TRACE
        self.children: list[ChildSummary] | None = None
        self.guardrails: list[GuardrailRecord] | None = None
        self.start_time: float | None = None  # trio clock; None until the execution began
        self.started_at = _NOT_STARTED
        self.frozen = False
        self._next_seq = 0
        self._last_event_time: float | None = None

    # -- time -------------------------------------------------------------------------------
    def elapsed(self) -> float:
        return 0.0 if self.start_time is None else trio.current_time() - self.start_time

    def begin(self) -> float:
        """The execution begins now; the start time on trio's clock."""
        self.start_time = trio.current_time()
        self.started_at = dt.datetime.now(dt.UTC)
        return self.start_time

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
            self._cancellation.stop("terminal event delivered")

    # -- calls ------------------------------------------------------------------------------
    def new_call(self, provider: str, model: str, max_tokens: int | None = None) -> CallState:
        call = CallState(len(self.calls), provider, model, self.elapsed(), max_tokens)
        call.agent = current_agent.get()
        call.guardrail = current_guardrail.get()
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
            parent_id=self.parent_id,
            children=tuple(self.children or ()),
            workflow=self.workflow,
            guardrails=tuple(self.guardrails or ()),
        )

    # -- the named writers: the only ways in for the session, the tool runner and the host --
    def share_desk(self, desk: ApprovalDesk) -> None:
        """Open this (child) execution's requests on its root's desk (the host, at start)."""
        self.approvals, self.shares_desk = desk, True

    def approval_desk(self) -> ApprovalDesk:
        """The execution's approval desk, made on first use."""
        desk = self.approvals
        if desk is None:
            desk = self.approvals = ApprovalDesk()
            if self.frozen:  # asked after the end: nothing will ever open
                desk.close()
        return desk

    def begin_tool_call(self) -> int:
        """A tool call starts (the tool runner): its ordinal among the execution's."""
        ordinal = self.tool_calls_started
        self.tool_calls_started += 1
        return ordinal

    def add_tool_call(self, record: ToolCall) -> None:
        """A tool call ran (the tool runner) or was reported by the workflow (the session)."""
        if self.tool_calls is None:
            self.tool_calls = []
        self.tool_calls.append(record)

    def add_guardrail(self, record: GuardrailRecord) -> None:
        """A guardrail's run ended (the call's guard, or the tool runner)."""
        if self.frozen:
            return
        if self.guardrails is None:
            self.guardrails = []
        self.guardrails.append(record)

    def add_record(self, kind: str, data: Any) -> None:
        """A free-form record (the session) or a tool's progress report (the tool runner)."""
        if self.records is None:
            self.records = []
        self.records.append(RecordEntry(kind, data, self.elapsed()))

    def add_cost(self, label: str, amount: Decimal, data: Any) -> None:
        """A non-LLM cost the workflow recorded (the session)."""
        if self.costs is None:
            self.costs = []
        self.costs.append(CostEntry(label, amount, data, self.elapsed()))

    def add_hook(self, callback: Callable[[Any], object]) -> None:
        """An ``on_done`` callback (the session)."""
        if self.hooks is None:
            self.hooks = []
        self.hooks.append(callback)

    def update_metadata(self, values: dict[str, Any]) -> None:
        """Metadata for the summary, later values replacing earlier ones (the session)."""
        if self.metadata is None:
            self.metadata = {}
        self.metadata.update(values)

    def add_child(self, child: ChildSummary) -> None:
        """A child execution finished: list it (ignored once this summary is frozen)."""
        if self.frozen:
            return
        if self.children is None:
            self.children = []
        self.children.append(child)
