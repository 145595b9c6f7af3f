"""agtl inside a real asyncio web app: examples/fastapi_app.py under uvicorn, the bundled model.

The server is a subprocess on 127.0.0.1; the client is the standard library's HTTP client.
Each wait is on what it means (a log line, a response, a summary line) under a deadline.
"""

from __future__ import annotations

import http.client
import json
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.parse
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from tests.local import free_port

ROOT = Path(__file__).resolve().parent.parent
DEADLINE = 120.0


class Server:
    def __init__(self, process: subprocess.Popen[str], port: int, summaries: Path) -> None:
        self.process = process
        self.port = port
        self.summaries = summaries
        self.log: list[str] = []
        self._ready = threading.Event()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.process.stderr is not None
        for line in self.process.stderr:
            self.log.append(line)
            if "Uvicorn running on" in line:  # bound and accepting (after the lifespan)
                self._ready.set()

    def wait_ready(self) -> None:
        if not self._ready.wait(DEADLINE):
            raise AssertionError("uvicorn did not start:\n" + "".join(self.log))

    def get(self, path: str, **query: str) -> dict[str, Any]:
        connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=DEADLINE)
        try:
            connection.request("GET", f"{path}?{urllib.parse.urlencode(query)}")
            response = connection.getresponse()
            assert response.status == 200, response.read()
            return json.loads(response.read())  # type: ignore[no-any-return]
        finally:
            connection.close()

    def records(self) -> list[dict[str, Any]]:
        if not self.summaries.exists():
            return []
        return [json.loads(line) for line in self.summaries.read_text().splitlines() if line]

    def wait_for_record(self, execution_id: str) -> dict[str, Any]:
        deadline = time.monotonic() + DEADLINE
        while time.monotonic() < deadline:
            for record in self.records():
                if record["execution_id"] == execution_id:
                    return record
            time.sleep(0.01)
        raise AssertionError(f"no summary recorded for {execution_id}")


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    summaries = tmp_path_factory.mktemp("fastapi") / "summaries.jsonl"
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "uvicorn", "examples.fastapi_app:app", "--port", str(port)],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "AGTL_SUMMARIES": str(summaries)},
    )
    running = Server(process, port, summaries)
    try:
        running.wait_ready()
        yield running
    finally:
        process.kill()
        process.wait(DEADLINE)


def test_fastapi_endpoint_answers_with_the_bundled_model(server: Server) -> None:
    answer = server.get("/ask", q="What is the capital of France?")
    assert answer["status"] == "succeeded"
    assert "Paris" in answer["text"]
    assert answer["output_tokens"] > 0
    record = server.wait_for_record(answer["execution_id"])
    assert record["status"] == "succeeded"


def test_concurrent_requests_each_get_their_own_execution(server: Server) -> None:
    questions = [f"What is {n} plus {n}?" for n in range(6)]
    with ThreadPoolExecutor(len(questions)) as pool:
        answers = list(pool.map(lambda q: server.get("/ask", q=q), questions))
    assert [a["status"] for a in answers] == ["succeeded"] * len(questions)
    assert len({a["execution_id"] for a in answers}) == len(questions)


def test_a_client_that_disconnects_stops_the_generation(server: Server) -> None:
    connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=DEADLINE)
    query = urllib.parse.urlencode({"q": "Write a very long story about a dragon and a king."})
    connection.request("GET", f"/stream?{query}")
    response = connection.getresponse()
    execution_id = response.readline().decode().split()[1]
    assert response.readline().decode().startswith("text ")  # the reply is streaming
    connection.close()  # the browser tab went away

    record = server.wait_for_record(execution_id)
    assert record["status"] == "canceled"
    assert record["cancel"]["source"] == "signal"
    assert "asyncio task" in record["cancel"]["reason"]
    [call] = record["summary"]["llm_calls"]
    assert call["stop_reason"] == "cancelled"
    assert call["usage"]["output_tokens"] < 96  # stopped before the max_tokens bound


def test_the_server_shuts_down_cleanly(server: Server) -> None:
    assert server.get("/ask", q="Say hello.")["status"] == "succeeded"
    server.process.send_signal(signal.SIGINT)
    assert server.process.wait(DEADLINE) == 0
    log = "".join(server.log)
    assert "Traceback" not in log
    assert "Task was destroyed" not in log
    assert "Finished server process" in log
