"""The session: what a workflow receives to call models and report progress."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from decimal import Decimal
from typing import Any, overload

import trio

from agtl._call import TextStream, open_call
from agtl._call_spec import CallSpec
from agtl._context import ExecutionContext
from agtl._object_stream import ObjectStream
from agtl._person import answer_to
from agtl._replies import Step, TextResult
from agtl._tool_loop import ToolLoopStream
from agtl._typed_output import ask_for_object, object_call
from agtl._vocabulary import ProviderInfo, SessionType, ToolCallStatus
from agtl.conversation import Conversation
from agtl.errors import (
    ExecutionClosedError,
    InvalidArgumentError,
    WorkflowFailure,
)
from agtl.events import COMPLETE, ERROR, RESERVED_EVENT_TYPES, Event
from agtl.guardrails import Guardrail
from agtl.summary import ToolCall
from agtl.tools import Tool
from agtl.validation import (
    check_decimal,
    check_optional_seconds,
    check_str,
    type_name,
)

__all__ = ["Session", "Step", "TextResult", "TextStream"]


class Session(SessionType):
    """Handed to a workflow; every LLM call and event of the execution goes through it."""

    __slots__ = ("_ctx",)

    def __init__(self, ctx: ExecutionContext) -> None:
        self._ctx = ctx

    @property
    def execution_id(self) -> str:
        return self._ctx.state.execution_id

    @property
    def provider(self) -> ProviderInfo:
        """The provider running this execution (its ``name``, ``default_model``)."""
        return self._ctx.runtime.provider

    # -- LLM calls ----------------------------------------------------------------------------
    async def generate_text(
        self,
        *,
        prompt: str | None = None,
        messages: Any = None,
        system: str | None = None,
        model: str | None = None,
        timeout: float | None = None,  # noqa: ASYNC109 - per-call budget, typed error
        first_token_timeout: float | None = None,
        stall_timeout: float | None = None,
        conversation: Conversation | None = None,
        tools: Sequence[Tool] | None = None,
        tool_choice: str | None = None,
        max_steps: int | None = None,
        tool_errors: str = "model",
        approval_timeout: float | None = None,
        on_max_steps: str = "raise",
        max_steps_prompt: str | None = None,
        end_on: Sequence[str] = (),
        input_guardrails: Sequence[Guardrail] = (),
        output_guardrails: Sequence[Guardrail] = (),
        **options: Any,
    ) -> TextResult:
        """Run one LLM call to the end and return its text, usage and stop reason.

        ``timeout`` bounds the whole call, ``first_token_timeout`` the wait for the first
        output and ``stall_timeout`` any gap between two pieces of output; each raises a
        subclass of :class:`~agtl.LLMTimeoutError` here, which the workflow may catch. The
        per-call budgets apply to each model call of a tool loop.

        With ``tools=``, runs the tool loop: call the model; run the tool calls it asks for
        (those of one step concurrently), send their results back, and call it again, until
        it answers with text. ``tool_choice`` ("auto", "required", "none" or a tool's name)
        applies to the first model call, later ones use "auto"; "each" forces every tool by
        name, in the order given, until each has run once, then has the model answer in text
        (for small models, which do not call tools on their own); after ``max_steps`` model
        calls (default 10) that still ask for tools, :class:`~agtl.ToolLoopError` is raised,
        or with ``on_max_steps="answer"`` one more call, with no tool run, asks the model to
        answer with what it has (``max_steps_prompt`` overrides the words). A successful call
        of a tool named in ``end_on`` ends the loop once its step ran (its reply is the result).
        A tool that raises is reported to the model as an error, or, with
        ``tool_errors="raise"``, raises :class:`~agtl.ToolError` here. ``approval_timeout``
        denies a call that waits longer for approval (for tools that set no bound of their own).

        ``input_guardrails`` check the user's new message, ``output_guardrails`` the reply as
        it streams; a block stops the call at once and raises :class:`~agtl.GuardrailTripped`
        (see ``guides/guardrails.md``).
        """
        spec = CallSpec.of(
            prompt=prompt,
            messages=messages,
            system=system,
            model=model,
            timeout=timeout,
            first_token_timeout=first_token_timeout,
            stall_timeout=stall_timeout,
            conversation=conversation,
            tools=tools,
            tool_choice=tool_choice,
            max_steps=max_steps,
            tool_errors=tool_errors,
            approval_timeout=approval_timeout,
            on_max_steps=on_max_steps,
            max_steps_prompt=max_steps_prompt,
            end_on=end_on,
            input_guardrails=input_guardrails,
            output_guardrails=output_guardrails,
            options=options,
        )
        return await self._generate(spec)

    async def _generate(self, spec: CallSpec) -> TextResult:
        """Run ``spec`` to its end: one call, or the tool loop."""
        if spec.tools is not None:
            # Nobody reads the parts: the summary keeps the tools' progress.
            loop = ToolLoopStream(self._ctx, spec, self, live_progress=False)
            async with loop:
                async for _ in loop.parts():
                    pass
            return loop.result
        stream = open_call(self._ctx, spec, session=self)
        async with stream:
            async for _ in stream:
                pass
        return stream.result

    async def generate_object(
        self,
        *,
        output_type: Any,
        prompt: str | None = None,
        messages: Any = None,
        system: str | None = None,
        model: str | None = None,
        retries: int = 2,
        timeout: float | None = None,  # noqa: ASYNC109 - per-call budget, typed error
        first_token_timeout: float | None = None,
        stall_timeout: float | None = None,
        conversation: Conversation | None = None,
        input_guardrails: Sequence[Guardrail] = (),
        output_guardrails: Sequence[Guardrail] = (),
        **options: Any,
    ) -> Any:
        """Ask for JSON matching ``output_type`` and return it validated, as that type.

        ``output_type`` is a pydantic model, a dataclass, a TypedDict or a plain type. A reply
        that does not validate is sent back with the errors, up to ``retries`` times; then
        :class:`~agtl.OutputValidationError` is raised. Every attempt is an LLM call in the
        summary (and a ``generate_object.invalid`` record for each one that failed). The
        per-call budgets are those of :meth:`generate_text`; with ``conversation=`` every
        attempt and every correction is a turn of it.
        """
        wanted, tries, spec = object_call(
            "generate_object",
            output_type,
            retries,
            options,
            prompt=prompt,
            messages=messages,
            system=system,
            model=model,
            timeout=timeout,
            first_token_timeout=first_token_timeout,
            stall_timeout=stall_timeout,
            conversation=conversation,
            input_guardrails=input_guardrails,
            output_guardrails=output_guardrails,
        )
        return await ask_for_object(
            spec, wanted, tries, generate=self._generate, record=self.record
        )

    def stream_object(
        self,
        *,
        output_type: Any,
        prompt: str | None = None,
        messages: Any = None,
        system: str | None = None,
        model: str | None = None,
        retries: int = 2,
        timeout: float | None = None,
        first_token_timeout: float | None = None,
        stall_timeout: float | None = None,
        conversation: Conversation | None = None,
        input_guardrails: Sequence[Guardrail] = (),
        output_guardrails: Sequence[Guardrail] = (),
        **options: Any,
    ) -> ObjectStream:
        """Ask for JSON matching ``output_type``, as :meth:`generate_object` does, and read
        it as it arrives: ``async with session.stream_object(...) as stream: async for
        partial in stream: ...``, then ``stream.object`` is the validated value.

        Each partial is the JSON value so far, as plain dicts and lists (the members that
        are complete, and the string being written cut where the text stops; a number or
        key still being written is left out), handed out whenever it grew. A reply that
        does not validate is sent back with what was wrong, up to ``retries`` times, and the
        next attempt streams from an empty value. If the execution stops mid-stream, the
        last partial is kept in ``Result.partial.object``.
        """
        wanted, tries, spec = object_call(
            "stream_object",
            output_type,
            retries,
            options,
            prompt=prompt,
            messages=messages,
            system=system,
            model=model,
            timeout=timeout,
            first_token_timeout=first_token_timeout,
            stall_timeout=stall_timeout,
            conversation=conversation,
            input_guardrails=input_guardrails,
            output_guardrails=output_guardrails,
        )
        return ObjectStream(self._ctx, spec, wanted, tries, session=self, record=self.record)

    @overload
    def stream_text(
        self,
        *,
        prompt: str | None = None,
        messages: Any = None,
        system: str | None = None,
        model: str | None = None,
        timeout: float | None = None,
        first_token_timeout: float | None = None,
        stall_timeout: float | None = None,
        conversation: Conversation | None = None,
        tools: None = None,
        input_guardrails: Sequence[Guardrail] = (),
        output_guardrails: Sequence[Guardrail] = (),
        **options: Any,
    ) -> TextStream: ...

    @overload
    def stream_text(
        self,
        *,
        prompt: str | None = None,
        messages: Any = None,
        system: str | None = None,
        model: str | None = None,
        timeout: float | None = None,
        first_token_timeout: float | None = None,
        stall_timeout: float | None = None,
        conversation: Conversation | None = None,
        tools: Sequence[Tool],
        tool_choice: str | None = None,
        max_steps: int | None = None,
        tool_errors: str = "model",
        approval_timeout: float | None = None,
        on_max_steps: str = "raise",
        max_steps_prompt: str | None = None,
        end_on: Sequence[str] = (),
        input_guardrails: Sequence[Guardrail] = (),
        output_guardrails: Sequence[Guardrail] = (),
        **options: Any,
    ) -> ToolLoopStream: ...

    def stream_text(
        self,
        *,
        prompt: str | None = None,
        messages: Any = None,
        system: str | None = None,
        model: str | None = None,
        timeout: float | None = None,
        first_token_timeout: float | None = None,
        stall_timeout: float | None = None,
        conversation: Conversation | None = None,
        tools: Sequence[Tool] | None = None,
        tool_choice: str | None = None,
        max_steps: int | None = None,
        tool_errors: str = "model",
        approval_timeout: float | None = None,
        on_max_steps: str = "raise",
        max_steps_prompt: str | None = None,
        end_on: Sequence[str] = (),
        input_guardrails: Sequence[Guardrail] = (),
        output_guardrails: Sequence[Guardrail] = (),
        **options: Any,
    ) -> TextStream | ToolLoopStream:
        """Start an LLM call whose output arrives as text deltas.

        Use it as ``async with session.stream_text(...) as stream: async for delta in
        stream: ...``; afterwards ``stream.result`` holds the :class:`TextResult`. Leaving
        the block early stops the call (stop reason ``cancelled``).

        With ``conversation=``, the model is sent the conversation's history and ``prompt`` (if
        given) is appended to it as the user's turn when the call starts; the reply is appended
        when it ends, or, if the call is stopped or fails, what was said so far is kept as a
        partial reply followed by a :class:`~agtl.CancelMarker`.

        With ``tools=`` it streams the tool loop of :meth:`generate_text` instead: the text of
        every model call, and with ``stream.parts()`` the tool calls starting and finishing.
        """
        if tools is None and (
            tool_choice is not None or max_steps is not None or tool_errors != "model"
        ):
            raise InvalidArgumentError(
                "tools", "tool_choice, max_steps and tool_errors need tools=[...]"
            )
        spec = CallSpec.of(
            prompt=prompt,
            messages=messages,
            system=system,
            model=model,
            timeout=timeout,
            first_token_timeout=first_token_timeout,
            stall_timeout=stall_timeout,
            conversation=conversation,
            tools=tools,
            tool_choice=tool_choice,
            max_steps=max_steps,
            tool_errors=tool_errors,
            approval_timeout=approval_timeout,
            on_max_steps=on_max_steps,
            max_steps_prompt=max_steps_prompt,
            end_on=end_on,
            input_guardrails=input_guardrails,
            output_guardrails=output_guardrails,
            options=options,
        )
        if spec.tools is not None:
            return ToolLoopStream(self._ctx, spec, self)
        return open_call(self._ctx, spec, session=self)

    # -- a person in the loop -------------------------------------------------------------------
    async def request_input(
        self,
        prompt: str,
        output_type: Any = str,
        *,
        timeout: float | None = None,  # noqa: ASYNC109 - the wait's own bound, a typed error
    ) -> Any:
        """Wait for a person's answer to ``prompt``, validated as ``output_type``: listed in
        ``execution.pending_inputs``, answered from any thread with ``provide_input``, and
        an ``input_requested`` event (``id``, ``prompt``, ``schema``) when streaming. A cancel
        ends the wait; none within ``timeout`` raises :class:`~agtl.InputTimeoutError`."""
        seconds = check_optional_seconds("timeout", timeout)
        return await answer_to(self._ctx, check_str("prompt", prompt), output_type, seconds)

    # -- events -------------------------------------------------------------------------------
    def emit(self, type: str, data: Any = None) -> Event:
        """Create an event stamped with metrics.

        In a streaming execution the event reaches consumers when the workflow yields it; in
        a simple execution it is recorded at once. ``complete`` and ``error`` are reserved:
        use :meth:`done` and :meth:`fail`.
        """
        check_str("type", type)
        if type in RESERVED_EVENT_TYPES:
            raise InvalidArgumentError(
                "type",
                f"{type!r} is reserved for terminal events: use session.done() / session.fail()",
            )
        self._check_open("emit")
        event = self._ctx.state.make_event(type, data)
        if not self._ctx.state.streaming:
            self._ctx.state.deliver(event)
        return event

    async def done(self, value: Any = None) -> Event:
        """Deliver the terminal ``complete`` event: the execution succeeds with ``value``.

        The event is delivered at once (yielding it afterwards is allowed and ignored), then
        the execution stops: nothing after it runs past the next checkpoint, and no further
        LLM call can start.
        """
        return await self._terminal(COMPLETE, value, "done")

    async def fail(self, error: BaseException | str, data: Any = None) -> Event:
        """Deliver the terminal ``error`` event: the execution fails with ``error``."""
        if isinstance(error, str):
            error = WorkflowFailure(error, data)
        elif not isinstance(error, BaseException):
            raise InvalidArgumentError(
                "error", f"must be an exception or a str, not {type_name(error)}"
            )
        return await self._terminal(ERROR, {"error": error, "data": data}, "fail")

    async def _terminal(self, type_: str, data: Any, method: str) -> Event:
        await trio.lowlevel.checkpoint_if_cancelled()
        self._check_open(method)
        event = self._ctx.state.make_event(type_, data)
        self._ctx.state.deliver(event)
        return event

    def _check_open(self, what: str) -> None:
        if self._ctx.state.terminal is not None:
            raise ExecutionClosedError(
                f"session.{what}() after the terminal {self._ctx.state.terminal.type!r} event: "
                "the execution is already decided"
            )
        if self._ctx.state.frozen:
            raise ExecutionClosedError(f"session.{what}() after the execution ended")

    # -- records ------------------------------------------------------------------------------
    def on_done(self, callback: Callable[[Any], object]) -> None:
        """Run ``callback(result)`` with the execution's :class:`~agtl.Result` when it ends.

        Callbacks may be sync or async. They run last-registered-first, exactly once,
        shielded from cancellation for a bounded grace time; one that raises is logged and
        does not stop the others.
        """
        if not callable(callback):
            raise InvalidArgumentError("callback", f"must be callable, not {type_name(callback)}")
        if self._ctx.state.frozen:
            raise ExecutionClosedError("session.on_done() after the execution ended")
        self._ctx.state.add_hook(callback)

    def record(self, kind: str, data: Any = None) -> None:
        """Keep a free-form record in the summary."""
        check_str("kind", kind)
        self._ctx.state.add_record(kind, data)

    def record_tool_call(
        self,
        name: str,
        arguments: Any = None,
        result: Any = None,
        *,
        error: str | BaseException | None = None,
        duration: float | None = None,
    ) -> None:
        """Keep a tool call (name, arguments, result or error, duration) in the summary."""
        check_str("name", name)
        seconds = check_optional_seconds("duration", duration)
        message = None if error is None else str(error) or type(error).__name__
        state = self._ctx.state
        status = ToolCallStatus.OK if message is None else ToolCallStatus.ERROR
        state.add_tool_call(
            ToolCall(name, arguments, result, message, seconds, state.elapsed(), status)
        )

    def record_cost(
        self, label: str, amount: Decimal | int | float | str, data: Any = None
    ) -> None:
        """Add a non-LLM cost in USD (a search API, a tool) to the summary's total."""
        check_str("label", label)
        value = check_decimal("amount", amount)
        self._ctx.state.add_cost(label, value, data)

    def set_metadata(self, **values: Any) -> None:
        """Attach key/value metadata to the summary (later values replace earlier ones)."""
        self._ctx.state.update_metadata(values)
