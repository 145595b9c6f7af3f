"""The HTTP API and chat page: a Starlette app whose executions run on the server's trio loop."""

from __future__ import annotations

import contextlib
import json
import math
import os
import secrets
from collections.abc import AsyncIterator, Callable, Mapping
from importlib import resources
from pathlib import Path
from types import TracebackType
from typing import Any, Final

import trio
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response, StreamingResponse
from starlette.routing import Route
from starlette.types import ASGIApp, Receive, Scope, Send

from agtl import _entry as entry
from agtl._approvals import ApprovalRequest
from agtl._jsonable import jsonable
from agtl._observe import workflow_name
from agtl.errors import InvalidArgumentError
from agtl.events import Event
from agtl.execution import StreamingExecution
from agtl.provider import Provider
from agtl.serve._conversations import ConversationStore, valid_id
from agtl.serve._openai import OpenAIRoutes, openai_error
from agtl.serve._registry import Busy, Registry, Served
from agtl.serve._wire import end_event, event_message, result_record
from agtl.session import Session
from agtl.signals import CancelSignal
from agtl.validation import check_count, check_seconds, type_name

__all__ = ["create_app"]

#: Seconds between keep-alive comments on an idle event stream (proxies close silent ones).
KEEPALIVE: Final = 15.0
#: The longest ``?wait=`` a client may ask for.
MAX_WAIT: Final = 300.0

Workflow = Callable[[Session, Any], Any]


class _Problem(Exception):
    """A request that cannot be served: the status, a one-line message, and headers."""

    def __init__(self, status: int, message: str, headers: Mapping[str, str] | None = None):
        self.status = status
        self.message = message
        self.headers = dict(headers or {})
        super().__init__(message)


def create_app(
    workflow: Workflow | None,
    provider: Provider,
    *,
    token: str | None = None,
    max_running: int = 16,
    keep_finished: int = 1000,
    keep_seconds: float = 3600.0,
    disconnect_grace: float = 5.0,
    max_body_bytes: int = 1 << 20,
    conversations: Any = None,
    system: str | None = None,
) -> Starlette:
    """The ASGI app serving ``workflow(session, input)`` and chat turns on ``provider``.

    Run it on a trio server (Hypercorn's trio worker): its executions are tasks of the
    server's own trio loop, opened and closed with the app's lifespan. ``token``: every API
    call must carry ``Authorization: Bearer <token>``. ``conversations``: a directory to keep
    conversations in as JSON files (default: in memory). See guides/serving.md.
    """
    if workflow is not None:
        _check_workflow(workflow)
    if not isinstance(provider, Provider):
        raise InvalidArgumentError(
            "provider", f"must be an agtl provider, not {type_name(provider)}"
        )
    if token is not None and (not isinstance(token, str) or len(token) < 16):
        raise InvalidArgumentError("token", "must be a str of at least 16 characters")
    registry = Registry(
        max_running=check_count("max_running", max_running, minimum=1),
        keep_finished=check_count("keep_finished", keep_finished),
        keep_seconds=check_seconds("keep_seconds", keep_seconds),
        disconnect_grace=check_seconds("disconnect_grace", disconnect_grace),
    )
    limit = check_count("max_body_bytes", max_body_bytes, minimum=1)
    store = ConversationStore(_directory(conversations), system)
    api = _Api(workflow, provider, registry, store, limit)

    def completion(value: Any, signal: CancelSignal) -> StreamingExecution[Any]:
        assert workflow is not None
        return provider.streaming_execution(_as_events(workflow, value), signal=signal)

    chat = OpenAIRoutes(workflow, registry, completion, limit)
    routes = [
        Route("/", _chat_page, methods=["GET"]),
        Route("/about", api.about, methods=["GET"]),
        Route("/executions", api.start, methods=["POST"]),
        Route("/executions", api.listed, methods=["GET"]),
        Route("/executions/{id}", api.status, methods=["GET"]),
        Route("/executions/{id}/events", api.events, methods=["GET"]),
        Route("/executions/{id}/cancel", api.cancel, methods=["POST"]),
        Route("/executions/{id}/approvals/{call_id}", api.decide, methods=["POST"]),
        Route("/executions/{id}/inputs/{request_id}", api.answer, methods=["POST"]),
        Route("/conversations/{id}", api.conversation, methods=["GET"]),
        Route("/conversations/{id}/turns", api.turn, methods=["POST"]),
        Route("/v1/models", chat.models, methods=["GET"]),
        Route("/v1/chat/completions", chat.completions, methods=["POST"]),
    ]
    app = Starlette(
        routes=routes,
        lifespan=lambda _app: _Lifespan(registry),
        exception_handlers={
            _Problem: _problem_response,  # type: ignore[dict-item]
            HTTPException: _http_error,  # type: ignore[dict-item]
        },
    )
    if token is not None:
        app.add_middleware(_BearerToken, token=token)
    return app


class _Lifespan:
    """Opens the nursery the executions run in; at shutdown cancels them and waits."""

    def __init__(self, registry: Registry) -> None:
        self.registry = registry
        self._manager: contextlib.AbstractAsyncContextManager[trio.Nursery] | None = None
        self._nursery: trio.Nursery | None = None

    async def __aenter__(self) -> None:
        self._manager = trio.open_nursery()
        self._nursery = await self._manager.__aenter__()
        self.registry.open(self._nursery)

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.registry.close()
        assert self._manager is not None
        assert self._nursery is not None
        self._nursery.cancel_scope.cancel()  # grace timers still waiting
        await self._manager.__aexit__(None, None, None)


class _Api:
    def __init__(
        self,
        workflow: Workflow | None,
        provider: Provider,
        registry: Registry,
        store: ConversationStore,
        limit: int,
    ) -> None:
        self.workflow = workflow
        self.provider = provider
        self.registry = registry
        self.store = store
        self.limit = limit

    # -- executions ---------------------------------------------------------------------------
    async def start(self, request: Request) -> Response:
        body = await _json_body(request, self.limit, {"input", "timeout", "detach"})
        workflow = self.workflow
        if workflow is None:
            raise _Problem(404, "this server runs no workflow (start it with FILE:FUNCTION)")
        timeout = body.get("timeout")
        if timeout is not None and (
            isinstance(timeout, bool)
            or not isinstance(timeout, int | float)
            or not 0 < timeout < math.inf
        ):
            raise _Problem(422, f"timeout: must be a positive number of seconds, not {timeout!r}")
        detach = body.get("detach", False)
        if not isinstance(detach, bool):
            raise _Problem(422, f"detach: must be true or false, not {detach!r}")
        value = body.get("input")

        def make(signal: CancelSignal) -> StreamingExecution[Any]:
            gen = _as_events(workflow, value)
            return self.provider.streaming_execution(gen, signal=signal, timeout=timeout)

        served = self._start(make, detach)
        return JSONResponse({"id": served.id}, status_code=201)

    def _start(
        self, make: Callable[[CancelSignal], StreamingExecution[Any]], detach: bool
    ) -> Served:
        try:
            served = self.registry.start(make, detached=detach)
        except Busy:
            raise _Problem(
                429,
                f"{self.registry.max_running} executions are running, the most this server "
                "runs at once: retry later",
                {"Retry-After": "1"},
            ) from None
        self.provider.logger.debug("serve.started", execution_id=served.id, detached=detach)
        return served

    def _served(self, request: Request) -> Served:
        served = self.registry.get(request.path_params["id"])
        if served is None:
            raise _Problem(404, "no such execution (never started here, or already forgotten)")
        return served

    async def about(self, _request: Request) -> Response:
        """``GET /about``: the workflow this server runs (``null``: chat only)."""
        name = None if self.workflow is None else workflow_name(self.workflow)
        return JSONResponse({"workflow": name})

    async def listed(self, request: Request) -> Response:
        """``GET /executions``: the executions the server holds, running ones first, then
        finished ones, newest first (``?status=running|succeeded|canceled|failed``)."""
        wanted = request.query_params.get("status")
        allowed = {"running", "succeeded", "canceled", "failed"}
        if wanted is not None and wanted not in allowed:
            raise _Problem(422, f"status: must be one of {', '.join(sorted(allowed))}")
        rows = []
        for served in self.registry.listed():
            outcome = served.execution.outcome
            status = "running" if outcome is None else outcome.status.value
            if wanted is not None and status != wanted:
                continue
            rows.append({"id": served.id, "status": status, "detached": served.detached})
        return JSONResponse({"executions": rows})

    async def status(self, request: Request) -> Response:
        served = self._served(request)
        wait = request.query_params.get("wait")
        if wait is not None:
            try:
                seconds = float(wait)
            except ValueError:
                raise _Problem(422, f"wait: must be a number of seconds, not {wait!r}") from None
            if not 0 <= seconds <= MAX_WAIT:
                raise _Problem(422, f"wait: must be between 0 and {MAX_WAIT:g} seconds")
            with trio.move_on_after(seconds):
                await served.finished.wait()
        record = result_record(served.execution.outcome)
        execution = served.execution
        pending = [_request_record(r) for r in execution.pending_approvals]
        questions = [
            {"id": q.id, "prompt": q.prompt, "schema": q.schema, "requested_at": q.requested_at}
            for q in execution.pending_inputs
        ]
        return JSONResponse(
            {"id": served.id, **record, "pending_approvals": pending, "pending_inputs": questions}
        )

    async def events(self, request: Request) -> Response:
        served = self._served(request)
        after = _last_event_id(request)
        return StreamingResponse(
            self._sse(served, after),
            media_type="text/event-stream",
            headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
        )

    async def _sse(self, served: Served, after: int) -> AsyncIterator[bytes]:
        last = after
        async with contextlib.aclosing(
            self.registry.events(served, after, idle=KEEPALIVE)
        ) as events:
            async for batch in events:
                if not batch:
                    yield b": keep-alive\n\n"
                    continue
                last = batch[-1].metrics.seq
                yield b"".join(event_message(event) for event in batch)
        await served.finished.wait()  # the log closes just before the Result is frozen
        outcome = served.execution.outcome
        assert outcome is not None
        end_id = outcome.events[-1].metrics.seq + 1 if outcome.events else 0
        if end_id > last:
            yield end_event(end_id, outcome)

    async def decide(self, request: Request) -> Response:
        """``POST /executions/{id}/approvals/{call_id}`` ``{"approve": bool, "reason": str,
        "by": str}``: decide a tool call waiting for approval (404 unknown, 409 decided)."""
        served = self._served(request)
        call_id: str = request.path_params["call_id"]
        body = await _json_body(request, self.limit, {"approve", "reason", "by"})
        approve = body.get("approve")
        if not isinstance(approve, bool):
            raise _Problem(422, f"approve: must be true or false, not {approve!r}")
        for field in ("reason", "by"):
            if body.get(field) is not None and not isinstance(body[field], str):
                raise _Problem(422, f"{field}: must be a string, not {body[field]!r}")
        _require_open(served, call_id, served.execution.pending_approvals, "approval request")
        try:
            if approve:
                served.execution.approve(call_id, by=body.get("by"))
            else:
                served.execution.deny(call_id, body.get("reason"), by=body.get("by"))
        except InvalidArgumentError as error:  # decided meanwhile, by someone else
            raise _Problem(409, error.problem) from None
        return JSONResponse({"id": served.id, "call_id": call_id, "approved": approve})

    async def answer(self, request: Request) -> Response:
        """``POST /executions/{id}/inputs/{request_id}`` ``{"value": ...}``: answer the
        workflow's question (404 unknown, 409 answered, 422 a value that does not fit)."""
        served = self._served(request)
        request_id: str = request.path_params["request_id"]
        body = await _json_body(request, self.limit, {"value"})
        if "value" not in body:
            raise _Problem(422, "value: the answer is missing")
        _require_open(served, request_id, served.execution.pending_inputs, "input request")
        try:
            served.execution.provide_input(request_id, body["value"])
        except InvalidArgumentError as error:
            status = 422 if error.argument == "value" else 409
            raise _Problem(status, f"{error.argument}: {error.problem}") from None
        return JSONResponse({"id": served.id, "request_id": request_id})

    async def cancel(self, request: Request) -> Response:
        served = self._served(request)
        body = await _json_body(request, self.limit, {"reason", "mode", "after", "grace"})
        reason = body.get("reason")
        if reason is not None and not isinstance(reason, str):
            raise _Problem(422, f"reason: must be a string, not {reason!r}")
        mode = body.get("mode", "hard")
        if mode == "soft":  # let the running call (or step) finish, then stop
            try:
                served.execution.stop(
                    after=body.get("after", "call"), grace=body.get("grace"), reason=reason
                )
            except InvalidArgumentError as error:
                raise _Problem(422, f"{error.argument}: {error.problem}") from None
        elif mode == "hard":
            if "after" in body or "grace" in body:
                raise _Problem(422, "after and grace go with mode 'soft'")
            served.execution.cancel(reason)
        else:
            raise _Problem(422, f"mode: must be 'hard' or 'soft', not {mode!r}")
        outcome = served.execution.outcome
        return JSONResponse(
            {"id": served.id, "status": None if outcome is None else outcome.status.value},
            status_code=202,
        )

    # -- conversations ------------------------------------------------------------------------
    def _conversation_id(self, request: Request) -> str:
        conversation_id: str = request.path_params["id"]
        if not valid_id(conversation_id):
            raise _Problem(422, "conversation id: 1 to 64 letters, digits, '-' or '_'")
        return conversation_id

    async def conversation(self, request: Request) -> Response:
        conversation_id = self._conversation_id(request)
        conversation = self.store.get(conversation_id)
        if conversation is None:
            raise _Problem(404, f"no conversation {conversation_id!r} yet")
        return JSONResponse({"id": conversation_id, **conversation.to_dict()})

    async def turn(self, request: Request) -> Response:
        conversation_id = self._conversation_id(request)
        body = await _json_body(request, self.limit, {"prompt", "max_tokens"})
        prompt = body.get("prompt")
        if not isinstance(prompt, str) or not prompt.strip():
            raise _Problem(422, "prompt: must be a non-empty string")
        max_tokens = body.get("max_tokens", 512)
        if isinstance(max_tokens, bool) or not isinstance(max_tokens, int) or max_tokens < 1:
            raise _Problem(422, f"max_tokens: must be a positive integer, not {max_tokens!r}")
        conversation = self.store.open_turn(conversation_id)
        if conversation is None:
            raise _Problem(409, f"conversation {conversation_id!r} is answering already")
        store = self.store

        async def chat_turn(session: Session) -> AsyncIterator[Event]:
            session.on_done(lambda _result: store.close_turn(conversation_id, conversation))
            async with session.stream_text(
                conversation=conversation, prompt=prompt, max_tokens=max_tokens
            ) as reply:
                async for piece in reply:
                    yield session.emit("text", piece)
            yield await session.done(reply.text)

        def make(signal: CancelSignal) -> StreamingExecution[Any]:
            return self.provider.streaming_execution(chat_turn, signal=signal)

        try:
            served = self._start(make, detach=False)
        except BaseException:
            store.release(conversation_id)
            raise
        return JSONResponse({"id": served.id, "conversation": conversation_id}, status_code=201)


def _require_open(served: Served, wanted: str, pending: Any, kind: str) -> None:
    """``wanted`` is among the execution's open requests of ``kind``, or a 409 (it was
    decided or answered) or a 404 (it never was one)."""
    waiting = ", ".join(sorted(r.id for r in pending)) or "none"
    if any(r.id == wanted for r in pending):
        return
    if wanted in served.execution.decided_approvals:
        raise _Problem(409, f"{wanted!r} was already decided (open: {waiting})")
    raise _Problem(404, f"no {kind} {wanted!r} in this execution (open: {waiting})")


def _request_record(request: ApprovalRequest) -> dict[str, Any]:
    return {
        "id": request.id,
        "tool": request.tool,
        "arguments": jsonable(request.arguments),
        "requested_at": request.requested_at,
    }


def _as_events(workflow: Workflow, value: Any) -> Callable[[Session], AsyncIterator[Event]]:
    """The served function as a streaming workflow, under its own name: a generator's
    events, or a coroutine's value as the terminal event; called with the input when it takes
    one (``entry.bind``)."""
    bound = entry.bind(workflow, value)
    streaming = entry.is_streaming(workflow)

    async def events(session: Session) -> AsyncIterator[Event]:
        if streaming:
            async with contextlib.aclosing(bound(session)) as stream:
                async for event in stream:
                    yield event
            return
        result = await bound(session)
        yield await session.done(result)

    events.__qualname__ = events.__name__ = bound.__qualname__
    return events


def _check_workflow(workflow: object) -> None:
    entry.check(workflow)


def _directory(conversations: Any) -> Path | None:
    if conversations is None:
        return None
    if not isinstance(conversations, str | os.PathLike):
        raise InvalidArgumentError(
            "conversations", f"must be a directory path, not {type_name(conversations)}"
        )
    directory = Path(conversations).expanduser()
    if directory.exists() and not directory.is_dir():
        raise InvalidArgumentError("conversations", f"{directory} is not a directory")
    directory.mkdir(parents=True, exist_ok=True)
    return directory


def _last_event_id(request: Request) -> int:
    text = request.headers.get("last-event-id") or request.query_params.get("after")
    if text is None:
        return -1
    try:
        return int(text)
    except ValueError:
        raise _Problem(
            422, f"Last-Event-ID: must be an event id (an integer), not {text!r}"
        ) from None


#: How far past the body limit a request is still read (and dropped) so its client hears the 413.
_DRAIN_BYTES = 8 << 20


async def _json_body(request: Request, limit: int, allowed: set[str]) -> dict[str, Any]:
    """The request's JSON object (``{}`` when empty), size-limited and checked for keys.

    A body over the limit is still read, up to :data:`_DRAIN_BYTES` more, and dropped before
    the ``413`` goes out: a server that answers while the client is still sending resets the
    connection, and the client then sees a broken pipe instead of the answer.
    """
    too_large = _Problem(413, f"the request body is over the {limit}-byte limit")
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit + _DRAIN_BYTES:
        raise too_large
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit + _DRAIN_BYTES:
            raise too_large
        if size <= limit:
            chunks.append(chunk)
    if size > limit:
        raise too_large
    raw = b"".join(chunks)
    if not raw.strip():
        return {}
    try:
        body = json.loads(raw)
    except ValueError as exc:
        raise _Problem(400, f"the request body is not JSON: {exc}") from None
    if not isinstance(body, dict):
        raise _Problem(422, f"the request body must be a JSON object, not {type(body).__name__}")
    unknown = sorted(set(body) - allowed)
    if unknown:
        raise _Problem(
            422, f"unknown field(s) {', '.join(unknown)}; allowed: {', '.join(sorted(allowed))}"
        )
    return body


async def _problem_response(_request: Request, problem: _Problem) -> Response:
    return JSONResponse({"error": problem.message}, problem.status, headers=problem.headers)


async def _http_error(request: Request, error: HTTPException) -> Response:
    """Starlette's own refusals (no such route, a method it does not take) as JSON too."""
    messages = {
        404: f"no such endpoint: {request.url.path} (see guides/serving.md)",
        405: f"{request.method} is not allowed on {request.url.path}",
    }
    message = messages.get(error.status_code, str(error.detail))
    return JSONResponse({"error": message}, error.status_code, headers=error.headers)


async def _chat_page(_request: Request) -> Response:
    page = resources.files("agtl.serve").joinpath("chat.html").read_text(encoding="utf-8")
    return HTMLResponse(page)


class _BearerToken:
    """Every API call needs ``Authorization: Bearer <token>`` (the page itself does not)."""

    def __init__(self, app: ASGIApp, token: str) -> None:
        self.app = app
        self._expected = f"Bearer {token}".encode()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["path"] != "/":
            given = dict(scope["headers"]).get(b"authorization", b"")
            if not secrets.compare_digest(given, self._expected):
                message = "missing or wrong bearer token (Authorization: Bearer <token>)"
                response: Response = JSONResponse(
                    {"error": message}, 401, headers={"WWW-Authenticate": "Bearer"}
                )
                if scope["path"].startswith("/v1/"):  # what OpenAI clients read
                    response = openai_error(
                        401, message, "invalid_request_error", "invalid_api_key"
                    )
                await response(scope, receive, send)
                return
        await self.app(scope, receive, send)
