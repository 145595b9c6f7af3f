"""A scripted provider for deterministic tests of workflows (yours and ours).

Replies play back in order, chunk by chunk, sleeping on ``trio.sleep`` so trio's
autojump clock makes slow scripts instant. A reply can end in an error or hang forever.
"""

from __future__ import annotations

import collections
import re
from collections.abc import Callable, Sequence

import attrs
import trio

from agtl.backend import CallReport, GenerationRequest, GenerationStream, StopReason
from agtl.errors import InvalidArgumentError, ProviderError
from agtl.messages import ToolCallRequest
from agtl.provider import Provider
from agtl.usage import Provenance, Usage
from agtl.validation import check_items, check_seconds, type_name

__all__ = ["Reply", "ScriptExhaustedError", "ScriptedProvider"]

_WORDS = re.compile(r"\s*\S+\s*|\s+")


def _chunks(text: str | Sequence[str]) -> tuple[str, ...]:
    if isinstance(text, str):
        return tuple(_WORDS.findall(text))
    if not all(isinstance(chunk, str) for chunk in text):
        raise InvalidArgumentError("text", "must be a str or a sequence of str chunks")
    return tuple(text)


def _delay(value: object) -> float:
    return check_seconds("delay", value)


def _tool_calls(value: object) -> tuple[ToolCallRequest, ...]:
    if isinstance(value, ToolCallRequest) or not isinstance(value, Sequence):
        raise InvalidArgumentError(
            "tool_calls", f"must be a sequence of agtl.ToolCallRequest, not {type_name(value)}"
        )
    return check_items(
        "tool_calls", value, ToolCallRequest, "an agtl.ToolCallRequest", allow_empty=True
    )


@attrs.frozen
class Reply:
    """One scripted model reply.

    ``text`` is a str (split into word chunks, one "token" each) or explicit chunks.
    ``delay`` is slept before every chunk (``first_delay`` before the first, if given).
    After the chunks, ``error`` is raised if set, else the call hangs if ``hang`` is set,
    else it finishes with ``stop_reason``. ``usage`` replaces the counted usage (and is
    then reported with provenance ``provider``). With ``tool_calls``, the reply asks for
    those tool calls once its text is out (stop reason ``tool_calls``); the tool loop
    validates their arguments like a real model's.
    """

    text: tuple[str, ...] = attrs.field(default=(), converter=_chunks)
    delay: float = attrs.field(default=0.0, converter=_delay)
    first_delay: float | None = None
    stop_reason: StopReason = StopReason.EOS
    usage: Usage | None = None
    error: BaseException | None = None
    hang: bool = False
    model: str | None = None
    tool_calls: tuple[ToolCallRequest, ...] = attrs.field(default=(), converter=_tool_calls)


class ScriptExhaustedError(ProviderError):
    """The scripted provider was asked for more replies than it was given."""


class _Script:
    """State shared by a ScriptedProvider and every copy its ``with_*`` methods make."""

    def __init__(
        self, replies: Sequence[Reply], respond: Callable[[GenerationRequest], Reply] | None
    ) -> None:
        self.replies = collections.deque(replies)
        self.respond = respond
        self.calls: list[GenerationRequest] = []

    def next_reply(self, request: GenerationRequest) -> Reply:
        self.calls.append(request)
        if self.respond is not None:
            return self.respond(request)
        if not self.replies:
            raise ScriptExhaustedError(
                f"ScriptedProvider has no reply left for call #{len(self.calls)}: "
                "give it more replies or a respond= function",
                provider=ScriptedProvider.name,
            )
        return self.replies.popleft()


class ScriptedProvider(Provider):
    """Plays back scripted replies. ``ScriptedProvider()`` suits workflows with no LLM call."""

    name = "scripted"
    is_local = True

    def __init__(
        self,
        *replies: Reply | str,
        respond: Callable[[GenerationRequest], Reply] | None = None,
        model: str = "scripted-model",
    ) -> None:
        super().__init__()
        if replies and respond is not None:
            raise InvalidArgumentError(
                "respond", "give either scripted replies or respond=, not both"
            )
        scripted = [r if isinstance(r, Reply) else Reply(r) for r in replies]
        self._script = _Script(scripted, respond)
        self._model = model

    @property
    def calls(self) -> tuple[GenerationRequest, ...]:
        """Every request this provider (and its copies) received, in order."""
        return tuple(self._script.calls)

    @property
    def remaining(self) -> int:
        """Scripted replies not used yet."""
        return len(self._script.replies)

    def _builtin_model(self) -> str | None:
        return self._model

    async def start_generation(self, request: GenerationRequest) -> GenerationStream:
        await trio.lowlevel.checkpoint()
        return _ScriptedStream(self._script.next_reply(request), request)


class _ScriptedStream(GenerationStream):
    def __init__(self, reply: Reply, request: GenerationRequest) -> None:
        self._reply = reply
        self._request = request
        self._sent = 0
        self._stop: StopReason | None = None
        limit = request.options.max_tokens
        self._budget = len(reply.text) if limit is None else min(limit, len(reply.text))

    async def next_delta(self) -> str | None:
        reply = self._reply
        if self._stop is not None:
            return None
        if self._sent < self._budget:
            delay = (
                reply.first_delay
                if self._sent == 0 and reply.first_delay is not None
                else reply.delay
            )
            if delay > 0:
                await trio.sleep(delay)
            else:
                await trio.lowlevel.checkpoint()
            chunk = reply.text[self._sent]
            self._sent += 1
            return chunk
        if self._budget < len(reply.text):
            self._stop = StopReason.LENGTH
            return None
        if reply.error is not None:
            raise reply.error
        if reply.hang:
            await trio.sleep_forever()
        self._stop = StopReason.TOOL_CALLS if reply.tool_calls else reply.stop_reason
        await trio.lowlevel.checkpoint()
        return None

    def report(self) -> CallReport:
        usage = self._reply.usage
        if usage is None:
            words = sum(len(m.content.split()) for m in self._request.messages)
            usage = Usage(
                words,
                self._sent,
                cached_input_tokens=0,
                reasoning_tokens=0,
                provenance=Provenance.COUNTED,
            )
        finished = self._stop is StopReason.TOOL_CALLS
        calls = self._reply.tool_calls if finished else ()
        return CallReport(usage, self._stop, self._reply.model, tool_calls=calls)

    async def aclose(self) -> None:
        self._stop = self._stop or StopReason.CANCELLED
