"""The session: what a workflow receives to call models and report progress."""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from decimal import Decimal
from typing import Any, Final, overload

import trio

from agtl._call import CallEnv, TextStream
from agtl._cancel import Cancellation
from agtl._replies import Step, TextResult
from agtl._runtime import Runtime
from agtl._state import ExecutionState
from agtl._tool_loop import ToolLoopStream
from agtl._tool_runner import StepRunner
from agtl._typed_output import OutputSchema, describe
from agtl._vocabulary import Logger, ProviderInfo, SessionType, ToolCallStatus
from agtl.conversation import Conversation
from agtl.errors import (
    ExecutionClosedError,
    InvalidArgumentError,
    OutputValidationError,
    WorkflowFailure,
)
from agtl.events import COMPLETE, ERROR, RESERVED_EVENT_TYPES, Event
from agtl.limits import UsageLimits
from agtl.messages import Message, Role, build_messages
from agtl.options import GenerationOptions
from agtl.summary import ToolCall
from agtl.tools import Tool, check_tools
from agtl.validation import (
    check_count,
    check_decimal,
    check_optional_seconds,
    check_str,
    type_name,
)

__all__ = ["Session", "Step", "TextResult", "TextStream"]


#: How many model calls a tool loop makes at most, unless ``max_steps=`` says otherwise.
DEFAULT_MAX_STEPS: Final = 10
_TOOL_ERRORS: Final = ("model", "raise")


class Session(SessionType):
    """Handed to a workflow; every LLM call and event of the execution goes through it."""

    __slots__ = ("_cancellation", "_limits", "_log", "_runtime", "_state")

    def __init__(
        self,
        state: ExecutionState,
        cancellation: Cancellation,
        runtime: Runtime,
        limits: UsageLimits | None,
        log: Logger,
    ) -> None:
        self._state = state
        self._cancellation = cancellation
        self._runtime = runtime
        self._limits = limits
        self._log = log

    @property
    def execution_id(self) -> str:
        return self._state.execution_id

    @property
    def provider(self) -> ProviderInfo:
        """The provider running this execution (its ``name``, ``default_model``)."""
        return self._runtime.provider

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
        applies to the first model call, later ones use "auto"; after ``max_steps`` model
        calls (default 10) that still ask for tools, :class:`~agtl.ToolLoopError` is raised.
        A tool that raises is reported to the model as an error, or, with
        ``tool_errors="raise"``, raises :class:`~agtl.ToolError` here.
        """
        if tools is not None or tool_choice is not None or max_steps is not None:
            loop = self._tool_loop_stream(
                prompt=prompt,
                messages=messages,
                system=system,
                model=model,
                timeouts=(timeout, first_token_timeout, stall_timeout),
                conversation=conversation,
                tools=tools,
                tool_choice=tool_choice,
                max_steps=max_steps,
                tool_errors=tool_errors,
                options=options,
                live_progress=False,  # nobody reads the parts: the summary keeps the progress
            )
            async with loop:
                async for _ in loop.parts():
                    pass
            return loop.result
        if tool_errors != "model":
            raise InvalidArgumentError("tool_errors", "only applies to a call with tools=")
        stream = self._text_stream(
            prompt=prompt,
            messages=messages,
            system=system,
            model=model,
            timeout=timeout,
            first_token_timeout=first_token_timeout,
            stall_timeout=stall_timeout,
            conversation=conversation,
            options=options,
        )
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
        **options: Any,
    ) -> Any:
        """Ask for JSON matching ``output_type`` and return it validated, as that type.

        ``output_type`` is a pydantic model, a dataclass, a TypedDict or a plain type. A reply
        that does not validate is sent back with the errors, up to ``retries`` times; then
        :class:`~agtl.OutputValidationError` is raised. Every attempt is an LLM call in the
        summary (and a ``generate_object.invalid`` record for each one that failed).
        """
        wanted = OutputSchema.of(output_type)
        tries = check_count("retries", retries)
        if "response_format" in options:
            raise InvalidArgumentError(
                "response_format", "generate_object sets it from output_type: leave it out"
            )
        history = list(build_messages(prompt=prompt, messages=messages, system=system))
        problem, text = "", ""
        for attempt in range(tries + 1):
            reply = await self.generate_text(
                messages=history,
                model=model,
                timeout=timeout,
                response_format=wanted.response_format(),
                **options,
            )
            text = reply.text
            try:
                return wanted.validate(text)
            except ValueError as exc:  # pydantic's ValidationError, or not JSON at all
                problem = describe(exc)
            self.record(
                "generate_object.invalid",
                {"attempt": attempt + 1, "call": reply.call_index, "problem": problem},
            )
            history += [
                Message(Role.ASSISTANT, text),
                Message(
                    Role.USER,
                    f"That reply is not valid: {problem}. Reply again with only JSON "
                    f"matching the schema {json.dumps(wanted.schema)}.",
                ),
            ]
        raise OutputValidationError(wanted.name, tries + 1, problem, text)

    def _tool_loop_stream(
        self,
        *,
        prompt: str | None,
        messages: Any,
        system: str | None,
        model: str | None,
        timeouts: tuple[float | None, float | None, float | None],
        conversation: Conversation | None,
        tools: Sequence[Tool] | None,
        tool_choice: str | None,
        max_steps: int | None,
        tool_errors: str,
        options: dict[str, Any],
        live_progress: bool = True,
    ) -> ToolLoopStream:
        """The tool loop of :meth:`generate_text` and :meth:`stream_text` (see there)."""
        checked = check_tools(tools if tools is not None else [])
        by_name = {t.name: t for t in checked}
        choice = _check_tool_choice(tool_choice, by_name)
        steps_allowed = check_count(
            "max_steps", DEFAULT_MAX_STEPS if max_steps is None else max_steps, minimum=1
        )
        if tool_errors not in _TOOL_ERRORS:
            raise InvalidArgumentError(
                "tool_errors", f"must be 'model' or 'raise', not {tool_errors!r}"
            )
        history: list[Message] = []
        if conversation is None:
            history = list(build_messages(prompt=prompt, messages=messages, system=system))
        else:
            _check_conversation_call(conversation, prompt=prompt, messages=messages, system=system)
        specs = tuple(t.spec for t in checked)
        runner = StepRunner(
            tools=by_name,
            state=self._state,
            cancellation=self._cancellation,
            limits=self._limits,
            log=self._log,
            session=self,
            raise_errors=tool_errors == "raise",
        )
        timeout, first_token_timeout, stall_timeout = timeouts

        def open_step(number: int, so_far: list[Message]) -> TextStream:
            stream = self._text_stream(
                messages=None,
                conversation=conversation,
                prompt=prompt if conversation is not None and number == 0 else None,
                system=None,
                model=model,
                timeout=timeout,
                first_token_timeout=first_token_timeout,
                stall_timeout=stall_timeout,
                options=options,
                # the history was checked once, and grows only by messages agtl made
                checked_messages=tuple(so_far) if conversation is None else None,
            )
            # tool_choice applies to the first model call; later ones may answer in text.
            stream._offer_tools(specs, choice if number == 0 else "auto")
            return stream

        return ToolLoopStream(
            open_step,
            runner,
            history=history,
            conversation=conversation,
            max_steps=steps_allowed,
            answer_only=choice == "none",
            cancellation=self._cancellation,
            live_progress=live_progress,
        )

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
        if tools is not None:
            return self._tool_loop_stream(
                prompt=prompt,
                messages=messages,
                system=system,
                model=model,
                timeouts=(timeout, first_token_timeout, stall_timeout),
                conversation=conversation,
                tools=tools,
                tool_choice=tool_choice,
                max_steps=max_steps,
                tool_errors=tool_errors,
                options=options,
            )
        if tool_choice is not None or max_steps is not None or tool_errors != "model":
            raise InvalidArgumentError(
                "tools", "tool_choice, max_steps and tool_errors need tools=[...]"
            )
        return self._text_stream(
            prompt=prompt,
            messages=messages,
            system=system,
            model=model,
            timeout=timeout,
            first_token_timeout=first_token_timeout,
            stall_timeout=stall_timeout,
            conversation=conversation,
            options=options,
        )

    def _text_stream(
        self,
        *,
        prompt: str | None,
        messages: Any,
        system: str | None,
        model: str | None,
        timeout: float | None,
        first_token_timeout: float | None,
        stall_timeout: float | None,
        conversation: Conversation | None,
        options: dict[str, Any],
        checked_messages: tuple[Message, ...] | None = None,
    ) -> TextStream:
        """One call's stream; ``checked_messages`` skips checking messages built by agtl."""
        built: tuple[Message, ...] | None
        if checked_messages is not None:
            built = checked_messages
        elif conversation is not None:
            built = None
            _check_conversation_call(conversation, prompt=prompt, messages=messages, system=system)
        else:
            built = build_messages(prompt=prompt, messages=messages, system=system)
        if model is not None:
            check_str("model", model)
        runtime = self._runtime
        call_options = runtime.default_options
        if options:
            call_options = call_options.merged(GenerationOptions.from_kwargs(options))
        resolved_model = model or runtime.default_model
        if resolved_model is None:
            raise InvalidArgumentError(
                "model",
                "no model given and the provider has no default; pass model=... "
                "or configure provider.with_default_model(...)",
            )
        return TextStream(
            CallEnv(self._state, self._cancellation, runtime, self._limits, self._log),
            resolved_model,
            built,
            call_options,
            timeout=check_optional_seconds("timeout", timeout),
            first_token_timeout=check_optional_seconds("first_token_timeout", first_token_timeout),
            stall_timeout=check_optional_seconds("stall_timeout", stall_timeout),
            conversation=conversation,
            user_turn=prompt if conversation is not None else None,
        )

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
        event = self._state.make_event(type, data)
        if not self._state.streaming:
            self._state.deliver(event)
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
        event = self._state.make_event(type_, data)
        self._state.deliver(event)
        return event

    def _check_open(self, what: str) -> None:
        if self._state.terminal is not None:
            raise ExecutionClosedError(
                f"session.{what}() after the terminal {self._state.terminal.type!r} event: "
                "the execution is already decided"
            )
        if self._state.frozen:
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
        if self._state.frozen:
            raise ExecutionClosedError("session.on_done() after the execution ended")
        self._state.add_hook(callback)

    def record(self, kind: str, data: Any = None) -> None:
        """Keep a free-form record in the summary."""
        check_str("kind", kind)
        self._state.add_record(kind, data)

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
        state = self._state
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
        self._state.add_cost(label, value, data)

    def set_metadata(self, **values: Any) -> None:
        """Attach key/value metadata to the summary (later values replace earlier ones)."""
        self._state.update_metadata(values)


def _check_tool_choice(choice: object, tools: Mapping[str, Tool]) -> str:
    """``tool_choice``: "auto" (default), "required", "none", or one of the tools' names."""
    if choice is None:
        return "auto"
    if not isinstance(choice, str):
        raise InvalidArgumentError("tool_choice", f"must be a str, not {type_name(choice)}")
    if choice in ("auto", "required", "none") or choice in tools:
        if choice != "none" and not tools:
            raise InvalidArgumentError("tools", f"tool_choice={choice!r} needs at least one tool")
        return choice
    names = ", ".join(sorted(tools)) or "no tools were given"
    raise InvalidArgumentError(
        "tool_choice",
        f"{choice!r} is not 'auto', 'required', 'none' or a tool's name ({names})",
    )


def _check_conversation_call(
    conversation: object, *, prompt: object, messages: object, system: object
) -> None:
    if not isinstance(conversation, Conversation):
        raise InvalidArgumentError(
            "conversation", f"must be an agtl.Conversation, not {type_name(conversation)}"
        )
    if messages is not None or system is not None:
        raise InvalidArgumentError(
            "conversation",
            "pass it without messages= or system=: the conversation holds the history and the "
            "system prompt; use prompt= for the new user message",
        )
    if prompt is not None:
        check_str("prompt", prompt)
    elif not any(m.role is not Role.SYSTEM for m in conversation.to_model_messages()):
        raise InvalidArgumentError(
            "prompt", "the conversation has no user message yet: pass prompt=... for the first turn"
        )
