"""A model call as a value: everything a caller asked for, checked once.

Every public entry that makes a model call (``Session.generate_text``, ``stream_text``,
``generate_object``, and ``Provider.generate_text`` through the first) turns its arguments into
one :class:`CallSpec` with :meth:`CallSpec.of`. What follows (the call, the tool loop and its
steps, the typed-output retries) reads the spec and never checks an argument again, so an
option means the same on every entry and is refused with the same message.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Final

import attrs

from agtl._guard import Guards
from agtl.backend import ToolSpec
from agtl.conversation import Conversation
from agtl.errors import InvalidArgumentError
from agtl.guardrails import check_guardrails
from agtl.messages import Message, Role, build_messages
from agtl.options import GenerationOptions
from agtl.tools import Tool, check_tools
from agtl.validation import check_count, check_optional_seconds, check_str, type_name

__all__ = ["DEFAULT_MAX_STEPS", "MAX_STEPS_PROMPT", "CallSpec", "Deadlines", "ToolUse"]

#: How many model calls a tool loop makes at most, unless ``max_steps=`` says otherwise.
DEFAULT_MAX_STEPS: Final = 10
_TOOL_ERRORS: Final = ("model", "raise")
_ON_MAX_STEPS: Final = ("raise", "answer")
#: What the model is told when a tool loop with ``on_max_steps="answer"`` runs out of steps.
MAX_STEPS_PROMPT: Final = (
    "You have used every tool call you were allowed. Do not call any more tools: answer the "
    "question now, as well as you can, with what you have found so far."
)


@attrs.frozen
class Deadlines:
    """The per-call budgets, in seconds (``None``: none): the whole call, the wait for the
    first output, any gap between two pieces. Each model call of a tool loop gets them."""

    call: float | None = None
    first_token: float | None = None
    stall: float | None = None


NO_DEADLINES: Final = Deadlines()


@attrs.frozen
class ToolUse:
    """The tools a call offers and how the loop treats them."""

    by_name: Mapping[str, Tool]
    specs: tuple[ToolSpec, ...]
    choice: str  # for the first model call; later ones use "auto"
    max_steps: int
    raise_errors: bool
    #: After ``max_steps`` calls that still ask for tools: ``None`` raises ToolLoopError;
    #: else one more call, with no tools run, asks the model to answer with this prompt.
    answer_prompt: str | None = None
    #: Tools whose successful call ends the loop once its step ran (an agent's handoffs).
    end_on: frozenset[str] = frozenset()


@attrs.frozen
class CallSpec:
    """One model call (or tool loop) as asked for, checked.

    ``messages`` is the history built from ``prompt``/``messages``/``system``, or ``None``
    when the call continues a ``conversation`` (which then holds the history and the system
    prompt, and ``prompt`` is the new user turn). ``options`` are the caller's generation
    options, parsed (``None``: only the provider's defaults).
    """

    messages: tuple[Message, ...] | None
    conversation: Conversation | None
    prompt: str | None
    model: str | None
    options: GenerationOptions | None
    deadlines: Deadlines
    tools: ToolUse | None
    #: Its guardrails (``None``: none); a loop's later calls keep only the output ones.
    guards: Guards | None = None

    def input_text(self) -> str:
        """What input guardrails check: the new user turn, else the last user message."""
        if self.prompt is not None:
            return self.prompt
        history = self.messages
        if history is None:
            assert self.conversation is not None  # a spec has one or the other
            history = tuple(self.conversation.to_model_messages())
        for message in reversed(history):
            if message.role is Role.USER:
                return message.content or ""
        return ""

    @classmethod
    def of(
        cls,
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
        input_guardrails: Sequence[Any] = (),
        output_guardrails: Sequence[Any] = (),
        options: Mapping[str, Any] | None = None,
    ) -> CallSpec:
        """Check every argument, in the order a reader meets them; the first wrong one
        raises :class:`~agtl.InvalidArgumentError` naming it."""
        use = _tool_use(tools, tool_choice, max_steps, tool_errors, approval_timeout)
        if on_max_steps != "raise" or max_steps_prompt is not None:
            use = _on_max_steps(use, on_max_steps, max_steps_prompt)
        if end_on:
            use = _end_on(use, end_on)
        built: tuple[Message, ...] | None
        if conversation is not None:
            _check_conversation_call(conversation, prompt=prompt, messages=messages, system=system)
            built = None
        else:
            built = build_messages(prompt=prompt, messages=messages, system=system)
        if model is not None:
            check_str("model", model)
        parsed = GenerationOptions.from_kwargs(dict(options)) if options else None
        if timeout is None and first_token_timeout is None and stall_timeout is None:
            deadlines = NO_DEADLINES
        else:
            deadlines = Deadlines(
                call=check_optional_seconds("timeout", timeout),
                first_token=check_optional_seconds("first_token_timeout", first_token_timeout),
                stall=check_optional_seconds("stall_timeout", stall_timeout),
            )
        guards = None
        if input_guardrails or output_guardrails:
            guards = Guards(
                check_guardrails("input_guardrails", input_guardrails) if input_guardrails else (),
                check_guardrails("output_guardrails", output_guardrails)
                if output_guardrails
                else (),
            )
        return cls(built, conversation, prompt, model, parsed, deadlines, use, guards)


def _tool_use(
    tools: Sequence[Tool] | None,
    choice: str | None,
    max_steps: int | None,
    errors: str,
    approval_timeout: float | None,
) -> ToolUse | None:
    if tools is None and choice is None and max_steps is None:
        if errors != "model":
            raise InvalidArgumentError("tool_errors", "only applies to a call with tools=")
        if approval_timeout is not None:
            raise InvalidArgumentError("approval_timeout", "only applies to a call with tools=")
        return None
    checked = check_tools(tools if tools is not None else [])
    if check_optional_seconds("approval_timeout", approval_timeout) is not None:
        # The call's bound for the tools that need approval and set none of their own.
        checked = tuple(
            attrs.evolve(t, approval_timeout=approval_timeout)
            if t.needs_approval is not False and t.approval_timeout is None
            else t
            for t in checked
        )
    by_name = {t.name: t for t in checked}
    chosen = _check_tool_choice(choice, by_name)
    steps = check_count(
        "max_steps", DEFAULT_MAX_STEPS if max_steps is None else max_steps, minimum=1
    )
    if errors not in _TOOL_ERRORS:
        raise InvalidArgumentError("tool_errors", f"must be 'model' or 'raise', not {errors!r}")
    return ToolUse(by_name, tuple(t.spec for t in checked), chosen, steps, errors == "raise")


def _on_max_steps(use: ToolUse | None, on_max_steps: object, prompt: str | None) -> ToolUse:
    """``on_max_steps`` ("raise" or "answer") and the prompt of the answer, checked."""
    if use is None:
        raise InvalidArgumentError("on_max_steps", "only applies to a call with tools=")
    if on_max_steps not in _ON_MAX_STEPS:
        raise InvalidArgumentError(
            "on_max_steps", f"must be 'raise' or 'answer', not {on_max_steps!r}"
        )
    if prompt is not None:
        check_str("max_steps_prompt", prompt)
        if on_max_steps != "answer":
            raise InvalidArgumentError("max_steps_prompt", "needs on_max_steps='answer'")
    if on_max_steps == "raise":
        return use
    return attrs.evolve(use, answer_prompt=MAX_STEPS_PROMPT if prompt is None else prompt)


def _end_on(use: ToolUse | None, names: object) -> ToolUse:
    """``end_on``: names of the call's tools whose call ends the loop."""
    if use is None:
        raise InvalidArgumentError("end_on", "only applies to a call with tools=")
    if isinstance(names, str) or not isinstance(names, Sequence):
        raise InvalidArgumentError("end_on", f"must be a list of tool names, not {names!r}")
    unknown = [n for n in names if n not in use.by_name]
    if unknown:
        raise InvalidArgumentError("end_on", f"names no tool of the call: {unknown!r}")
    return attrs.evolve(use, end_on=frozenset(names))


def _check_tool_choice(choice: object, tools: Mapping[str, Tool]) -> str:
    """``tool_choice``: "auto" (default), "required", "none", "each", or a tool's name."""
    if choice is None:
        return "auto"
    if not isinstance(choice, str):
        raise InvalidArgumentError("tool_choice", f"must be a str, not {type_name(choice)}")
    if choice in ("auto", "required", "none", "each") or choice in tools:
        if choice != "none" and not tools:
            raise InvalidArgumentError("tools", f"tool_choice={choice!r} needs at least one tool")
        return choice
    names = ", ".join(sorted(tools)) or "no tools were given"
    raise InvalidArgumentError(
        "tool_choice",
        f"{choice!r} is not 'auto', 'required', 'none', 'each' or a tool's name ({names})",
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
