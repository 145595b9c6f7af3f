"""The vocabulary every layer shares: outcomes, stop reasons, cancel causes, sink and logger.

This is the ground floor. It depends on nothing of agtl's but :mod:`agtl.events`, so any
module (errors, summaries, backends, the runtime) can use these words without importing a
module above it. The public names are re-exported where users look for them
(``agtl.result``, ``agtl.backend``, ``agtl.reporting`` and ``agtl`` itself).
"""

from __future__ import annotations

import enum
from typing import Any, Protocol, TypeAlias

import attrs
from structlog.typing import FilteringBoundLogger

from agtl.events import Event

__all__ = [
    "CancelInfo",
    "CancelSource",
    "Logger",
    "Partial",
    "ProviderInfo",
    "SessionType",
    "Status",
    "StopReason",
    "SummarySink",
    "ToolCallStatus",
]


class SessionType:
    """What every agtl session is: the marker a tool's first parameter is recognised by (a
    parameter annotated with a subclass of it receives the session, and is not in the
    schema), so that modules below the session need not import it."""

    __slots__ = ()


#: The structlog logger agtl logs through: bound per execution with ``bind(...)``.
Logger: TypeAlias = FilteringBoundLogger


class Status(enum.StrEnum):
    """How an execution ended."""

    SUCCEEDED = "succeeded"
    CANCELED = "canceled"
    FAILED = "failed"


class CancelSource(enum.StrEnum):
    """What stopped a canceled execution."""

    HANDLE = "handle"  # execution.cancel(), or leaving its `async with` block early
    SIGNAL = "signal"  # an external CancelSignal (explicit or its deadline)
    TIMEOUT = "timeout"  # the execution's own timeout=
    LIMIT = "limit"  # a UsageLimits budget
    ENCLOSING_SCOPE = "enclosing_scope"  # a cancel scope of the caller; trio.Cancelled propagates


class StopReason(enum.StrEnum):
    """Why an LLM call stopped producing output."""

    EOS = "eos"  # the model ended its answer
    LENGTH = "length"  # the max_tokens budget was spent or the context is full
    STOP_SEQUENCE = "stop_sequence"  # a stop sequence was produced
    TOOL_CALLS = "tool_calls"  # the model asked for tool calls (the tool loop goes on)
    CANCELLED = "cancelled"  # the call was stopped before it finished (never "length")
    ERROR = "error"  # the call failed; the call record carries the error


class ToolCallStatus(enum.StrEnum):
    """How one tool call ended."""

    OK = "ok"  # the tool returned; its result went to the model
    ERROR = "error"  # the tool raised; the error went to the model (or failed the run)
    TIMEOUT = "timeout"  # the tool's own timeout= passed; the model was told
    INVALID = "invalid"  # the model's arguments did not validate; the model was told
    CANCELLED = "cancelled"  # the execution was stopped while the tool ran (or waited)
    DENIED = "denied"  # it needed approval and was denied (or not decided in time); never ran
    BLOCKED = "blocked"  # a guardrail blocked its arguments (never ran) or its result


@attrs.frozen
class CancelInfo:
    """Why a canceled execution stopped, recorded once, when the cancel happened."""

    source: CancelSource
    reason: str | None
    at: float  # seconds since the execution started
    #: "soft" when a soft stop (``execution.stop``) ended it at a call or step boundary.
    mode: str = "hard"

    def to_dict(self) -> dict[str, object]:
        data: dict[str, object] = {"source": self.source.value, "reason": self.reason}
        data["at"] = self.at
        if self.mode != "hard":
            data["mode"] = self.mode
        return data


@attrs.frozen
class Partial:
    """What a canceled or failed execution produced before it stopped.

    ``text`` is the concatenation of the text deltas that the interrupted LLM call(s) had
    delivered to the workflow (in call order); ``events`` are the events delivered so far.
    """

    text: str
    events: tuple[Event, ...]
    call_indexes: tuple[int, ...] = ()
    #: ``session.stream_object``: the last partial object the interrupted stream had parsed.
    object: Any = None


class SummarySink(Protocol):
    """Where a provider writes each finished execution's record (e.g. ``JsonlSink``)."""

    def write(self, result: Any) -> None:
        """Store one finished execution's record (an ``agtl.Result``). Called once each."""


class ProviderInfo(Protocol):
    """What a workflow may learn of the provider running it (``session.provider``)."""

    @property
    def name(self) -> str:
        """The backend's short name ("llamacpp", "openai", ...)."""
        ...

    @property
    def default_model(self) -> str | None:
        """The model used when a call names none."""
        ...
