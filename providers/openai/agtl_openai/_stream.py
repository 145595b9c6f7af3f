"""One chat completion streamed from an OpenAI-compatible server."""

from __future__ import annotations

import math
from typing import Any

import attrs
import openai
import trio

import agtl
from agtl import (
    CallReport,
    GenerationRequest,
    GenerationStream,
    Provenance,
    StopReason,
    ToolCallRequest,
    Usage,
    estimate_tokens,
)
from agtl.backend import may_wait_to_retry, report_rate_limit
from agtl_openai._errors import redact, translate
from agtl_openai._request import ServerQuirks, request_arguments

_FINISH: dict[str, StopReason] = {
    "stop": StopReason.EOS,
    "length": StopReason.LENGTH,
    "tool_calls": StopReason.TOOL_CALLS,
    "function_call": StopReason.TOOL_CALLS,
}
# Backoff when the server gave no retry-after hint: 0.5 s, 1 s, 2 s, ... capped.
_BACKOFF_BASE = 0.5
_BACKOFF_CAP = 20.0


@attrs.frozen
class Connection:
    """What a stream needs of its provider: the client, the key (to scrub it from errors),
    the retry budget, and the server's quirks (which the stream may add to)."""

    client: openai.AsyncOpenAI
    secret: str | None = attrs.field(repr=False)
    max_retries: int
    quirks: ServerQuirks

    @property
    def url(self) -> str:
        """The server's base URL, for error messages (it never holds the key)."""
        return str(self.client.base_url).rstrip("/")


class OpenAIStream(GenerationStream):
    def __init__(self, connection: Connection, request: GenerationRequest) -> None:
        self._connection = connection
        self._request = request
        self._stream: Any = None
        self._chunks: Any = None
        self._started = False
        self._text_chars = 0
        self._text: list[str] = []
        self._finish: str | None = None
        self._usage: Any = None
        self._model: str | None = None
        self._attempts: list[dict[str, object]] = []
        self._ended = False
        # Streamed tool-call deltas, by their index: [id, name, argument pieces].
        self._calls: dict[int, list[Any]] = {}

    async def next_delta(self) -> str | None:
        if not self._started:
            self._started = True
            await self._open()
        while True:
            try:
                chunk = await self._chunks.__anext__()
            except StopAsyncIteration:
                self._end()
                return None
            except Exception as exc:
                raise self._translate(exc) from None
            if getattr(chunk, "model", None):
                self._model = chunk.model
            if getattr(chunk, "usage", None) is not None:
                self._usage = chunk.usage
            for choice in chunk.choices or ():
                if choice.finish_reason:
                    self._finish = choice.finish_reason
                if choice.delta is not None and choice.delta.tool_calls:
                    self._add_call_deltas(choice.delta.tool_calls)
                content = choice.delta.content if choice.delta is not None else None
                if content:
                    text = str(content)
                    self._text.append(text)
                    return text

    def _add_call_deltas(self, deltas: Any) -> None:
        """Assemble streamed tool calls: the id and name come first, arguments in pieces."""
        for delta in deltas:
            index = getattr(delta, "index", None)
            index = len(self._calls) if index is None else int(index)
            entry = self._calls.setdefault(index, [None, None, []])
            if getattr(delta, "id", None):
                entry[0] = delta.id
            function = getattr(delta, "function", None)
            if function is not None:
                if getattr(function, "name", None):
                    entry[1] = function.name
                if getattr(function, "arguments", None):
                    entry[2].append(function.arguments)

    def _tool_calls(self) -> tuple[ToolCallRequest, ...]:
        """The assembled tool calls, once the stream ended (a cut stream has none)."""
        if not self._ended:
            return ()
        calls = []
        for index in sorted(self._calls):
            call_id, name, pieces = self._calls[index]
            calls.append(
                ToolCallRequest(
                    id=call_id or f"call_{self._request.call_index}_{index}",
                    name=name or "",
                    arguments="".join(pieces) or "{}",
                )
            )
        return tuple(calls)

    def _translate(self, error: BaseException) -> agtl.LLMError:
        connection = self._connection
        return translate(error, connection.secret, connection.url, self._request.model)

    def _end(self) -> None:
        self._ended = True
        if self._finish is None:
            so_far = _estimate_prompt(self._request) + estimate_tokens("".join(self._text))
            raise agtl.IncompleteStreamError(
                f"the stream from {self._connection.url} ended without a finish reason: the "
                "reply is probably cut off. A llama.cpp server does this when the context "
                f"window fills up (prompt and reply were about {so_far} tokens): shorten the "
                "conversation, lower max_tokens, or start the server with a larger context",
                provider="openai",
            )

    async def _open(self) -> None:
        """Send the request; retry failures that happen before the first byte."""
        connection = self._connection
        quirks = connection.quirks
        kwargs = request_arguments(self._request, quirks)
        attempt = 0
        while True:
            attempt += 1
            try:
                self._stream = await connection.client.chat.completions.create(**kwargs)
                self._chunks = self._stream.__aiter__()
                self._attempts.append({"attempt": attempt, "ok": True})
                return
            except openai.APIStatusError as exc:
                text = str(exc)
                if (
                    "stream_options" in kwargs
                    and "stream_options" in text
                    and exc.status_code < 600
                ):
                    # This server refuses usage in streams: stop asking, estimate instead.
                    quirks.refuse_stream_usage()
                    kwargs.pop("stream_options")
                    self._attempts.append({"attempt": attempt, "error": "stream_options refused"})
                    continue
                if _refuses_json_schema(kwargs, text) and not quirks.json_schema_as_json_object:
                    # llama.cpp's server dialect: {"type": "json_object", "schema": {...}}.
                    quirks.refuse_json_schema()
                    kwargs = request_arguments(self._request, quirks)
                    self._attempts.append({"attempt": attempt, "error": "json_schema refused"})
                    continue
                error = self._translate(exc)
            except Exception as exc:
                error = self._translate(exc)
            record: dict[str, object] = {"attempt": attempt, "error": type(error).__name__}
            if isinstance(error, agtl.ProviderError) and error.status_code is not None:
                record["status"] = error.status_code
            self._attempts.append(record)
            if isinstance(error, agtl.RateLimitError):
                report_rate_limit(error.retry_after)  # shared limits slow every call down
            if not error.is_retryable or attempt > connection.max_retries:
                raise error
            wait, hinted = _backoff(attempt), False
            if isinstance(error, agtl.RateLimitError) and error.retry_after is not None:
                wait, hinted = error.retry_after, True
                record["retry_after"] = wait
            if not may_wait_to_retry(wait, hinted=hinted):  # a fallback is sooner
                raise error
            await trio.sleep(wait)

    def report(self) -> CallReport:
        details: dict[str, object] = {"attempts": list(self._attempts)}
        calls = self._tool_calls()
        usage = self._usage
        text = "".join(self._text)
        if usage is not None:
            prompt_details = getattr(usage, "prompt_tokens_details", None)
            completion_details = getattr(usage, "completion_tokens_details", None)
            reported = Usage(
                input_tokens=usage.prompt_tokens,
                output_tokens=usage.completion_tokens,
                total_tokens=usage.total_tokens,
                cached_input_tokens=getattr(prompt_details, "cached_tokens", None),
                reasoning_tokens=getattr(completion_details, "reasoning_tokens", None),
                provenance=Provenance.PROVIDER,
            )
        elif not self._attempts or "ok" not in self._attempts[-1]:
            # Nothing reached the model (cancelled while queued, or every attempt refused).
            reported = Usage(0, 0, provenance=Provenance.COUNTED)
        else:
            output = estimate_tokens(text + "".join(c.arguments for c in calls))
            limit = self._request.options.max_tokens
            if self._ended and self._finish == "length" and limit is not None:
                output = min(output, limit)  # the server says it stopped at the limit
            reported = Usage(
                input_tokens=_estimate_prompt(self._request),
                output_tokens=output,
                provenance=Provenance.ESTIMATED,
            )
        stop = None
        if self._ended and self._finish is not None:
            stop = _FINISH.get(self._finish, StopReason.EOS)
            if calls:
                stop = StopReason.TOOL_CALLS  # some servers say "stop" after tool calls
            if self._finish == "stop" and self._request.options.stop:
                details["finish_reason"] = "stop"  # a natural end or a stop sequence: unknown
            if self._finish not in _FINISH:
                details["finish_reason"] = self._finish
        return CallReport(reported, stop, self._model, details, tool_calls=calls)

    async def aclose(self) -> None:
        if self._stream is not None:
            stream, self._stream = self._stream, None
            await stream.close()


def _refuses_json_schema(arguments: dict[str, Any], message: str) -> bool:
    response_format = arguments.get("response_format") or {}
    return response_format.get("type") == "json_schema" and "json_schema" in message


def _backoff(attempt: int) -> float:
    return min(_BACKOFF_CAP, _BACKOFF_BASE * math.pow(2, attempt - 1))


def _estimate_prompt(request: GenerationRequest) -> int:
    # About four characters a token, plus a few tokens of chat framing per message.
    return sum(estimate_tokens(m.content) + 4 for m in request.messages) + 2


__all__ = ["OpenAIStream", "redact"]
