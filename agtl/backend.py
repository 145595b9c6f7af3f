"""The protocol between the core and a model backend.

A provider starts one text generation per LLM call and hands back a
:class:`GenerationStream`. The core drives it: it asks for deltas, applies per-call
deadlines and cancellation around each request, measures timings, and always closes the
stream. Everything else (executions, sessions, summaries, hooks, limits) lives in the core.
"""

from __future__ import annotations

import abc
import enum
from collections.abc import Mapping

import attrs

from agtl.messages import Message
from agtl.options import GenerationOptions
from agtl.usage import Usage

__all__ = ["CallReport", "GenerationRequest", "GenerationStream", "StopReason"]


class StopReason(enum.StrEnum):
    """Why an LLM call stopped producing output."""

    EOS = "eos"  # the model ended its answer
    LENGTH = "length"  # the max_tokens budget was spent or the context is full
    STOP_SEQUENCE = "stop_sequence"  # a stop sequence was produced
    CANCELLED = "cancelled"  # the call was stopped before it finished (never "length")
    ERROR = "error"  # the call failed; the call record carries the error


@attrs.frozen
class GenerationRequest:
    """One LLM call as the backend receives it: resolved model, messages and options."""

    model: str
    messages: tuple[Message, ...]
    options: GenerationOptions
    execution_id: str
    call_index: int


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
