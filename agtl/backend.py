"""The protocol between the core and a model backend: the one cut-off between the two.

A provider starts one text generation per LLM call and hands back a
:class:`GenerationStream`. The core drives it: it asks for deltas, applies per-call
deadlines and cancellation around each request, measures timings, and always closes the
stream. Everything else (executions, sessions, summaries, hooks, limits) lives in the core.

Nothing else crosses between the core and a backend: the core reaches a backend only through
``start_generation`` and the stream's three methods, and a backend sees only the frozen
:class:`GenerationRequest`, never the execution, the session or the provider's configuration.
One signal goes the other way, without a reference: a backend that gets "too many requests"
calls :func:`report_rate_limit`, so limits shared by the provider's calls can slow down.
"""

from __future__ import annotations

import abc
import contextvars
from collections.abc import Awaitable, Callable, Mapping
from decimal import Decimal
from typing import Any

import attrs

from agtl._vocabulary import StopReason
from agtl.messages import Message, ToolCallRequest
from agtl.options import GenerationOptions
from agtl.usage import Usage

__all__ = [
    "CallReport",
    "GenerationRequest",
    "GenerationStream",
    "StartGeneration",
    "StopReason",
    "ToolChoice",
    "ToolSpec",
    "may_wait_to_retry",
    "report_rate_limit",
]

#: Who hears of a 429 in the current call (set around a stream's reads by shared limits).
rate_limit_listener: contextvars.ContextVar[Callable[[float | None], None] | None] = (
    contextvars.ContextVar("agtl_rate_limit_listener", default=None)
)


#: How long the current call may wait to retry a refused request (set by a fallback chain).
retry_wait_limit: contextvars.ContextVar[float | None] = contextvars.ContextVar(
    "agtl_retry_wait_limit", default=None
)


def may_wait_to_retry(seconds: float, *, hinted: bool = False) -> bool:
    """Whether a backend may wait ``seconds`` to retry a refused request: ``hinted`` when the
    server said how long (a 429's ``retry-after``), else a backoff of the backend's own.

    ``False`` when the caller has somewhere else to send the request sooner (a fallback
    chain with another provider after this one): it takes a hinted wait up to its
    ``max_wait``, and no backoff at all. The backend then raises the error at once.
    """
    limit = retry_wait_limit.get()
    return limit is None or (hinted and seconds <= limit)


def report_rate_limit(retry_after: float | None) -> None:
    """A backend got "too many requests" (``retry_after``: the server's hint in seconds).

    Call it from inside ``next_delta`` before waiting to retry: limits the provider shares
    (``provider.with_limits``) pause every call for that long and lower their concurrency.
    Without shared limits it does nothing.
    """
    listener = rate_limit_listener.get()
    if listener is not None:
        listener(retry_after)


#: ``"auto"`` (the model decides), ``"required"`` (it must call a tool), ``"none"`` (it must
#: not), or the name of the one tool it must call.
ToolChoice = str


@attrs.frozen
class ToolSpec:
    """A tool as the model is told about it: name, description, JSON schema of its arguments."""

    name: str
    description: str
    parameters: Mapping[str, Any]

    def to_dict(self) -> dict[str, Any]:
        """OpenAI's ``tools`` entry for this function."""
        return {
            "type": "function",
            "function": {
                "name": self.name,
                "description": self.description,
                "parameters": dict(self.parameters),
            },
        }


@attrs.frozen
class GenerationRequest:
    """One LLM call as the backend receives it: resolved model, messages and options.

    With ``tools``, the model may answer with tool calls instead of (or besides) text,
    as ``tool_choice`` allows; the backend reports them in :attr:`CallReport.tool_calls`.
    """

    model: str
    messages: tuple[Message, ...]
    options: GenerationOptions
    execution_id: str
    call_index: int
    tools: tuple[ToolSpec, ...] = ()
    tool_choice: ToolChoice | None = None


@attrs.frozen
class CallReport:
    """What the backend knows about a call: usage so far and, once finished, why it stopped.

    ``details`` holds backend-specific facts worth keeping in the summary (for example the
    chat template used, or prompt-processing time), as JSON-safe values.
    """

    usage: Usage
    stop_reason: StopReason | None = None
    model: str | None = None
    details: Mapping[str, object] = attrs.field(factory=dict)
    #: The tool calls the model asked for (complete once the generation finished), in order.
    tool_calls: tuple[ToolCallRequest, ...] = ()
    #: With ``priced``, ``cost`` is the call's whole cost as the backend worked it out (a
    #: provider that tries several backends prices each attempt with its own prices);
    #: otherwise the core prices ``usage`` with the provider's prices.
    priced: bool = False
    cost: Decimal | None = None


class GenerationStream(abc.ABC):
    """One text generation in flight. The core calls these methods from one trio task."""

    @abc.abstractmethod
    async def next_delta(self) -> str | None:
        """The next piece of output text, or ``None`` once the generation finished.

        Must honour trio cancellation promptly: the core cancels it to stop the call.
        """

    @abc.abstractmethod
    def report(self) -> CallReport:
        """Usage so far (also after an interruption) and the stop reason once finished."""

    @abc.abstractmethod
    async def aclose(self) -> None:
        """Release the generation's resources. Called exactly once on every path, shielded."""


#: How a provider starts one generation (its ``start_generation``); what the journal, shared
#: limits, fallback chains and hedges wrap.
StartGeneration = Callable[[GenerationRequest], Awaitable[GenerationStream]]
