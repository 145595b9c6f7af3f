"""Running the tool calls of one step: concurrently, as children of the execution.

Every call of a step runs in one nursery inside the execution's cancel scope, so a cancel of
the execution (any source) reaches every running tool at once and the step ends only when
each has ended. Each call ends in exactly one :class:`~agtl.ToolCallStatus`, recorded in the
summary when it ends, whatever ends it, and produces the message the model is told.

A plain ``def`` tool runs in a worker thread of its own. A thread cannot be interrupted: on a
cancel (or the tool's timeout) the runner waits for it, shielded, for at most
``SYNC_TOOL_GRACE`` seconds; a thread still running after that is left to finish and reported
(in the tool call's error, and a ``tool.thread_abandoned`` warning), never silently leaked.
"""

from __future__ import annotations

import contextlib
import contextvars
import json
import threading
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Final

import attrs
import trio

from agtl._context import ExecutionContext
from agtl._guard import guard_text
from agtl._jsonable import jsonable, to_json
from agtl._logging import ExecutionLogger
from agtl._person import approval_for
from agtl._trio_thread import call_in_run
from agtl._vocabulary import CancelSource, ToolCallStatus
from agtl.errors import (
    ExecutionClosedError,
    GuardrailTripped,
    ToolArgumentsError,
    ToolError,
    UnserializableValueError,
)
from agtl.guardrails import GuardrailStage
from agtl.journal import ToolEntry, arguments_fingerprint
from agtl.messages import ToolCallRequest
from agtl.summary import Approval, ToolCall
from agtl.tools import Tool, ToolCallInfo, current_call, part_hook, progress_hook

__all__ = ["SYNC_TOOL_GRACE", "ChildPart", "StepRunner", "ToolOutcome"]

#: How long a cancelled or timed-out sync tool's thread is waited for before it is reported.
SYNC_TOOL_GRACE: Final = 1.0


@attrs.frozen
class ToolProgress:
    """A running tool reported progress (``agtl.report_progress``, an MCP server's notice)."""

    call_id: str
    name: str
    progress: float
    total: float | None = None
    message: str | None = None


@attrs.frozen
class ChildPart:
    """A part of a sub-agent's run (``agent``) inside the tool call ``call_id``: its text, its
    tool calls starting and finishing, their progress, and its own children's parts, nested."""

    call_id: str
    agent: str
    part: Any


#: Where the tool loop wants a step's parts (``None``: only the summary records them).
ProgressSink = Callable[[ToolProgress | ChildPart], None]


@attrs.frozen
class ToolOutcome:
    """One tool call of a step: its summary record and what the model is told."""

    record: ToolCall
    message: str


@attrs.define
class StepRunner:
    """Runs the tool calls of the loop's steps for one ``generate_text`` call."""

    tools: Mapping[str, Tool]
    ctx: ExecutionContext
    session: object  # handed to tools that take the Session
    raise_errors: bool = False
    #: Invalid-argument replies sent back to the model so far, per tool name.
    invalid: dict[str, int] = attrs.Factory(dict)
    #: Calls admitted and not yet recorded (so that a limit counts the calls of a step).
    _in_flight: int = attrs.field(default=0, init=False)
    #: Where the current step's progress parts go (set by ``run``).
    _sink: ProgressSink | None = attrs.field(default=None, init=False)

    async def run(
        self, calls: Sequence[ToolCallRequest], step: int, progress: ProgressSink | None = None
    ) -> list[ToolOutcome]:
        """Run every call of a step concurrently; the outcomes in the calls' order.

        What a tool reports with ``agtl.report_progress`` is recorded in the summary and
        handed to ``progress``.
        """
        self._sink = progress
        state = self.ctx.state
        await trio.lowlevel.checkpoint_if_cancelled()  # a stopped execution starts no tool
        if state.terminal is not None or state.frozen:
            raise ExecutionClosedError(
                "no tool may start after the execution's terminal event was delivered"
            )
        outcomes: list[ToolOutcome | None] = [None] * len(calls)
        if len(calls) == 1:
            # One call needs no nursery: it runs in this task, inside the same scopes.
            await self._admit()
            outcomes[0] = await self._call(calls[0], step)
        else:

            async def one(index: int, call: ToolCallRequest) -> None:
                outcomes[index] = await self._call(call, step)

            async with trio.open_nursery() as nursery:
                for index, call in enumerate(calls):
                    await self._admit()
                    nursery.start_soon(one, index, call, name=f"agtl-tool-{call.name}")
        done = [outcome for outcome in outcomes if outcome is not None]
        assert len(done) == len(calls), "a tool call ended without an outcome"
        self._check_retries(done)
        return done

    async def _admit(self) -> None:
        """Start one more tool call, or cancel the execution if a limit forbids it (its own,
        or one of an execution above it)."""
        refusal = None
        if self.ctx.limits is not None:
            started = len(self.ctx.state.tool_calls or ()) + self._in_flight
            refusal = self.ctx.limits.tool_call_refusal(started)
        if refusal is None and self.ctx.node.parent is not None:
            refusal = self.ctx.node.tool_call_refusal()
        if refusal is not None:
            self.ctx.cancellation.request(CancelSource.LIMIT, refusal)
            await trio.lowlevel.checkpoint_if_cancelled()
            raise ExecutionClosedError(f"tool call refused: {refusal}")
        self._in_flight += 1

    async def _call(self, call: ToolCallRequest, step: int) -> ToolOutcome:
        state = self.ctx.state
        started = state.elapsed()
        clock = trio.current_time()
        tool = self.tools.get(call.name)
        arguments: Any = _raw_arguments(call.arguments)
        status: ToolCallStatus = ToolCallStatus.OK
        result: Any = None
        error: str | None = None
        notes: list[str] = []  # what happened to a sync tool's thread, if worth saying
        reply: str | None = None  # an OK result as the model reads it
        replayed = False
        approval: Approval | None = None
        journal = self.ctx.runtime.journal
        ordinal = state.begin_tool_call()
        across = journal.key if journal is not None and journal.key else state.execution_id
        calling = current_call.set(
            ToolCallInfo(call.name, call.id, state.execution_id, ordinal, f"{across}:{ordinal}")
        )
        reporting = progress_hook.set(self._reporter(call))
        parting = part_hook.set(None if self._sink is None else self._parts_of(call))
        # The tool's trace is current while it runs: spans the tool makes nest under it.
        trace = state.trace.tool(call.name, call.id, arguments)
        activated = trace.activate()
        try:
            if tool is None:
                status = ToolCallStatus.INVALID
                known = ", ".join(sorted(self.tools)) or "none"
                error = f"there is no tool named {call.name!r} (the tools are: {known})"
                self._count_invalid(call.name)
            else:
                try:
                    # Parsed once: the raw form (for the summary if it does not validate) is
                    # what validation starts from.
                    arguments = tool.validate(
                        arguments if isinstance(arguments, dict) else call.arguments
                    )
                except ToolArgumentsError as exc:
                    status, error = ToolCallStatus.INVALID, exc.problem
                    self._count_invalid(call.name)
                else:
                    digest = "" if journal is None else arguments_fingerprint(tool.name, arguments)
                    entry = None if journal is None else journal.take_tool(tool.name, digest)
                    if entry is not None:  # an earlier attempt ran it: not again
                        replayed, reply, result = True, entry.message, entry.result
                        status, error = ToolCallStatus(entry.status), entry.error
                        approval = None if entry.approval is None else Approval(**entry.approval)
                    else:
                        if tool.guardrails:  # before a person is asked: a block never runs
                            await guard_text(
                                self.ctx,
                                self.session,
                                tool.guardrails,
                                GuardrailStage.TOOL_ARGUMENTS,
                                json.dumps(jsonable(arguments), ensure_ascii=False),
                                tool_call_id=call.id,
                            )
                        if tool.wants_approval(arguments):
                            approval = await approval_for(
                                self.ctx, call.id or f"call-{ordinal}", tool, arguments
                            )
                            clock += approval.waited  # the tool's time excludes the wait
                        if approval is not None and not approval.approved:
                            status, error = ToolCallStatus.DENIED, approval.reason or "denied"
                        else:
                            status, result, error = await self._invoke(tool, arguments, notes)
                            if status is ToolCallStatus.OK:
                                reply, status, error = self._reply(tool, result)
                            if reply is not None and tool.result_guardrails:
                                reply = await guard_text(
                                    self.ctx,
                                    self.session,
                                    tool.result_guardrails,
                                    GuardrailStage.TOOL_RESULT,
                                    reply,
                                    tool_call_id=call.id,
                                )
                        if journal is not None:
                            told = reply if reply is not None else _told(status, error, tool)
                            decided = None if approval is None else attrs.asdict(approval)
                            journal.record_tool(
                                ToolEntry(
                                    tool.name,
                                    digest,
                                    status.value,
                                    jsonable(result),
                                    error,
                                    told,
                                    decided,
                                )
                            )
        except trio.Cancelled:
            status, error = ToolCallStatus.CANCELLED, "the execution was stopped"
            raise
        except ToolError as exc:
            status, error = ToolCallStatus.ERROR, str(exc.__cause__ or exc)
            raise
        except GuardrailTripped as exc:
            status, error = ToolCallStatus.BLOCKED, str(exc)
            raise
        except BaseException as exc:  # KeyboardInterrupt, SystemExit: recorded, then on
            status, error = ToolCallStatus.ERROR, f"{type(exc).__name__}: {exc}"
            raise
        finally:
            self._in_flight -= 1
            if notes:
                error = f"{error}; {notes[0]}" if error else notes[0]
            record = ToolCall(
                name=call.name,
                arguments=arguments,
                result=result,
                error=error,
                duration=trio.current_time() - clock,
                at=started,
                status=status,
                call_id=call.id,
                step=step,
                replayed=replayed,
                approval=approval,
            )
            state.add_tool_call(record)
            trace.deactivate(activated)
            trace.tool_finished(record)
            part_hook.reset(parting)
            progress_hook.reset(reporting)
            current_call.reset(calling)
            self.ctx.log.debug("tool_call.finished", tool=call.name, status=status.value, step=step)
        return ToolOutcome(record, reply if reply is not None else _message_for(record, tool))

    def _reply(self, tool: Tool, value: Any) -> tuple[str | None, ToolCallStatus, str | None]:
        """An OK result as the model reads it: text as it is, anything else as its JSON
        form; a result with no JSON form makes the call an error (or raises ToolError)."""
        if isinstance(value, str):
            return value, ToolCallStatus.OK, None
        try:
            encoded = to_json(value, f"the result of {tool.name}")
        except UnserializableValueError as exc:
            if self.raise_errors:
                raise ToolError(tool.name, exc) from exc
            return None, ToolCallStatus.ERROR, str(exc)
        return json.dumps(encoded, ensure_ascii=False), ToolCallStatus.OK, None

    async def _invoke(
        self, tool: Tool, arguments: dict[str, Any], notes: list[str]
    ) -> tuple[ToolCallStatus, Any, str | None]:
        """Run the tool under its timeout: (status, result, error)."""
        args = (self.session,) if tool.takes_session else ()
        value: Any = None
        timed_out = False
        try:
            if tool.timeout is None:  # no scope when there is no timeout: it costs per call
                value = await self._execute(tool, args, arguments, notes)
            else:
                with trio.move_on_after(tool.timeout) as scope:
                    value = await self._execute(tool, args, arguments, notes)
                timed_out = scope.cancelled_caught
        except Exception as exc:
            if self.raise_errors:
                raise ToolError(tool.name, exc) from exc
            return ToolCallStatus.ERROR, None, f"{type(exc).__name__}: {exc}"
        if timed_out:
            return (
                ToolCallStatus.TIMEOUT,
                None,
                f"did not finish within its timeout of {tool.timeout:g}s",
            )
        return ToolCallStatus.OK, value, None

    async def _execute(
        self, tool: Tool, args: tuple[object, ...], arguments: dict[str, Any], notes: list[str]
    ) -> Any:
        if tool.is_async:
            return await tool.function(*args, **arguments)
        return await _in_thread(tool.function, args, arguments, tool.name, notes, self.ctx.log)

    def _reporter(self, call: ToolCallRequest) -> Callable[[float, float | None, str | None], None]:
        """What ``agtl.report_progress`` does inside this call (from any thread)."""
        token = trio.lowlevel.current_trio_token()
        state, sink = self.ctx.state, self._sink

        def deliver(part: ToolProgress) -> None:
            if state.frozen:
                return
            data = {
                "tool": part.name,
                "call_id": part.call_id,
                "progress": part.progress,
                "total": part.total,
                "message": part.message,
            }
            state.add_record("tool.progress", data)
            if sink is not None:
                sink(part)

        def report(progress: float, total: float | None, message: str | None) -> None:
            part = ToolProgress(
                call.id,
                call.name,
                float(progress),
                None if total is None else float(total),
                None if message is None else str(message),
            )
            call_in_run(token, lambda: deliver(part))

        return report

    def _parts_of(self, call: ToolCallRequest) -> Callable[[str, Any], None]:
        """What a sub-agent running in this call sends its parts to (the step's reader)."""
        token = trio.lowlevel.current_trio_token()
        sink = self._sink
        assert sink is not None

        def forward(agent: str, part: Any) -> None:
            child = ChildPart(call.id, agent, part)
            call_in_run(token, lambda: sink(child))

        return forward

    def _count_invalid(self, name: str) -> None:
        self.invalid[name] = self.invalid.get(name, 0) + 1

    def _check_retries(self, outcomes: Sequence[ToolOutcome]) -> None:
        """Fail once a tool's invalid arguments were sent back more often than it allows."""
        for outcome in outcomes:
            record = outcome.record
            if record.status is not ToolCallStatus.INVALID:
                continue
            tool = self.tools.get(record.name)
            # A name that matches no tool gets the most patience any of the tools allows.
            allowed = (
                tool.retries
                if tool is not None
                else max((t.retries for t in self.tools.values()), default=0)
            )
            if self.invalid.get(record.name, 0) > allowed:
                raise ToolArgumentsError(
                    record.name,
                    f"{record.error} (still invalid after {allowed} "
                    f"{'retry' if allowed == 1 else 'retries'})",
                )


async def _in_thread(
    function: Callable[..., Any],
    args: tuple[object, ...],
    kwargs: dict[str, Any],
    name: str,
    note: list[str],
    log: ExecutionLogger,
) -> Any:
    """Run a sync tool in a thread of its own; on a cancel wait a bounded grace for it.

    The thread runs in a copy of this task's context, as ``trio.to_thread`` would: the tool
    sees the current tracing span and any other context variable.
    """
    token = trio.lowlevel.current_trio_token()
    done = trio.Event()
    box: dict[str, Any] = {}
    context = contextvars.copy_context()

    def work() -> None:
        try:
            box["value"] = context.run(function, *args, **kwargs)
        except BaseException as exc:
            box["error"] = exc
        finally:
            with contextlib.suppress(trio.RunFinishedError):
                token.run_sync_soon(done.set)

    thread = threading.Thread(target=work, name=f"agtl-tool-{name}", daemon=True)
    thread.start()
    try:
        await done.wait()
    except trio.Cancelled:
        with trio.move_on_after(SYNC_TOOL_GRACE, shield=True):
            await done.wait()
        if done.is_set():
            thread.join()
        else:
            note.append(
                f"its thread was still running {SYNC_TOOL_GRACE:g}s after the stop and was "
                "left to finish (a thread cannot be interrupted)"
            )
            log.warning("tool.thread_abandoned", tool=name, thread=thread.name)
        raise
    thread.join()
    if "error" in box:
        raise box["error"]
    return box.get("value")


def _raw_arguments(text: str) -> Any:
    """The model's arguments as data for the summary, even when they do not validate."""
    try:
        return json.loads(text or "{}")
    except ValueError:
        return text


def _message_for(record: ToolCall, tool: Tool | None) -> str:
    """What the model is told of a tool call that did not succeed."""
    return _told(record.status, record.error, tool)


def _told(status: ToolCallStatus, error: str | None, tool: Tool | None) -> str:
    if status is ToolCallStatus.DENIED:
        return f"The user denied this call: {error}"
    if status is ToolCallStatus.INVALID:
        again = "" if tool is None else " Call it again with valid arguments."
        return f"Error: invalid call: {error}.{again}"
    if status is ToolCallStatus.TIMEOUT:
        return f"Error: the tool {error}."
    return f"Error: {error}"
