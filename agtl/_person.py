"""Asking a person, with the journal: the approval of a tool call, an answer for the workflow.

Both go through the execution's :class:`~agtl._approvals.ApprovalDesk`. When the execution
has a :class:`~agtl.CallJournal`, a decision an earlier attempt got is used at once (the
request is not opened again), a decision made now is recorded for later attempts, and a
request that waits is reported to the journal's host (:meth:`CallJournal.waiting`), which may
end the attempt and wait for the decision elsewhere (the Temporal activity does). A host that
waits elsewhere also keeps the timeouts: the wait here is not bounded by them.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import pydantic
import trio

from agtl._approvals import INPUT_REQUESTED, ApprovalRequest, InputRequest, input_adapter
from agtl._context import ExecutionContext
from agtl._jsonable import jsonable
from agtl._state import agent_path
from agtl.errors import InputTimeoutError
from agtl.journal import CallJournal, Decision
from agtl.summary import Approval
from agtl.tools import Tool

__all__ = ["APPROVAL_REQUESTED", "answer_to", "approval_for"]

#: The event a streaming execution delivers when a tool call waits for approval.
APPROVAL_REQUESTED = "approval_requested"


async def approval_for(
    ctx: ExecutionContext, call_id: str, tool: Tool, arguments: Mapping[str, Any]
) -> Approval:
    """The decision on running ``tool`` with ``arguments``: an earlier attempt's, or one a
    person makes now (a streaming execution's consumers get an ``approval_requested`` event)."""
    state, journal = ctx.state, ctx.runtime.journal
    desk = state.approval_desk()
    request_id = desk.unique_id(call_id)
    earlier = None if journal is None else journal.decision(request_id)
    if earlier is not None and earlier.kind == "approval":
        desk.settled_earlier(request_id)
        ctx.log.debug("tool_call.approval_replayed", tool=tool.name, call=request_id)
        return Approval(earlier.approved, earlier.reason, earlier.by, earlier.waited)
    request = ApprovalRequest(
        id=request_id,
        tool=tool.name,
        arguments=arguments,
        execution_id=state.execution_id,
        requested_at=state.elapsed(),
        desk=desk,
        path=agent_path.get(),
    )
    if state.streaming:
        data = {"id": request.id, "tool": tool.name, "arguments": arguments}
        state.deliver(state.make_event(APPROVAL_REQUESTED, data))
    ctx.log.debug("tool_call.approval_requested", tool=tool.name, call=request.id)
    told: dict[str, Any] = {"kind": "approval", "id": request_id, "tool": tool.name}
    told |= {"arguments": jsonable(arguments), "timeout": tool.approval_timeout}
    approval = await desk.ask(
        request, _here(journal, tool.approval_timeout), trio.current_time, _tell(journal, told)
    )
    if journal is not None:
        journal.record_decision(
            Decision(
                request_id,
                "approval",
                approved=approval.approved,
                reason=approval.reason,
                by=approval.by,
                waited=approval.waited,
            )
        )
    return approval


async def answer_to(
    ctx: ExecutionContext, prompt: str, output_type: Any, within: float | None
) -> Any:
    """A person's answer to ``prompt`` as ``output_type``: an earlier attempt's, or one given
    now (a streaming execution's consumers get an ``input_requested`` event)."""
    adapter = input_adapter(output_type)
    state, journal = ctx.state, ctx.runtime.journal
    desk = state.approval_desk()
    request_id = desk.unique_id("input")
    earlier = None if journal is None else journal.decision(request_id)
    refused = None  # why an earlier attempt's answer does not fit, if it does not
    if earlier is not None and earlier.kind == "input":
        if earlier.timed_out:
            desk.settled_earlier(request_id)
            raise InputTimeoutError(earlier.reason or f"no answer to {prompt!r} in time")
        try:
            value = adapter.validate_python(earlier.value)
        except pydantic.ValidationError as error:
            refused = "; ".join(e["msg"] for e in error.errors()) or str(error)
        else:
            desk.settled_earlier(request_id)
            return value
    request = InputRequest(
        id=request_id,
        prompt=prompt,
        schema=adapter.json_schema(),
        execution_id=state.execution_id,
        requested_at=state.elapsed(),
        desk=desk,
    )
    if state.streaming:
        data = {"id": request.id, "prompt": prompt, "schema": request.schema}
        state.deliver(state.make_event(INPUT_REQUESTED, data))
    told: dict[str, Any] = {"kind": "input", "id": request_id, "prompt": prompt}
    told |= {"schema": request.schema}
    told |= {"timeout": within, "refused": refused}
    started = trio.current_time()
    try:
        value = await desk.ask_input(request, adapter, _here(journal, within), _tell(journal, told))
    except InputTimeoutError as error:
        if journal is not None:
            waited = trio.current_time() - started
            journal.record_decision(
                Decision(request_id, "input", reason=str(error), waited=waited, timed_out=True)
            )
        raise
    if journal is not None:
        waited = trio.current_time() - started
        journal.record_decision(Decision(request_id, "input", value=jsonable(value), waited=waited))
    return value


def _here(journal: CallJournal | None, timeout: float | None) -> float | None:
    """The bound of the wait in this attempt: none when the host waits (and times) elsewhere."""
    return None if journal is not None and journal.waits_elsewhere else timeout


def _tell(journal: CallJournal | None, request: Mapping[str, Any]) -> Callable[[], None] | None:
    """What tells the journal's host that ``request`` waits."""
    if journal is None or not journal.waits_elsewhere:
        return None
    return lambda: journal.waiting(request)
