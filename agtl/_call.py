"""One LLM call: the stream a workflow reads, from its admission to its accounting.

:class:`TextStream` is what ``session.stream_text(...)`` returns and what ``generate_text``
and the tool loop's steps read. It reads the execution through its one
:class:`~agtl._context.ExecutionContext`, opens the backend through the runtime, enforces the
call's deadlines and the execution's budgets as text arrives, and settles usage, cost,
telemetry and the conversation turn exactly once, however the call ends.
"""

from __future__ import annotations

import math
from decimal import Decimal
from types import TracebackType
from typing import Any, Final

import trio

from agtl._call_spec import CallSpec
from agtl._context import ExecutionContext
from agtl._guard import CallGuard
from agtl._held import HeldNursery
from agtl._observe import NO_TRACE
from agtl._replies import TextResult
from agtl._state import CallState
from agtl._vocabulary import CancelSource, StopReason
from agtl.backend import CallReport, GenerationRequest, GenerationStream, ToolSpec
from agtl.conversation import Conversation, Turn
from agtl.errors import (
    CallTimeoutError,
    ExecutionClosedError,
    FirstTokenTimeoutError,
    InvalidArgumentError,
    LLMTimeoutError,
    StallTimeoutError,
)
from agtl.limits import UsageLimits
from agtl.messages import Message
from agtl.options import GenerationOptions
from agtl.usage import Provenance, Usage, estimate_tokens

__all__ = ["CLOSE_GRACE_SECONDS", "TextStream", "open_call"]

# How long closing a backend stream may take after a cancel before we give up on it.
CLOSE_GRACE_SECONDS: Final = 5.0


class TextStream:
    """One streamed LLM call; see :meth:`Session.stream_text`."""

    def __init__(
        self,
        env: ExecutionContext,
        model: str,
        messages: Any,
        options: GenerationOptions,
        *,
        timeout: float | None,
        first_token_timeout: float | None,
        stall_timeout: float | None,
        conversation: Conversation | None = None,
        user_turn: str | None = None,
        tools: tuple[ToolSpec, ...] = (),
        tool_choice: str | None = None,
        guard: CallGuard | None = None,
        nursery: trio.Nursery | None = None,
    ) -> None:
        self._env = env
        self._conversation = conversation
        self._user_turn = user_turn
        self._turn: Turn | None = None
        self._model = model
        self._messages = messages
        self._options = options
        self._timeout = timeout
        self._first_token_timeout = first_token_timeout
        self._stall_timeout = stall_timeout
        self._call: CallState | None = None
        self._backend: GenerationStream | None = None
        self._call_deadline = math.inf
        self._first_token_deadline = math.inf
        self._last_delta = 0.0
        self._result: TextResult | None = None
        self._entered = False
        self._input_estimate: int | None = None  # made when a budget first needs it
        # A tool loop's model calls: what the model may call, and how.
        self._tools = tools
        self._tool_choice = tool_choice
        # Its guardrails, and where those that run beside it run: the nursery its opener
        # lent, or one it enters itself (by hand, closed by __aexit__).
        self._guard = guard
        self._nursery = nursery
        # Entered when guardrails need a nursery and none was lent (most calls have none).
        self._held: HeldNursery | None = None
        self._rewritten: str | None = None  # the reply an output guardrail rewrote

    @property
    def text(self) -> str:
        """The text delivered so far."""
        return "" if self._call is None else self._call.text

    def keep_object(self, value: Any) -> None:
        """Keep the partial object parsed from the text so far on the call, for the
        execution's partial if it stops here (``stream_object``)."""
        if self._call is not None:
            self._call.partial_object = value

    @property
    def result(self) -> TextResult:
        """The finished call's :class:`TextResult`."""
        if self._result is None:
            raise ExecutionClosedError(
                "stream.result is only available after the stream was read to its end"
            )
        return self._result

    async def __aenter__(self) -> TextStream:
        if self._entered:
            raise ExecutionClosedError("a TextStream can be entered only once")
        self._entered = True
        await self._admit()
        guard = self._guard
        if guard is not None:
            await guard.before()
            if guard.needs_tasks and self._nursery is None:
                self._held = HeldNursery()
                self._nursery = await self._held.enter()
        try:
            if self._conversation is not None:
                self._turn = self._conversation.begin_turn(self._user_turn)
                self._messages = self._conversation.to_model_messages()
            call = self._begin()
            request = self._request(call)
            self._trace_start(call, request)
            if guard is not None:
                guard.start(self._nursery, call, owned=self._held is not None)
            try:
                if guard is not None:
                    await guard.let_start()
                if guard is None or not guard.waiting:
                    await self._start_backend(request)
                else:
                    with guard.reading():
                        await self._start_backend(request)
                    guard.check_tripped()
            except BaseException as exc:
                await self._finish(exc)
                raise
        except BaseException as exc:
            if self._held is not None:
                await self._held.leave(exc, cancel=True)
            raise
        return self

    async def _admit(self) -> None:
        """Refuse a call after the outcome, after a cancel, or past ``max_requests``; a soft
        stop asked for lands here, before a new step."""
        env = self._env
        state = env.state
        if env.cancellation.at_boundary("step") and state.calls:
            state.calls[-1].kept = True  # the last complete reply is the partial
        await trio.lowlevel.checkpoint_if_cancelled()
        if state.terminal is not None or state.frozen:
            raise ExecutionClosedError(
                "no LLM call may start after the execution's terminal event was delivered"
            )
        if env.cancellation.requested:
            raise ExecutionClosedError("no LLM call may start after the execution was cancelled")
        refusal = None
        if env.limits is not None:
            refusal = env.limits.request_refusal(len(state.calls))
        if refusal is None and env.node.parent is not None:
            refusal = env.node.request_refusal()  # the budgets of the executions above
        if refusal is not None:
            env.cancellation.request(CancelSource.LIMIT, refusal)
            await trio.lowlevel.checkpoint_if_cancelled()
            raise ExecutionClosedError(f"LLM call refused: {refusal}")

    def _begin(self) -> CallState:
        """Record the call in the execution and set its deadlines from now."""
        env = self._env
        call = env.state.new_call(env.runtime.provider_name, self._model, self._options.max_tokens)
        self._call = call
        now = trio.current_time()
        if self._timeout is not None:
            self._call_deadline = now + self._timeout
        if self._first_token_timeout is not None:
            self._first_token_deadline = now + self._first_token_timeout
        return call

    def _request(self, call: CallState) -> GenerationRequest:
        """What the backend gets: frozen, and nothing of the execution."""
        return GenerationRequest(
            self._model,
            tuple(self._messages),
            self._options,
            self._env.state.execution_id,
            call.index,
            tools=self._tools,
            tool_choice=self._tool_choice if self._tools else None,
        )

    def _trace_start(self, call: CallState, request: GenerationRequest) -> None:
        call.trace = self._env.state.trace.call(self._env.runtime.provider_name, request)

    async def _start_backend(self, request: GenerationRequest) -> None:
        """Open the backend's stream, within the call's first deadline."""
        deadline = min(self._call_deadline, self._first_token_deadline)
        if deadline == math.inf:
            self._backend = await self._env.runtime.start_generation(request)
            return
        with trio.move_on_at(deadline) as scope:
            self._backend = await self._env.runtime.start_generation(request)
        if scope.cancelled_caught:
            raise self._timeout_error()

    def __aiter__(self) -> TextStream:
        if not self._entered:
            raise ExecutionClosedError(
                "iterate a stream inside `async with session.stream_text(...) as stream:`"
            )
        return self

    async def __anext__(self) -> str:
        call, backend = self._call, self._backend
        if call is None or backend is None or call.finished:
            raise StopAsyncIteration
        guard = self._guard
        while True:
            if guard is None:
                delta = await self._read(call, backend)
            else:
                guard.check_tripped()  # tripped while the reader was away
                if guard.waiting:  # one beside the call may still trip: read in its scope
                    with guard.reading():
                        delta = await self._read(call, backend)
                    guard.check_tripped()
                else:
                    delta = await self._read(call, backend)
            if delta is None:
                if guard is not None:
                    self._rewritten = await guard.end(call)
                await self._finish(None)
                raise StopAsyncIteration
            if delta:
                break
        if guard is not None:
            await guard.piece(call, delta)
        self._last_delta = trio.current_time()
        if call.first_token_at is None:
            call.first_token_at = self._env.state.elapsed()
        call.add_text(delta)
        if self._turn is not None:
            self._turn.feed(delta)
        limits = self._env.limits
        if (limits is not None and limits.watches_usage) or self._env.node.watched:
            self._check_budgets(call, limits, backend)
        return delta

    async def _read(self, call: CallState, backend: GenerationStream) -> str | None:
        """The backend's next piece (``None`` at the end), within the call's deadlines."""
        if call.first_token_at is None:
            deadline = min(self._call_deadline, self._first_token_deadline)
        elif self._stall_timeout is not None:
            deadline = min(self._call_deadline, self._last_delta + self._stall_timeout)
        else:
            deadline = self._call_deadline
        if deadline == math.inf:
            return await backend.next_delta()
        with trio.move_on_at(deadline) as scope:
            delta = await backend.next_delta()
        if scope.cancelled_caught:
            raise self._timeout_error()
        return delta

    def _check_budgets(
        self, call: CallState, limits: UsageLimits | None, backend: GenerationStream
    ) -> None:
        """A token or cost budget crossed by the output so far stops the call at this piece."""
        env = self._env
        if env.cancellation.requested:
            return
        if self._input_estimate is None:
            self._input_estimate = estimate_tokens(
                "".join(m.content or "" for m in self._messages if isinstance(m, Message))
            )
        running = call.running_usage(backend.report(), self._input_estimate)
        cost = env.runtime.cost_of(call.model, running)
        violation = None
        if limits is not None:
            settled, settled_cost = env.state.usage_and_cost()
            total_cost = None if cost is None or settled_cost is None else settled_cost + cost
            violation = limits.usage_violation(settled + running, total_cost)
        if violation is None and env.node.watched:
            violation = env.node.usage_violation(running, cost)  # a budget above this one
        if violation is not None:
            estimated = " (estimated)" if running.provenance is Provenance.ESTIMATED else ""
            env.cancellation.request(
                CancelSource.LIMIT, f"{violation}{estimated} while call #{call.index} streamed"
            )

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        guard = self._guard
        if guard is None:  # the common case: no guardrail, no nursery
            if self._call is not None and not self._call.finished:
                if isinstance(exc, GeneratorExit):
                    exc = None  # an async generator reading the stream was closed: left early
                await self._finish(exc, abandoned=exc is None)
            return
        # A guardrail that tripped while the reader was away, and the reader left: the trip.
        tripped = guard.error if exc is None else None
        try:
            if self._call is not None and not self._call.finished:
                if isinstance(exc, GeneratorExit):
                    exc = None
                if tripped is not None:
                    await self._finish(tripped)
                else:
                    await self._finish(exc, abandoned=exc is None)
        finally:
            if self._held is not None:
                # Its tasks are guardrails of this call, which has ended: none has more to do.
                await self._held.leave(exc, cancel=True)
        if tripped is not None:
            raise tripped

    def _timeout_error(self) -> LLMTimeoutError:
        now = trio.current_time()
        if now >= self._call_deadline and self._timeout is not None:
            return CallTimeoutError(self._timeout, model=self._model)
        if (
            self._call is not None
            and self._call.first_token_at is None
            and self._first_token_timeout is not None
        ):
            return FirstTokenTimeoutError(self._first_token_timeout, model=self._model)
        assert self._stall_timeout is not None
        return StallTimeoutError(self._stall_timeout, model=self._model)

    async def _finish(self, exc: BaseException | None, *, abandoned: bool = False) -> None:
        """Close the backend, then settle usage and cost and account the call. Runs once.

        An interrupted call is closed shielded, with a bounded grace, because that is where
        a backend has work to undo. A call that ended normally is closed like any trio call;
        if a cancel lands during that close, the call is still accounted before it propagates.
        """
        backend = self._backend
        try:
            if backend is None:
                pass
            elif exc is None and not abandoned:
                await backend.aclose()
            else:
                with trio.move_on_after(CLOSE_GRACE_SECONDS, shield=True):
                    await backend.aclose()
        except Exception as close_error:
            self._env.log.warning(
                "llm_call.close_failed",
                call=None if self._call is None else self._call.index,
                error=type(close_error).__name__,
            )
        finally:
            self._account(exc, abandoned)

    def _account(self, exc: BaseException | None, abandoned: bool) -> None:
        """The call ended: record it, close its conversation turn, and check the limits."""
        call, env = self._call, self._env
        assert call is not None
        backend = self._backend
        report = (
            backend.report()
            if backend is not None
            else CallReport(Usage(provenance=Provenance.UNKNOWN))
        )
        call.end(report, exc, abandoned=abandoned, at=env.state.elapsed())
        call.settle(env.runtime.cost_of)
        if self._guard is not None:
            self._guard.close()  # its records know the tokens paid
        self._trace_finish(call)
        if self._turn is not None:
            if self._rewritten is not None:
                self._turn.replace(self._rewritten)
            self._close_turn(call, exc)
        self._log_finished(call)
        if call.completed:
            self._result = _text_result(call, report, self._rewritten)
            if env.cancellation.at_boundary("call"):
                call.kept = True  # a soft stop lands after this complete reply
        self._check_limits_after()

    def _trace_finish(self, call: CallState) -> None:
        if call.trace is not NO_TRACE:  # freezing the summary costs: only for an observer
            call.trace.call_finished(call.freeze(self._env.state.elapsed()), call.text)

    def _log_finished(self, call: CallState) -> None:
        assert call.stop_reason is not None
        assert call.usage is not None
        self._env.log.debug(
            "llm_call.finished",
            call=call.index,
            model=call.model,
            stop_reason=call.stop_reason.value,
            output_tokens=call.usage.output_tokens,
            duration=(call.ended_at or 0.0) - call.started_at,
        )

    def _check_limits_after(self) -> None:
        """With its final figures in, does the execution cross a budget? Then cancel it."""
        env, call = self._env, self._call
        assert call is not None
        if call.usage is not None:
            env.node.settled(call.usage, call.cost)  # every execution above used it too
        violation = None
        if env.limits is not None:
            violation = env.limits.usage_violation(*env.state.usage_and_cost())
        if violation is None and env.node.watched:
            violation = env.node.usage_violation(Usage(0, 0), Decimal(0))
        if violation is not None:
            call.kept = True  # its text is not lost: the partial keeps it
            env.cancellation.request(CancelSource.LIMIT, violation)

    def _close_turn(self, call: CallState, exc: BaseException | None) -> None:
        """Append the reply to the conversation, or what was said so far and a marker."""
        assert self._turn is not None
        if call.stop_reason is StopReason.CANCELLED:
            left = "the stream was left early"
            self._turn.stop(self._env.cancellation.reason if exc is not None else left)
        elif call.stop_reason is StopReason.ERROR:
            assert exc is not None
            self._turn.fail(exc)
        else:
            self._turn.finish(call.report.tool_calls if call.report is not None else ())


def _text_result(call: CallState, report: CallReport, rewritten: str | None) -> TextResult:
    """A completed call as the workflow gets it (its text as a guardrail rewrote it)."""
    assert call.usage is not None
    assert call.stop_reason is not None
    return TextResult(
        text=call.text if rewritten is None else rewritten,
        usage=call.usage,
        stop_reason=call.stop_reason,
        model=call.model,
        call_index=call.index,
        time_to_first_token=call.time_to_first_token,
        tool_calls=report.tool_calls,
    )


def open_call(
    ctx: ExecutionContext,
    spec: CallSpec,
    *,
    offer: tuple[tuple[ToolSpec, ...], str] | None = None,
    session: object = None,
    nursery: trio.Nursery | None = None,
) -> TextStream:
    """The stream of one model call of ``spec`` (offering tools, for a loop's step): the
    provider's defaults under the spec's options, its model or the provider's default. With
    guardrails, ``session`` is what they are handed and ``nursery`` (if the opener has one)
    where those beside the call run."""
    runtime = ctx.runtime
    options = runtime.default_options
    if spec.options is not None:
        options = options.merged(spec.options)
    model = spec.model or runtime.default_model
    if model is None:
        raise InvalidArgumentError(
            "model",
            "no model given and the provider has no default; pass model=... "
            "or configure provider.with_default_model(...)",
        )
    tools, choice = offer if offer is not None else ((), None)
    guard = None
    if spec.guards is not None:
        guard = CallGuard(ctx, session, spec.guards, spec.input_text())
    return TextStream(
        ctx,
        model,
        spec.messages,
        options,
        timeout=spec.deadlines.call,
        first_token_timeout=spec.deadlines.first_token,
        stall_timeout=spec.deadlines.stall,
        conversation=spec.conversation,
        user_turn=spec.prompt if spec.conversation is not None else None,
        tools=tools,
        tool_choice=choice,
        guard=guard,
        nursery=nursery,
    )
