"""The served workflow as an OpenAI chat model: ``POST /v1/chat/completions``, ``GET /v1/models``.

Any client of the chat completions API can call an agtl workflow. The workflow is the
"model", named by its function's name. It receives the request as its input:
``{"model": ..., "messages": [...], "options": {...}}``, where ``options`` holds the
generation options the request set (``temperature``, ``max_tokens``, ``top_p``, ``stop``,
``seed``, ...). Its text becomes the reply's content. For a streaming workflow, that is the
text of its ``text``/``delta``/``chunk``/``token`` events (and of a tool loop's text parts),
sent as they come. For a coroutine, it is its returned value (a str as it is, anything else
as JSON). The workflow's own tool calls stay inside it: the client sees the answer.

``stream: true`` sends ``chat.completion.chunk`` events, with a usage chunk when
``stream_options.include_usage`` is set, then ``[DONE]``. A client that goes away mid-stream
cancels the execution at once (reason "client disconnected", no grace: a chat completions
client never resumes). Errors use OpenAI's shape and status codes.
"""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import AsyncIterator, Callable, Mapping
from typing import Any, Final

from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse

from agtl._jsonable import jsonable
from agtl._observe import workflow_name
from agtl._tool_loop import TextPart
from agtl.events import Event
from agtl.execution import StreamingExecution
from agtl.result import Result, Status
from agtl.serve._registry import Busy, Registry, Served
from agtl.signals import CancelSignal

__all__ = ["OpenAIRoutes", "openai_error"]

#: The cancel reason of an execution whose streaming client went away.
CLIENT_GONE: Final = "client disconnected"
#: Event types whose str data is reply text.
TEXT_EVENTS: Final = frozenset({"text", "delta", "chunk", "token"})
#: Request fields passed to the workflow as its options.
OPTIONS: Final = (
    "temperature",
    "top_p",
    "max_tokens",
    "max_completion_tokens",
    "stop",
    "seed",
    "presence_penalty",
    "frequency_penalty",
    "n",
    "response_format",
    "tools",
    "tool_choice",
    "user",
)
_ALLOWED: Final = frozenset({"model", "messages", "stream", "stream_options", *OPTIONS})


def openai_error(status: int, message: str, kind: str, code: str | None = None) -> Response:
    """An error in OpenAI's shape."""
    body = {"error": {"message": message, "type": kind, "param": None, "code": code}}
    return JSONResponse(body, status)


class OpenAIRoutes:
    """The two endpoints, over the app's registry and a function making executions."""

    def __init__(
        self,
        workflow: Any,
        registry: Registry,
        make: Callable[[Any, CancelSignal], StreamingExecution[Any]],
        limit: int,
    ) -> None:
        self._name = None if workflow is None else workflow_name(workflow).rsplit(".", 1)[-1]
        self._registry = registry
        self._make = make
        self._limit = limit

    async def models(self, _request: Request) -> Response:
        data = [] if self._name is None else [_model(self._name)]
        return JSONResponse({"object": "list", "data": data})

    async def completions(self, request: Request) -> Response:
        body = await _body(request, self._limit)
        if isinstance(body, Response):
            return body
        problem = self._check(body)
        if problem is not None:
            return problem
        options = {key: body[key] for key in OPTIONS if key in body}
        value = {"model": body["model"], "messages": body["messages"], "options": options}
        stream = body.get("stream", False)
        usage = bool((body.get("stream_options") or {}).get("include_usage", False))
        try:
            served = self._registry.start(lambda signal: self._make(value, signal), detached=True)
        except Busy:
            return openai_error(
                429,
                f"{self._registry.max_running} executions are running, the most this server "
                "runs at once: retry later",
                "rate_limit_exceeded",
                "rate_limit_exceeded",
            )
        reply = _Reply(served, self._registry, str(body["model"]))
        if stream:
            return StreamingResponse(
                reply.chunks(usage),
                media_type="text/event-stream",
                headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
            )
        return await reply.whole()

    def _check(self, body: Mapping[str, Any]) -> Response | None:
        unknown = sorted(set(body) - _ALLOWED)
        if unknown:
            return openai_error(
                400,
                f"unrecognized request argument(s): {', '.join(unknown)}",
                "invalid_request_error",
            )
        model = body.get("model")
        if not isinstance(model, str):
            return openai_error(400, "model: a string is required", "invalid_request_error")
        if model != self._name:
            served = "none" if self._name is None else repr(self._name)
            return openai_error(
                404,
                f"the model {model!r} does not exist here (this server's model: {served})",
                "invalid_request_error",
                "model_not_found",
            )
        messages = body.get("messages")
        if not isinstance(messages, list) or not messages:
            return openai_error(
                400, "messages: a non-empty list is required", "invalid_request_error"
            )
        for index, message in enumerate(messages):
            if not isinstance(message, dict) or not isinstance(message.get("role"), str):
                return openai_error(
                    400,
                    f"messages[{index}]: an object with a role is required",
                    "invalid_request_error",
                )
        if not isinstance(body.get("stream", False), bool):
            return openai_error(400, "stream: must be true or false", "invalid_request_error")
        return None


def _model(name: str) -> dict[str, Any]:
    return {"id": name, "object": "model", "created": 0, "owned_by": "agtl"}


async def _body(request: Request, limit: int) -> dict[str, Any] | Response:
    raw = await request.body()
    if len(raw) > limit:
        return openai_error(
            413, f"the request body is over the {limit}-byte limit", "invalid_request_error"
        )
    try:
        body = json.loads(raw or b"{}")
    except ValueError as exc:
        return openai_error(400, f"the request body is not JSON: {exc}", "invalid_request_error")
    if not isinstance(body, dict):
        return openai_error(400, "the request body must be a JSON object", "invalid_request_error")
    return body


class _Reply:
    """One completion: the execution's text as chunks or as one message."""

    def __init__(self, served: Served, registry: Registry, model: str) -> None:
        self._served = served
        self._registry = registry
        self._model = model
        self._id = f"chatcmpl-{served.id}"
        self._created = int(time.time())

    async def _texts(self) -> AsyncIterator[list[str]]:
        """The reply's text as the workflow produces it, in batches of pieces ready together."""
        async with contextlib.aclosing(self._registry.events(self._served, -1)) as batches:
            async for batch in batches:
                texts = [text for event in batch if (text := _text_of(event))]
                if texts:
                    yield texts

    async def whole(self) -> Response:
        pieces: list[str] = []
        try:
            async for texts in self._texts():
                pieces.extend(texts)
            await self._served.finished.wait()
        except BaseException:
            self._served.signal.cancel(CLIENT_GONE)
            raise
        result = self._served.execution.outcome
        assert result is not None
        failure = _failure(result)
        if failure is not None:
            return failure
        content = "".join(pieces) if pieces else _value_text(result)
        return JSONResponse(
            {
                "id": self._id,
                "object": "chat.completion",
                "created": self._created,
                "model": self._model,
                "choices": [
                    {
                        "index": 0,
                        "message": {"role": "assistant", "content": content},
                        "finish_reason": _finish(result),
                    }
                ],
                "usage": _usage(result),
            }
        )

    async def chunks(self, usage: bool) -> AsyncIterator[bytes]:
        """The SSE body; a client gone (this generator closed) cancels the execution."""
        done = False
        try:
            yield self._chunk({"role": "assistant", "content": ""}, None)
            sent = False
            # Each piece's chunk is the same text around its content: made once.
            before, after = self._chunk({"content": "\x00"}, None).split(b'"\\u0000"')
            async for texts in self._texts():
                sent = True
                yield b"".join(
                    before + json.dumps(text, ensure_ascii=False).encode() + after for text in texts
                )
            await self._served.finished.wait()
            result = self._served.execution.outcome
            assert result is not None
            if result.status is not Status.SUCCEEDED:
                error = _error_body(result)
                yield f"data: {json.dumps(error)}\n\n".encode()
            else:
                if not sent:
                    yield self._chunk({"content": _value_text(result)}, None)
                yield self._chunk({}, _finish(result))
                if usage:
                    yield self._data({**self._head(), "choices": [], "usage": _usage(result)})
            yield b"data: [DONE]\n\n"
            done = True
        finally:
            if not done:
                self._served.signal.cancel(CLIENT_GONE)

    def _head(self) -> dict[str, Any]:
        return {
            "id": self._id,
            "object": "chat.completion.chunk",
            "created": self._created,
            "model": self._model,
        }

    def _chunk(self, delta: dict[str, Any], finish: str | None) -> bytes:
        return self._data(
            {**self._head(), "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}
        )

    @staticmethod
    def _data(payload: dict[str, Any]) -> bytes:
        return f"data: {json.dumps(payload, ensure_ascii=False)}\n\n".encode()


def _text_of(event: Event) -> str | None:
    data = event.data
    if isinstance(data, TextPart):
        return data.text
    if event.type in TEXT_EVENTS and isinstance(data, str):
        return data
    return None


def _value_text(result: Result[Any]) -> str:
    value = result.value
    if value is None:
        return ""
    return value if isinstance(value, str) else json.dumps(jsonable(value), ensure_ascii=False)


def _finish(result: Result[Any]) -> str:
    calls = result.summary.llm_calls
    return "length" if calls and calls[-1].stop_reason.value == "length" else "stop"


def _usage(result: Result[Any]) -> dict[str, int]:
    usage = result.summary.total_usage
    prompt, completion = usage.input_tokens or 0, usage.output_tokens or 0
    return {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
    }


def _error_body(result: Result[Any]) -> dict[str, Any]:
    if result.status is Status.CANCELED:
        reason = result.cancel.reason if result.cancel is not None else None
        message = f"the execution was canceled: {reason or 'no reason given'}"
        return {"error": {"message": message, "type": "canceled", "param": None, "code": None}}
    error = result.error
    message = f"{type(error).__name__}: {error}"
    return {"error": {"message": message, "type": "server_error", "param": None, "code": None}}


def _failure(result: Result[Any]) -> Response | None:
    if result.status is Status.SUCCEEDED:
        return None
    status = 408 if result.status is Status.CANCELED else 500
    return JSONResponse(_error_body(result), status)
