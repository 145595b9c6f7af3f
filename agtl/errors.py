"""The exceptions agtl raises, in one hierarchy rooted at :class:`AgtlError`.

Errors that end an execution are never raised by ``await execution.result()``; they are put
on the :class:`~agtl.Result`. They are raised by :meth:`~agtl.Result.unwrap`, by bad calls
(wrong arguments are reported at the call, naming the argument), and inside workflows (an LLM
call that timed out, a provider that refused a request) where the workflow may catch them.
"""

from __future__ import annotations

from typing import Any

from agtl._vocabulary import CancelInfo, Partial

__all__ = [
    "AgtlError",
    "AuthenticationError",
    "BadRequestError",
    "CallTimeoutError",
    "ContextLengthError",
    "ExecutionCancelled",
    "ExecutionClosedError",
    "ExecutionFailed",
    "FirstTokenTimeoutError",
    "GuardrailTripped",
    "IncompleteStreamError",
    "InputTimeoutError",
    "InvalidArgumentError",
    "LLMError",
    "LLMTimeoutError",
    "ModelNotFoundError",
    "NoTerminalEventError",
    "NotInToolError",
    "NotInTrioError",
    "OutputValidationError",
    "PermissionDeniedError",
    "ProviderConnectionError",
    "ProviderError",
    "ProviderTimeoutError",
    "RateLimitError",
    "RemoteError",
    "ServerError",
    "StallTimeoutError",
    "ToolArgumentsError",
    "ToolError",
    "ToolLoopError",
    "UnserializableValueError",
    "WorkflowFailure",
]


class AgtlError(Exception):
    """Base class of every exception agtl defines."""


class InvalidArgumentError(AgtlError, ValueError, TypeError):
    """An argument to a public entry point was wrong: the message names it and what is allowed.

    It is both a ``ValueError`` and a ``TypeError`` so that callers catching either see it.
    """

    def __init__(self, argument: str, problem: str) -> None:
        self.argument = argument
        self.problem = problem
        super().__init__(f"{argument}: {problem}")


class ExecutionClosedError(AgtlError, RuntimeError):
    """The execution no longer accepts work: a terminal event was delivered or it was cancelled.

    Raised by ``emit``/``done``/``fail`` after the terminal event and by any LLM call made after
    the execution ended, so no stray (paid) call can slip out after the outcome is decided.
    """


class InputTimeoutError(AgtlError, TimeoutError):
    """``session.request_input(..., timeout=)`` got no answer in time (catchable in the
    workflow)."""


class NotInToolError(AgtlError, RuntimeError):
    """``agtl.current_tool_call()`` was asked outside a tool call the tool loop runs."""


class NotInTrioError(AgtlError, RuntimeError):
    """An agtl coroutine was awaited outside a trio run (under asyncio, or another library).

    agtl runs on trio. The message says how to reach it from where the caller is:
    :mod:`agtl.aio` from asyncio code, :func:`agtl.run` from synchronous code.
    """

    def __init__(self, what: str, library: str | None) -> None:
        self.what = what
        self.library = library
        where = f"under {library}" if library else "outside a trio run"
        super().__init__(
            f"{what} was awaited {where}, but agtl runs on trio. "
            "From asyncio code use `await agtl.aio.result(execution)` or "
            "`async for event in agtl.aio.events(execution)`; from synchronous code "
            "(scripts, the REPL) use `agtl.run(execution)`; in a trio program, await it "
            "inside `trio.run(...)`."
        )


class RemoteError(AgtlError):
    """The error of an execution rebuilt from a record (``Result.from_dict``): the original
    exception's type name and message, which is all a record keeps of it."""

    def __init__(self, type_name: str, message: str) -> None:
        self.type_name = type_name
        super().__init__(message)

    def __repr__(self) -> str:
        return f"RemoteError({self.type_name}: {self})"


class UnserializableValueError(AgtlError, TypeError):
    """A value leaving the process as JSON (a Result's value, an event's data, a tool's
    result) holds an object with no JSON form; ``path`` says where it sits in the value."""

    def __init__(self, path: str, type_name: str, detail: str | None = None) -> None:
        self.path = path
        self.type_name = type_name
        why = f" ({detail})" if detail else ""
        super().__init__(
            f"{path} is a {type_name}, which has no JSON form{why}: use JSON data (dict, "
            "list, str, number, bool, None), a pydantic model, a dataclass, an attrs class, "
            "an enum, a datetime, a Decimal or bytes"
        )


class NoTerminalEventError(AgtlError):
    """A streaming workflow ended without delivering a ``complete`` or ``error`` event."""


class WorkflowFailure(AgtlError):
    """The error carried by ``session.fail(...)`` when it was given a message, not an exception."""

    def __init__(self, message: str, data: object = None) -> None:
        self.data = data
        super().__init__(message)


class ExecutionCancelled(AgtlError):
    """Raised by :meth:`Result.unwrap` for a canceled execution; carries what was produced."""

    def __init__(self, execution_id: str, partial: Partial, cancel: CancelInfo | None) -> None:
        self.execution_id = execution_id
        self.partial = partial
        self.cancel = cancel
        where = f" ({cancel.source}: {cancel.reason})" if cancel is not None else ""
        super().__init__(f"execution {execution_id} was canceled{where}")


class ExecutionFailed(AgtlError):
    """Raised by :meth:`Result.unwrap` for a failed execution; ``__cause__`` is the error."""

    def __init__(self, execution_id: str, error: BaseException, partial: Partial) -> None:
        self.execution_id = execution_id
        self.error = error
        self.partial = partial
        super().__init__(f"execution {execution_id} failed: {type(error).__name__}: {error}")


class LLMError(AgtlError):
    """An LLM call failed. ``is_retryable`` says whether trying the same call again may work."""

    is_retryable: bool = False


class LLMTimeoutError(LLMError, TimeoutError):
    """A per-call deadline passed. The workflow may catch it and try again."""

    is_retryable = True

    def __init__(self, seconds: float, *, model: str | None = None) -> None:
        self.seconds = seconds
        self.model = model
        super().__init__(self._describe(seconds))

    def _describe(self, seconds: float) -> str:
        return f"the LLM call did not finish within timeout={seconds:g}s"


class CallTimeoutError(LLMTimeoutError):
    """The whole call (queueing, prompt processing and output) exceeded ``timeout=``."""


class FirstTokenTimeoutError(LLMTimeoutError):
    """No output arrived within ``first_token_timeout=`` of the call's start."""

    def _describe(self, seconds: float) -> str:
        return f"no output within first_token_timeout={seconds:g}s"


class StallTimeoutError(LLMTimeoutError):
    """The stream went quiet for longer than ``stall_timeout=`` between two deltas."""

    def _describe(self, seconds: float) -> str:
        return f"the stream stalled for more than stall_timeout={seconds:g}s"


class ContextLengthError(LLMError):
    """The prompt (plus the requested output) does not fit the model's context window."""

    def __init__(
        self,
        prompt_tokens: int | None,
        context: int | None,
        *,
        model: str | None = None,
        detail: str | None = None,
    ) -> None:
        self.prompt_tokens = prompt_tokens
        self.context = context
        self.model = model
        if prompt_tokens is not None and context is not None:
            what = f"the prompt has {prompt_tokens} tokens but the context holds {context}"
        else:
            what = detail or "the prompt does not fit the model's context"
        super().__init__(f"{what}: shorten the history or use a model with a larger context")


class ProviderError(LLMError):
    """A backend refused or broke a call. Providers raise subclasses with precise meanings."""

    default_retryable: bool = False

    def __init__(
        self,
        message: str,
        *,
        provider: str | None = None,
        status_code: int | None = None,
        retryable: bool | None = None,
    ) -> None:
        self.provider = provider
        self.status_code = status_code
        self.is_retryable = self.default_retryable if retryable is None else retryable
        super().__init__(message)


class RateLimitError(ProviderError):
    """429: slow down. ``retry_after`` is the server's hint in seconds, if it sent one."""

    default_retryable = True

    def __init__(self, message: str, *, retry_after: float | None = None, **kwargs: Any) -> None:
        self.retry_after = retry_after
        super().__init__(message, **kwargs)


class AuthenticationError(ProviderError):
    """401: the credentials were refused."""


class PermissionDeniedError(ProviderError):
    """403: the credentials may not do this."""


class ModelNotFoundError(ProviderError):
    """404: the model (or endpoint) does not exist for these credentials."""


class BadRequestError(ProviderError):
    """400/422: the server rejected the request as malformed."""


class ServerError(ProviderError):
    """5xx: the server failed; trying again may work."""

    default_retryable = True


class ProviderTimeoutError(ProviderError, TimeoutError):
    """The transport timed out (the provider's own timeout, not a per-call deadline)."""

    default_retryable = True


class ProviderConnectionError(ProviderError, ConnectionError):
    """The connection failed or broke (refused, reset, cut mid-stream)."""

    default_retryable = True


class IncompleteStreamError(ProviderError):
    """The stream ended or became unreadable before the server said why it stopped."""


class ToolError(AgtlError):
    """A tool raised, and the call asked for tool errors to fail it (``tool_errors="raise"``).

    ``tool`` names the tool; the tool's own exception is the ``__cause__``.
    """

    def __init__(self, tool: str, error: BaseException) -> None:
        self.tool = tool
        self.error = error
        super().__init__(f"tool {tool!r} raised {type(error).__name__}: {error}")


class GuardrailTripped(AgtlError):
    """A guardrail blocked (``verdict="block"``) or failed closed (``verdict="error"``: it
    raised or timed out). ``stage`` is what it guarded ("input", "output", "tool_arguments",
    "tool_result"); ``call`` the index of the model call it stopped (``None`` when none ran).
    Raised inside the workflow, which may catch it; uncaught, the execution fails with it."""

    def __init__(
        self, guardrail: str, stage: str, verdict: str, reason: str | None, call: int | None
    ) -> None:
        self.guardrail = guardrail
        self.stage = stage
        self.verdict = verdict
        self.reason = reason
        self.call = call
        what = "blocked" if verdict == "block" else "failed (and fails closed)"
        because = f": {reason}" if reason else ""
        super().__init__(f"guardrail {guardrail!r} {what} the {stage.replace('_', ' ')}{because}")


class ToolLoopError(AgtlError):
    """The tool loop ended without a text answer: ``max_steps`` model calls were made and the
    last one still asked for tools. ``steps`` holds every step so far (the summary has them
    too); ``pending`` the tool calls of the last step, which were not run."""

    def __init__(self, max_steps: int, steps: tuple[Any, ...], pending: tuple[Any, ...]) -> None:
        self.max_steps = max_steps
        self.steps = steps
        self.pending = pending
        names = ", ".join(sorted({call.name for call in pending})) or "none"
        super().__init__(
            f"max_steps={max_steps} model calls were made and the last still asked for tools "
            f"({names}); raise max_steps, or give the model what it needs to answer"
        )


class ToolArgumentsError(LLMError):
    """The model's arguments for a tool call did not validate: not JSON, not matching the
    tool's schema, or naming no tool. Sent back to the model up to the tool's ``retries``;
    raised when the model is still wrong after that. ``problem`` is what the model was told.
    """

    def __init__(self, tool: str, problem: str) -> None:
        self.tool = tool
        self.problem = problem
        super().__init__(f"arguments of tool {tool!r}: {problem}")


class OutputValidationError(LLMError):
    """``generate_object``: the model's reply did not validate into the output type, still
    after the retries. ``attempts`` is how many replies were tried; ``problem`` is the last
    validation error and ``text`` the last reply."""

    def __init__(self, output_type: str, attempts: int, problem: str, text: str) -> None:
        self.output_type = output_type
        self.attempts = attempts
        self.problem = problem
        self.text = text
        super().__init__(
            f"the reply did not validate as {output_type} after {attempts} "
            f"{'attempt' if attempts == 1 else 'attempts'}: {problem}"
        )
