"""The summary of an execution: calls, usage, cost, timings and what the workflow recorded.

Every Result carries one, also after a cancel or a failure. It is frozen when the execution
ends; ``to_dict()`` gives a JSON-safe form and ``format()`` a readable one.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from decimal import Decimal
from typing import Any

import attrs

from agtl._jsonable import jsonable
from agtl._vocabulary import Status, StopReason, ToolCallStatus
from agtl.usage import Usage

__all__ = [
    "Approval",
    "ChildSummary",
    "CostEntry",
    "ErrorInfo",
    "GuardrailRecord",
    "LLMCallSummary",
    "RecordEntry",
    "Summary",
    "ToolCall",
]


@attrs.frozen
class ErrorInfo:
    """An error as the summary keeps it: its type name and message (no traceback)."""

    type: str
    message: str

    @classmethod
    def of(cls, error: BaseException) -> ErrorInfo:
        return cls(type(error).__name__, str(error))


@attrs.frozen
class LLMCallSummary:
    """One LLM call. Times are seconds since the execution started (trio's clock)."""

    index: int
    provider: str
    model: str
    started_at: float
    ended_at: float
    usage: Usage
    stop_reason: StopReason
    time_to_first_token: float | None
    output_tokens_per_second: float | None
    cost: Decimal | None
    error: ErrorInfo | None = None
    details: Mapping[str, object] = attrs.field(factory=dict)

    @property
    def duration(self) -> float:
        return self.ended_at - self.started_at

    @property
    def model_key(self) -> str:
        return f"{self.provider}/{self.model}"

    @property
    def replayed(self) -> bool:
        """Answered from a :class:`~agtl.CallJournal` of an earlier attempt: the model was
        not called again; usage and cost are those of the call when it was first made."""
        return self.details.get("replayed") is True

    @property
    def attempts(self) -> tuple[Mapping[str, Any], ...]:
        """The providers a fallback chain or a hedge tried for this call, in order (provider,
        model, outcome, error, seconds, usage, cost); empty for a call to one provider."""
        found = self.details.get("attempts")
        if not isinstance(found, list):
            return ()
        return tuple(a for a in found if isinstance(a, Mapping) and "outcome" in a)


@attrs.frozen
class Approval:
    """How a tool call's approval request ended, on its record: the decision, its reason,
    who decided (if given), and the seconds the call waited for it."""

    approved: bool
    reason: str | None = None
    by: str | None = None
    waited: float = 0.0


@attrs.frozen
class ToolCall:
    """One tool call: run by the tool loop, or recorded with ``session.record_tool_call``.

    ``at`` is when it started (seconds since the execution started); ``step`` the index of
    the LLM call whose reply asked for it; ``call_id`` the model's id for it; ``replayed``
    that an earlier attempt ran it and its recorded outcome was used (``agtl.CallJournal``).
    """

    name: str
    arguments: Any = None
    result: Any = None
    error: str | None = None
    duration: float | None = None
    at: float = 0.0
    status: ToolCallStatus = ToolCallStatus.OK
    call_id: str | None = None
    step: int | None = None
    replayed: bool = False
    #: For a tool that needed approval: the decision, its reason, who, seconds waited.
    approval: Approval | None = None


@attrs.frozen
class GuardrailRecord:
    """One guardrail's run on one text: a model call's input or output, or a tool call's.

    ``verdict`` is ``ok``, ``block``, ``rewrite``, ``error`` (it raised or timed out) or
    ``cancelled`` (its text's call ended first). ``tripped`` says it stopped the call;
    ``call`` is the model call it guarded (``None`` for a blocking input guardrail, which
    runs before any); ``tokens_paid`` the output tokens that call was paid for when it
    stopped; ``checks`` how many times it looked at the text. Times are seconds since the
    execution started; ``at`` is when the verdict came.
    """

    name: str
    stage: str
    verdict: str
    reason: str | None = None
    started_at: float = 0.0
    at: float = 0.0
    call: int | None = None
    tripped: bool = False
    tokens_paid: int | None = None
    checks: int = 0
    tool_call_id: str | None = None


@attrs.frozen
class RecordEntry:
    """A free-form record from ``session.record(kind, data)``."""

    kind: str
    data: Any
    at: float


@attrs.frozen
class CostEntry:
    """A non-LLM cost from ``session.record_cost`` (a search API, a tool, compute)."""

    label: str
    amount: Decimal
    data: Any
    at: float


@attrs.frozen
class ChildSummary:
    """An execution started inside another execution's workflow, as its parent records it.

    ``usage`` and ``cost`` are the child's whole subtree: its own calls plus its children's.
    """

    execution_id: str
    status: Status
    usage: Usage
    cost: Decimal | None


@attrs.frozen
class Summary:
    """What an execution did and what it cost.

    ``parent_id`` names the execution whose workflow started this one, if any; ``children``
    lists the executions this one's workflow started that finished before it did;
    ``workflow`` is the workflow function's qualified name, for reports.
    """

    execution_id: str
    started_at: dt.datetime
    duration: float
    llm_calls: tuple[LLMCallSummary, ...] = ()
    tool_calls: tuple[ToolCall, ...] = ()
    records: tuple[RecordEntry, ...] = ()
    additional_costs: tuple[CostEntry, ...] = ()
    metadata: Mapping[str, Any] = attrs.field(factory=dict)
    parent_id: str | None = None
    children: tuple[ChildSummary, ...] = ()
    workflow: str | None = None
    guardrails: tuple[GuardrailRecord, ...] = ()

    @property
    def tripped_guardrail(self) -> GuardrailRecord | None:
        """The guardrail that stopped a call, the first if several did."""
        for record in self.guardrails:
            if record.tripped:
                return record
        return None

    @property
    def llm_call_count(self) -> int:
        return len(self.llm_calls)

    @property
    def total_usage(self) -> Usage:
        """All calls' usage summed; an unknown part makes that figure unknown (``None``)."""
        return Usage.sum(call.usage for call in self.llm_calls)

    @property
    def cost(self) -> Decimal | None:
        """LLM cost in USD; ``None`` if any call's price is unknown, ``0`` when all are free."""
        return _sum_costs(call.cost for call in self.llm_calls)

    @property
    def cost_by_model(self) -> Mapping[str, Decimal | None]:
        """LLM cost per ``"provider/model"``."""
        by_model: dict[str, list[Decimal | None]] = {}
        for call in self.llm_calls:
            by_model.setdefault(call.model_key, []).append(call.cost)
        return {key: _sum_costs(costs) for key, costs in by_model.items()}

    @property
    def total_cost(self) -> Decimal | None:
        """LLM cost plus the additional costs; ``None`` when the LLM cost is unknown."""
        cost = self.cost
        if cost is None:
            return None
        return cost + sum((entry.amount for entry in self.additional_costs), Decimal(0))

    @property
    def children_usage(self) -> Usage:
        """The usage of every child execution (and theirs), summed."""
        return Usage.sum(child.usage for child in self.children)

    @property
    def children_cost(self) -> Decimal | None:
        """The total cost of every child execution (and theirs); ``None`` if one is unknown."""
        return _sum_costs(child.cost for child in self.children)

    @property
    def tree_usage(self) -> Usage:
        """This execution's usage and its children's (each child's being its own subtree):
        the whole tree, each call counted once. ``total_usage`` stays this execution's own."""
        return self.total_usage + self.children_usage if self.children else self.total_usage

    @property
    def tree_cost(self) -> Decimal | None:
        """This execution's total cost and its children's: the whole tree's cost."""
        cost = self.total_cost
        if not self.children:
            return cost
        children_cost = self.children_cost
        return None if cost is None or children_cost is None else cost + children_cost

    def as_child(self, status: Status) -> ChildSummary:
        """This execution as its parent records it: usage and cost of the whole subtree."""
        return ChildSummary(self.execution_id, status, self.tree_usage, self.tree_cost)

    @property
    def time_to_first_token(self) -> float | None:
        """The first call's time to first token, the figure users feel."""
        for call in self.llm_calls:
            if call.time_to_first_token is not None:
                return call.time_to_first_token
        return None

    def to_dict(self) -> dict[str, Any]:
        """A JSON-safe dict: Decimals as strings, times as ISO 8601, enums as their values."""
        data = {
            "execution_id": self.execution_id,
            "workflow": self.workflow,
            "started_at": self.started_at.isoformat(),
            "duration": self.duration,
            "llm_call_count": self.llm_call_count,
            "llm_calls": [attrs.asdict(c, value_serializer=_json_value) for c in self.llm_calls],
            "total_usage": self.total_usage.to_dict(),
            "cost": self.cost,
            "cost_by_model": dict(self.cost_by_model),
            "additional_costs": [
                attrs.asdict(c, value_serializer=_json_value) for c in self.additional_costs
            ],
            "total_cost": self.total_cost,
            "tool_calls": [attrs.asdict(c, value_serializer=_json_value) for c in self.tool_calls],
            "records": [attrs.asdict(r, value_serializer=_json_value) for r in self.records],
            "metadata": dict(self.metadata),
            "parent_id": self.parent_id,
            "children": [attrs.asdict(c, value_serializer=_json_value) for c in self.children],
            "children_usage": self.children_usage.to_dict(),
            "children_cost": self.children_cost,
            "guardrails": [attrs.asdict(g, value_serializer=_json_value) for g in self.guardrails],
        }
        return jsonable(data)  # type: ignore[no-any-return]

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Summary:
        """The inverse of :meth:`to_dict`: equal to the original wherever the summary's free
        values (records, tool arguments and results, metadata, details) were JSON values."""
        return cls(
            execution_id=data["execution_id"],
            started_at=dt.datetime.fromisoformat(data["started_at"]),
            duration=data["duration"],
            llm_calls=tuple(_call_from(c) for c in data["llm_calls"]),
            tool_calls=tuple(
                ToolCall(
                    **{
                        **c,
                        "status": ToolCallStatus(c["status"]),
                        "approval": None
                        if c.get("approval") is None
                        else Approval(**c["approval"]),
                    }
                )
                for c in data["tool_calls"]
            ),
            records=tuple(RecordEntry(**r) for r in data["records"]),
            additional_costs=tuple(
                CostEntry(**{**c, "amount": Decimal(c["amount"])}) for c in data["additional_costs"]
            ),
            metadata=dict(data["metadata"]),
            parent_id=data.get("parent_id"),
            workflow=data.get("workflow"),
            guardrails=tuple(GuardrailRecord(**g) for g in data.get("guardrails", ())),
            children=tuple(
                ChildSummary(
                    c["execution_id"],
                    Status(c["status"]),
                    Usage.from_dict(c["usage"]),
                    _decimal(c["cost"]),
                )
                for c in data.get("children", ())
            ),
        )

    def format(self) -> str:
        """A readable multi-line report of the summary."""
        usage = self.total_usage
        lines = [
            f"execution {self.execution_id}"
            + ("" if self.workflow is None else f" ({self.workflow})"),
            f"  started   {self.started_at.isoformat(timespec='seconds')}",
            f"  duration  {self.duration:.3f}s",
            f"  LLM calls {self.llm_call_count}",
            f"  tokens    in={_fig(usage.input_tokens)} out={_fig(usage.output_tokens)} "
            f"total={_fig(usage.total_tokens)} cached={_fig(usage.cached_input_tokens)} "
            f"({usage.provenance.value})",
            f"  cost      {_money(self.cost)} (total with additional costs: "
            f"{_money(self.total_cost)})",
        ]
        for call in self.llm_calls:
            ttft = "-" if call.time_to_first_token is None else f"{call.time_to_first_token:.3f}s"
            tps = (
                "-"
                if call.output_tokens_per_second is None
                else f"{call.output_tokens_per_second:.1f} tok/s"
            )
            error = f" error={call.error.type}: {call.error.message}" if call.error else ""
            replayed = " (replayed)" if call.replayed else ""
            lines.append(
                f"  #{call.index} {call.model_key} {call.stop_reason.value} "
                f"{call.duration:.3f}s ttft={ttft} {tps} "
                f"out={_fig(call.usage.output_tokens)} cost={_money(call.cost)}{error}{replayed}"
            )
            if call.attempts:
                tried = ", ".join(
                    f"{a['provider']}/{a.get('model')} {a['outcome']} {a.get('seconds', 0):.3f}s"
                    for a in call.attempts
                )
                lines.append(f"    attempts: {tried}")
        for entry in self.additional_costs:
            lines.append(f"  + {entry.label}: {_money(entry.amount)}")
        if self.tool_calls:
            lines.append(f"  tool calls {len(self.tool_calls)}")
            for tool in self.tool_calls:
                took = "-" if tool.duration is None else f"{tool.duration:.3f}s"
                error = f" {tool.error}" if tool.error else ""
                replayed = " (replayed)" if tool.replayed else ""
                if tool.approval is not None:
                    decided = "approved" if tool.approval.approved else "denied"
                    who = f" by {tool.approval.by}" if tool.approval.by else ""
                    replayed += f" [{decided}{who} after {tool.approval.waited:.1f}s]"
                lines.append(f"    {tool.name} {tool.status.value} {took}{error}{replayed}")
        for record in self.guardrails:
            if record.verdict != "ok":
                on = "" if record.call is None else f" call #{record.call}"
                why = f": {record.reason}" if record.reason else ""
                stopped = " (stopped the call)" if record.tripped else ""
                lines.append(
                    f"  guardrail {record.name} {record.stage}{on} {record.verdict}{why}{stopped}"
                )
        if self.parent_id is not None:
            lines.append(f"  parent    {self.parent_id}")
        if self.children:
            usage = self.children_usage
            lines.append(
                f"  children  {len(self.children)}: out={_fig(usage.output_tokens)} "
                f"total={_fig(usage.total_tokens)} cost={_money(self.children_cost)}"
            )
        return "\n".join(lines)


def _approval_from(data: Mapping[str, Any] | None) -> Approval | None:
    return None if data is None else Approval(**data)


def _call_from(data: Mapping[str, Any]) -> LLMCallSummary:
    error = data.get("error")
    return LLMCallSummary(
        index=data["index"],
        provider=data["provider"],
        model=data["model"],
        started_at=data["started_at"],
        ended_at=data["ended_at"],
        usage=Usage.from_dict(data["usage"]),
        stop_reason=StopReason(data["stop_reason"]),
        time_to_first_token=data["time_to_first_token"],
        output_tokens_per_second=data["output_tokens_per_second"],
        cost=_decimal(data["cost"]),
        error=None if error is None else ErrorInfo(**error),
        details=dict(data.get("details") or {}),
    )


def _decimal(value: str | None) -> Decimal | None:
    return None if value is None else Decimal(value)


def _sum_costs(costs: Any) -> Decimal | None:
    total = Decimal(0)
    for cost in costs:
        if cost is None:
            return None
        total += cost
    return total


def _fig(value: int | None) -> str:
    return "?" if value is None else str(value)


def _money(value: Decimal | None) -> str:
    return "unknown" if value is None else f"${value:.6f}"


def _json_value(_inst: object, _field: object, value: Any) -> Any:
    if isinstance(value, Usage):
        return value.to_dict()
    return value
