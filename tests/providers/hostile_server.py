"""A hostile OpenAI-compatible server for fault injection, on 127.0.0.1 only.

The request's ``model`` picks the behaviour: ``ok``, ``rate-limited`` (429 with a retry hint,
then ok), ``server-error`` (always 500), ``unauthorized`` (401 echoing the key, as careless
servers do), ``cut`` (connection dropped mid-stream), ``malformed`` (an unparsable SSE line),
``stall`` (silence after the first chunk), ``endless`` (a body that never ends) and
``no-finish`` (ends without a finish reason). Refusals (``REFUSALS``): ``bad-request``
(400), ``forbidden`` (403), ``too-large`` (413), ``unprocessable`` (422), ``context-400`` and
``context-413`` (a context-length message, as servers word it); ``no-headers`` reads the
request and never answers. Tool calls: ``tool-call`` (a get_weather call
streamed in pieces; answered with text once the request carries a tool result), ``tool-cut``
(the connection drops inside the arguments), ``tool-bad-json`` (arguments that are not JSON)
and ``tool-unknown`` (a call to a tool that does not exist).

Limits and outages, as real providers have them (attributes, changeable while serving):
``admit`` (at most that many requests answered at once; beyond, 429 with ``retry-after``
``admit_retry_after``), ``per_window`` requests in any ``window`` seconds (beyond, 429 with the
seconds until one frees), and ``outage`` (a status every request gets while it is set).
``paced`` streams ten pieces ``pace`` seconds apart; ``stall-first`` stalls ``stall_seconds``
before the first piece on every ``stall_every``-th request of that model, then answers like
``paced``. ``answered_429`` counts the 429s sent, ``most_at_once`` the most requests answered
at once.

With ``keep_alive=True`` a connection serves request after request, as real servers do, so
a client that fails to finish or close a response shows up as a connection left open; a
response the client abandoned is never reused (the server drops the connection when it
finds the client gone). Without it every response says ``connection: close``.
"""

from __future__ import annotations

import collections
import json
from typing import Any

import trio


class HostileServer:
    def __init__(self, *, keep_alive: bool = False) -> None:
        self.keep_alive = keep_alive
        self.requests: collections.Counter[str] = collections.Counter()
        self.bodies: list[dict[str, Any]] = []  # every request's JSON body, in order
        self.open_connections = 0
        self.port = 0
        self._idle = trio.Event()
        self._idle.set()
        self.admit: int | None = None
        self.admit_retry_after = 0.5
        self.per_window: int | None = None
        self.window = 60.0
        self.outage: int | None = None
        self.pace = 0.01
        self.stall_every = 20
        self.stall_seconds = 5.0
        self.answered_429 = 0
        self.most_at_once = 0
        self._at_once = 0
        self._starts: collections.deque[float] = collections.deque()

    async def wait_idle(self) -> None:
        """Wait until every client connection is closed."""
        await self._idle.wait()

    async def serve(self, *, task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
        listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
        self.port = listeners[0].socket.getsockname()[1]
        task_status.started()
        await trio.serve_listeners(self._handle, listeners)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    async def _handle(self, stream: trio.SocketStream) -> None:
        self.open_connections += 1
        if self._idle.is_set():
            self._idle = trio.Event()
        try:
            while True:
                request = await _read_request(stream)
                if request is None:
                    return
                headers, body = request
                payload = json.loads(body or b"{}")
                model = str(payload.get("model", "ok"))
                self.requests[model] += 1
                self.bodies.append(payload)
                answered = any(m.get("role") == "tool" for m in payload.get("messages", ()))
                if model == "tool-call" and answered:
                    model = "ok"  # the tool's result came back: answer with text
                reusable = await self._respond(stream, model, headers)
                if not (self.keep_alive and reusable):
                    return
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            pass
        finally:
            await stream.aclose()
            self.open_connections -= 1
            if self.open_connections == 0:
                self._idle.set()

    async def _respond(
        self, stream: trio.SocketStream, model: str, headers: dict[str, str]
    ) -> bool:
        """Answer one request, within the server's limits; whether the connection can serve
        another afterwards."""
        close = not self.keep_alive
        if self.outage is not None:
            await _error(stream, self.outage, "down for maintenance", close=close)
            return True
        refusal = self._over_limit()
        if refusal is not None:
            self.answered_429 += 1
            retry = {"retry-after": f"{refusal:.3f}"}
            await _error(stream, 429, "rate limit reached", retry, close=close)
            return True
        self._at_once += 1
        self.most_at_once = max(self.most_at_once, self._at_once)
        try:
            return await self._answer(stream, model, headers, close)
        finally:
            self._at_once -= 1

    def _over_limit(self) -> float | None:
        """The retry-after of a request over a limit (None: within them)."""
        if self.admit is not None and self._at_once >= self.admit:
            return self.admit_retry_after
        if self.per_window is not None:
            now = trio.current_time()
            while self._starts and self._starts[0] <= now - self.window:
                self._starts.popleft()
            if len(self._starts) >= self.per_window:
                return self._starts[0] + self.window - now
            self._starts.append(now)
        return None

    async def _answer(
        self, stream: trio.SocketStream, model: str, headers: dict[str, str], close: bool
    ) -> bool:
        if model == "rate-limited" and self.requests[model] == 1:
            await _error(stream, 429, "slow down", {"retry-after": "0.2"}, close=close)
            return True
        if model == "server-error":
            await _error(stream, 500, "the server melted", close=close)
            return True
        if model == "unauthorized":
            key = headers.get("authorization", "").removeprefix("Bearer ")
            await _error(stream, 401, f"Incorrect API key provided: {key}", close=close)
            return True
        if model in REFUSALS:
            status, message = REFUSALS[model]
            await _error(stream, status, message, close=close)
            return True
        if model == "no-headers":
            await _silent_until_closed(stream)  # the request is read; no answer ever comes
            return False
        await stream.send_all(
            b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\n"
            b"transfer-encoding: chunked\r\n"
            + (b"connection: close\r\n" if close else b"")
            + b"\r\n"
        )
        if model.startswith("tool-"):
            return await _tool_reply(stream, model)
        if model in ("paced", "stall-first"):
            if model == "stall-first" and self.requests[model] % self.stall_every == 0:
                await trio.sleep(self.stall_seconds)
            for i in range(10):
                await _chunk(stream, _delta(f"w{i} "))
                await trio.sleep(self.pace)
            await _chunk(stream, _delta("", finish="stop"))
            await _chunk(stream, b"data: [DONE]\n\n")
            await stream.send_all(b"0\r\n\r\n")
            return True
        if model == "endless":
            while True:
                await _chunk(stream, _delta("tick "))
                await trio.sleep(0.01)
        await _chunk(stream, _delta("Hello"))
        await _chunk(stream, _delta(" there"))
        if model == "cut":
            await stream.send_all(b'40\r\ndata: {"partial')  # then the connection drops
            return False
        if model == "malformed":
            await _chunk(stream, b"data: {this is not json\n\n")
            await _silent_until_closed(stream)
            return False
        if model == "stall":
            await _silent_until_closed(stream)
            return False
        finish = None if model == "no-finish" else "stop"
        await _chunk(stream, _delta("!", finish=finish))
        await _chunk(stream, b"data: [DONE]\n\n")
        await stream.send_all(b"0\r\n\r\n")
        return True


#: Models whose request the server refuses: (status, the error message it sends).
REFUSALS = {
    "bad-request": (400, "temperature must be between 0 and 2"),
    "forbidden": (403, "this key may not use the model"),
    "too-large": (413, "request body too large"),
    "unprocessable": (422, "messages[0].content: field required"),
    "context-400": (
        400,
        "This model's maximum context length is 2048 tokens. However, you requested 5000 "
        "tokens. Please reduce the length of the messages.",
    ),
    "context-413": (413, "Requested tokens exceed context window: maximum context length 512"),
}


async def _tool_reply(stream: trio.SocketStream, model: str) -> bool:
    name = "get_wether" if model == "tool-unknown" else "get_weather"
    await _chunk(stream, _call_delta(0, id="call_h1", name=name))
    if model == "tool-cut":
        await _chunk(stream, _call_delta(0, arguments='{"ci'))
        await stream.send_all(b'30\r\ndata: {"choices": [{"delta": {"tool_')  # then drops
        return False
    pieces = ["{not json"] if model == "tool-bad-json" else ['{"city"', ': "Par', 'is"}']
    for piece in pieces:
        await _chunk(stream, _call_delta(0, arguments=piece))
    await _chunk(stream, _finish("tool_calls"))
    await _chunk(stream, b"data: [DONE]\n\n")
    await stream.send_all(b"0\r\n\r\n")
    return True


def _call_delta(
    index: int, *, id: str | None = None, name: str | None = None, arguments: str | None = None
) -> bytes:
    function: dict[str, str] = {}
    if name is not None:
        function["name"] = name
    if arguments is not None:
        function["arguments"] = arguments
    call: dict[str, Any] = {"index": index, "function": function}
    if id is not None:
        call.update(id=id, type="function")
    return _event({"index": 0, "delta": {"tool_calls": [call]}, "finish_reason": None})


def _finish(reason: str) -> bytes:
    return _event({"index": 0, "delta": {}, "finish_reason": reason})


def _event(choice: dict[str, Any]) -> bytes:
    payload = {
        "id": "chatcmpl-hostile",
        "object": "chat.completion.chunk",
        "created": 0,
        "model": "hostile",
        "choices": [choice],
    }
    return f"data: {json.dumps(payload)}\n\n".encode()


async def _silent_until_closed(stream: trio.SocketStream) -> None:
    """Send nothing more, but notice when the client hangs up (so open connections count)."""
    while await stream.receive_some(4096):
        pass


async def _read_request(stream: trio.SocketStream) -> tuple[dict[str, str], bytes] | None:
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = await stream.receive_some(65536)
        if not chunk:
            return None
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    headers = {}
    for line in head.decode("latin-1").split("\r\n")[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    length = int(headers.get("content-length", "0"))
    while len(body) < length:
        chunk = await stream.receive_some(65536)
        if not chunk:
            break
        body += chunk
    return headers, body


def _delta(text: str, *, finish: str | None = None) -> bytes:
    return _event({"index": 0, "delta": {"content": text}, "finish_reason": finish})


async def _chunk(stream: trio.SocketStream, data: bytes) -> None:
    await stream.send_all(f"{len(data):x}\r\n".encode() + data + b"\r\n")


async def _error(
    stream: trio.SocketStream,
    status: int,
    message: str,
    extra: dict[str, str] | None = None,
    *,
    close: bool = True,
) -> None:
    reasons = {
        400: "Bad Request",
        401: "Unauthorized",
        403: "Forbidden",
        413: "Payload Too Large",
        422: "Unprocessable Entity",
        429: "Too Many Requests",
        500: "Internal Server Error",
        503: "Service Unavailable",
    }
    body = json.dumps({"error": {"message": message, "type": "error", "code": None}}).encode()
    head = f"HTTP/1.1 {status} {reasons[status]}\r\ncontent-type: application/json\r\n"
    head += f"content-length: {len(body)}\r\n" + ("connection: close\r\n" if close else "")
    for name, value in (extra or {}).items():
        head += f"{name}: {value}\r\n"
    await stream.send_all(head.encode() + b"\r\n" + body)
