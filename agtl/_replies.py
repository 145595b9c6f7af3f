"""What an LLM call hands back: its text, usage and stop reason, and a tool loop's steps."""

from __future__ import annotations

import attrs

from agtl._vocabulary import StopReason
from agtl.messages import ToolCallRequest
from agtl.summary import ToolCall
from agtl.usage import Usage

__all__ = ["Step", "TextResult"]


@attrs.frozen
class Step:
    """One model call of a tool loop: its text and the tool calls it asked for, as they ran."""

    call_index: int
    text: str
    tool_calls: tuple[ToolCall, ...]
    stop_reason: StopReason
    usage: Usage
    #: The agent that made the call, if an agent did.
    agent: str | None = None


@attrs.frozen
class TextResult:
    """The outcome of one finished LLM call, or of a whole tool loop.

    For a tool loop, ``text``, ``usage``, ``model`` and ``call_index`` are those of the final
    model call and ``steps`` lists every model call of the loop (the summary has one LLM-call
    record per step). ``tool_calls`` are the tool calls this (final) call asked for.
    """

    text: str
    usage: Usage
    stop_reason: StopReason
    model: str
    call_index: int
    time_to_first_token: float | None
    tool_calls: tuple[ToolCallRequest, ...] = ()
    steps: tuple[Step, ...] = ()

    def with_steps(self, steps: tuple[Step, ...]) -> TextResult:
        """This result as the end of a tool loop made of ``steps``."""
        return TextResult(
            self.text,
            self.usage,
            self.stop_reason,
            self.model,
            self.call_index,
            self.time_to_first_token,
            self.tool_calls,
            steps,
        )
