"""`agtl serve` as a real process on 127.0.0.1, and a small HTTP and server-sent-events client.

Every wait is on what it means (the "listening" line, a response, an event) under a deadline.
"""

from __future__ import annotations

import http.client
import json
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import attrs
import pytest

from tests.local import free_port

ROOT = Path(__file__).resolve().parent.parent.parent
DEADLINE = 60.0


@attrs.define
class Reply:
    status: int
    headers: dict[str, str]
    body: Any


@attrs.define
class SSE:
    id: int
    type: str
    data: Any


class EventStream:
    """One open ``GET /executions/{id}/events``, read event by event."""

    def __init__(self, connection: http.client.HTTPConnection, response: Any) -> None:
        self.connection = connection
        self.response = response

    def next(self) -> SSE | None:
        """The next event (keep-alive comments skipped), or ``None`` at the end."""
        fields: dict[str, str] = {}
        while True:
            line = self.response.readline()
            if not line:
                return None
            text = line.decode().rstrip("\n")
            if text.startswith(":"):
                continue
            if text:
                key, _, value = text.partition(": ")
                fields[key] = value
                continue
            if fields:
                return SSE(int(fields["id"]), fields["event"], json.loads(fields["data"]))

    def all(self) -> list[SSE]:
        events = []
        while (event := self.next()) is not None:
            events.append(event)
        return events

    def close(self) -> None:
        self.connection.close()


class Server:
    def __init__(self, process: subprocess.Popen[str], port: int, token: str | None) -> None:
        self.process = process
        self.port = port
        self.token = token
        self.stdout: list[str] = []
        self.stderr: list[str] = []
        self._listening = threading.Event()
        threading.Thread(target=self._read_stdout, daemon=True).start()
        threading.Thread(target=self._read_stderr, daemon=True).start()

    def _read_stdout(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.stdout.append(line)
            if "listening on" in line:
                self._listening.set()

    def _read_stderr(self) -> None:
        assert self.process.stderr is not None
        for line in self.process.stderr:
            self.stderr.append(line)

    def wait_listening(self) -> None:
        if not self._listening.wait(DEADLINE):
            raise AssertionError(
                "agtl serve did not start:\n" + "".join(self.stdout) + "".join(self.stderr)
            )

    def _headers(self, token: str | None, extra: dict[str, str] | None = None) -> dict[str, str]:
        headers = {"Content-Type": "application/json", **(extra or {})}
        token = self.token if token is None else token
        if token:
            headers["Authorization"] = f"Bearer {token}"
        return headers

    def request(
        self,
        method: str,
        path: str,
        body: Any = None,
        *,
        raw: bytes | None = None,
        token: str | None = None,
    ) -> Reply:
        connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=DEADLINE)
        try:
            data = raw if raw is not None else None if body is None else json.dumps(body).encode()
            connection.request(method, path, body=data, headers=self._headers(token))
            response = connection.getresponse()
            payload = response.read()
            kind = response.getheader("content-type") or ""
            parsed = json.loads(payload) if kind.startswith("application/json") else payload
            return Reply(response.status, dict(response.getheaders()), parsed)
        finally:
            connection.close()

    def start(self, input: Any = None, **fields: Any) -> str:
        reply = self.request("POST", "/executions", {"input": input, **fields})
        assert reply.status == 201, reply
        return str(reply.body["id"])

    def events(self, execution_id: str, last_event_id: int | None = None) -> EventStream:
        connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=DEADLINE)
        extra = {} if last_event_id is None else {"Last-Event-ID": str(last_event_id)}
        connection.request(
            "GET", f"/executions/{execution_id}/events", headers=self._headers(None, extra)
        )
        response = connection.getresponse()
        assert response.status == 200, response.read()
        return EventStream(connection, response)

    def outcome(self, execution_id: str, wait: float = 30) -> dict[str, Any]:
        reply = self.request("GET", f"/executions/{execution_id}?wait={wait}")
        assert reply.status == 200, reply
        return reply.body  # type: ignore[no-any-return]

    def stop(self) -> int:
        self.process.send_signal(2)  # SIGINT, as Ctrl-C
        return self.process.wait(DEADLINE)


def start_server(*args: str, token: str | None = None, env: dict[str, str] | None = None) -> Server:
    port = free_port()
    environment = {**os.environ, **(env or {})}
    environment.pop("AGTL_SERVE_TOKEN", None)
    if token is not None:
        environment["AGTL_SERVE_TOKEN"] = token
    process = subprocess.Popen(
        [sys.executable, "-m", "agtl.cli", "serve", *args, "--port", str(port)],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=environment,
    )
    server = Server(process, port, token)
    try:
        server.wait_listening()
    except BaseException:
        process.kill()
        raise
    return server


@pytest.fixture
def serve() -> Iterator[Any]:
    """Start servers for a test; each is killed at its end if it is still running."""
    started: list[Server] = []

    def make(*args: str, **kwargs: Any) -> Server:
        server = start_server(*args, **kwargs)
        started.append(server)
        return server

    yield make
    for server in started:
        if server.process.poll() is None:
            server.process.kill()
            server.process.wait(DEADLINE)
